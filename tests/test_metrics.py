"Unit tests of balance_nb.metrics: accuracy and macro-F1 against scikit-learn, exact Shapley paths against brute force."
import pytest, torch
from sklearn.metrics import accuracy_score, f1_score
from balance_nb.core import set_seed
from balance_nb.metrics import (confusion_matrix, accuracy, macro_f1, coalition_predictions, additive_fusion, evaluate,
                                exact_shapley, imbalance_degree)

@pytest.mark.parametrize('seed', range(5))
def test_accuracy_and_macro_f1_match_sklearn(seed):
    g = torch.Generator().manual_seed(seed)
    C = 6
    y = torch.randint(0, C - 2, (97,), generator=g)          # classes 4 and 5 never occur ...
    yhat = torch.randint(0, C - 1, (97,), generator=g)       # ... and 5 is never predicted either
    cm = confusion_matrix(yhat, y, C)
    assert accuracy(cm) == pytest.approx(accuracy_score(y, yhat), abs=1e-6)
    assert macro_f1(cm) == pytest.approx(f1_score(y, yhat, labels=range(C), average='macro', zero_division=0), abs=1e-9)

def test_macro_f1_counts_every_class():
    y, yhat = torch.tensor([0, 0, 1, 1]), torch.tensor([0, 0, 1, 1])
    assert macro_f1(confusion_matrix(yhat, y, 2)) == pytest.approx(1.0)
    assert macro_f1(confusion_matrix(yhat, y, 4)) == pytest.approx(0.5)   # two absent classes score 0

def test_shapley_efficiency_and_degree():
    v = {frozenset(): .1, frozenset('a'): .7, frozenset('b'): .4, frozenset('c'): .2,
         frozenset('ab'): .8, frozenset('ac'): .75, frozenset('bc'): .5, frozenset('abc'): .9}
    phi = exact_shapley(v, 'abc')
    assert sum(phi.values()) == pytest.approx(.9 - .1)
    assert phi['a'] > phi['b'] > phi['c']
    assert 0 < imbalance_degree(phi) < 1

@pytest.mark.parametrize('views', ['pix,mor', 'pix,fou,mor', 'fou,fac,kar,pix,zer,mor'])
@pytest.mark.parametrize('fusion', ['concat', 'sum'])
def test_block_shapley_equals_brute_force(views, fusion):
    "Untrained models have many near-ties between classes: the block path must still predict what brute force does."
    from balance_nb.data import MFeat, make_loader
    from balance_nb.models import build_model
    set_seed(0)
    ds = MFeat('valid', views=views)
    model = build_model(ds, fusion=fusion).eval()
    assert additive_fusion(model)
    batch = ds[list(range(len(ds)))]
    fast, brute = coalition_predictions(model, batch), coalition_predictions(model, batch, brute_force=True)
    assert fast.keys() == brute.keys() and len(fast) == 2 ** len(ds.modalities)
    for S in brute: assert torch.equal(fast[S], brute[S]), S
    assert evaluate(model, make_loader(ds, 64)) == evaluate(model, make_loader(ds, 64), brute_force=True)

def test_non_additive_fusion_takes_the_refusion_path():
    from balance_nb.data import MFeat, make_loader
    from balance_nb.models import build_model
    from balance_nb.methods.objective import CosineFusion
    ds = MFeat('valid', views='pix,mor')
    film = build_model(ds, fusion='film').eval()
    assert not additive_fusion(film)
    assert additive_fusion(build_model(ds))
    assert CosineFusion.__dict__.get('additive', False) is False           # a subclass does not inherit the flag
    assert evaluate(film, make_loader(ds, 64)) == evaluate(film, make_loader(ds, 64), brute_force=True)
