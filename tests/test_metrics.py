"Unit tests of balance_nb.metrics: accuracy and macro-F1 against scikit-learn, exact Shapley paths against brute force."
import pytest, torch
from sklearn.metrics import accuracy_score, f1_score
from balance_nb.core import set_seed
from balance_nb.metrics import (confusion_matrix, accuracy, macro_f1, coalition_predictions, additive_fusion, evaluate,
                                exact_shapley, imbalance_degree, coalitions, shapley_from_vector, shapley_tables, membership, clear_argmax,
                                coalition_pred_matrix, zero_input, MetricAccumulator)

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

def test_vectorised_shapley_equals_the_formula():
    "shapley_from_vector on a hand-made 3-player table: term by term, and bit for bit exact_shapley's, up to 6 players."
    v = {frozenset(): .1, frozenset('a'): .7, frozenset('b'): .4, frozenset('c'): .2,
         frozenset('ab'): .8, frozenset('ac'): .75, frozenset('bc'): .5, frozenset('abc'): .9}
    phi = shapley_from_vector(torch.tensor([v[S] for S in coalitions('abc')], dtype=torch.float64), 'abc')
    assert phi['a'] == pytest.approx((.7 - .1) / 3 + (.8 - .4) / 6 + (.75 - .2) / 6 + (.9 - .5) / 3, abs=1e-12)
    assert phi['b'] == pytest.approx((.4 - .1) / 3 + (.8 - .7) / 6 + (.5 - .2) / 6 + (.9 - .75) / 3, abs=1e-12)
    assert phi['c'] == pytest.approx((.2 - .1) / 3 + (.75 - .7) / 6 + (.5 - .4) / 6 + (.9 - .8) / 3, abs=1e-12)
    assert phi == exact_shapley(v, 'abc')
    g = torch.Generator().manual_seed(0)
    for n in range(1, 7):
        players = 'abcdef'[:n]
        vals = torch.randint(0, 1000, (2 ** n,), generator=g).double() / 997     # accuracies: counts over a size
        assert shapley_from_vector(vals, players) == exact_shapley(dict(zip(coalitions(players), vals.tolist())), players)
        assert shapley_tables(n)[2].sum(1).tolist() == pytest.approx([1.0] * n)

def test_membership_rows_follow_coalitions():
    for n in (1, 3, 6):
        rows = [frozenset(torch.nonzero(r).flatten().tolist()) for r in membership(n)]
        assert rows == coalitions(range(n))

def test_clear_argmax_flags_exact_and_near_ties():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(5, 20000, generator=g).mul(4).round(decimals=3)
    z[:, 0] = torch.tensor([1., 1., 0., 0., 0.])          # an exact tie
    z[:, 1] = torch.tensor([2., 2 + 1e-6, 0., 0., 0.])     # a near-tie
    z[:, 2] = torch.tensor([0., float('nan'), 0., 0., 0.]) # a NaN column is never clear
    preds, clear = clear_argmax(z)
    top2 = z[:, 3:].topk(2, dim=0).values
    assert not clear[:3].any()
    assert torch.equal(clear[3:], top2[0] - top2[1] > 1e-5 * (1 + top2[0].abs()))
    assert torch.equal(preds[3:][clear[3:]], z[:, 3:].argmax(0)[clear[3:]])
    many = torch.randn(300, 2000, generator=g).bfloat16()            # half precision, 300 classes: indices above 256
    preds, clear = clear_argmax(many)
    assert clear.float().mean() > 0.5 and torch.equal(preds[clear], many.float().argmax(0)[clear])

def test_zero_takes_what_zero_input_returns():
    from balance_nb.data import MFeat
    from balance_nb.models import build_model
    ds = MFeat('valid', views='pix,mor')
    model, batch = build_model(ds).eval(), ds[list(range(32))]
    z = zero_input(model, batch)
    assert torch.equal(coalition_pred_matrix(model, batch, zero=z), coalition_pred_matrix(model, batch))
    with pytest.raises(TypeError, match=r'zero=zero_input\(model, batch\)'):
        coalition_pred_matrix(model, batch, zero=z[0])

def test_accumulator_counts_match_per_batch_coalitions():
    "The (2^n,) correct counts of the accumulator are the sums over batches of each coalition's correct predictions."
    from balance_nb.data import MFeat, make_loader
    from balance_nb.models import build_model
    set_seed(0)
    ds = MFeat('valid', views='pix,fou,mor')
    model = build_model(ds).eval()
    acc, expected = MetricAccumulator(model, ds.num_classes), torch.zeros(8, dtype=torch.long)
    for b in make_loader(ds, 64):
        acc.update(b, model(b))
        expected += torch.stack([(p == b['label']).sum() for p in coalition_predictions(model, b, brute_force=True).values()])
    assert torch.equal(acc.correct, expected) and acc.n == len(ds)
    direct = exact_shapley({S: c / len(ds) for S, c in zip(coalitions(model.modalities), expected.tolist())}, model.modalities)
    r = acc.result()
    for m in model.modalities: assert r[f'shapley_{m}'] == direct[m]                  # equal, not just close

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
    assert torch.equal(coalition_pred_matrix(model, batch), torch.stack(list(brute.values())))
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
