"""`balance_nb.diagnose` (balance_nb.diagnosis) on models the package did not build: numbers checked against hand computations."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from balance_nb.diagnosis import (diagnose, DiagnoseError, PositionalModel, coalition_values, missing_inputs)
from balance_nb.data import MFeat, make_loader


class HandLate(nn.Module):
    "Late fusion with fixed weights: z = (-x_p, x_p) + (-x_q/2, x_q/2) + (0.1, 0)."
    def __init__(self):
        super().__init__()
        self.p_branch, self.q_branch = nn.Linear(1, 2, bias=False), nn.Linear(1, 2)
        with torch.no_grad():
            self.p_branch.weight.copy_(torch.tensor([[-1.], [1.]]))
            self.q_branch.weight.copy_(torch.tensor([[-.5], [.5]])); self.q_branch.bias.copy_(torch.tensor([.1, 0.]))
    def forward(self, batch): return {'out': self.p_branch(batch['p']) + self.q_branch(batch['q'])}


SMALL = {'p': torch.tensor([[2.], [-1.], [-3.], [1.]]), 'q': torch.tensor([[1.], [-2.], [-1.], [-4.]]),
         'label': torch.tensor([1, 1, 0, 1])}


def test_late_fusion_equals_the_coalition_table_worked_by_hand():
    # by hand: none → class 0 for all (1 of 4 right); only p: samples 1, 3, 4; only q: 1, 3; both: 1, 3
    d = diagnose(HandLate(), [SMALL], logits='out')
    assert d.coalitions['accuracy'].to_dict() == {'∅ (none)': .25, 'p': .75, 'q': .5, 'p + q': .5}
    assert d.shapley == {'p': .5 * (.75 - .25) + .5 * (.5 - .5), 'q': .5 * (.5 - .25) + .5 * (.5 - .75)}
    assert d.imbalance == pytest.approx(1.0)
    assert d.metrics['acc'] == pytest.approx(.5) and d.metrics['f1'] == pytest.approx(.5)
    # split in two batches: the same table (counts accumulate over batches)
    halves = [{k: v[:2] for k, v in SMALL.items()}, {k: v[2:] for k, v in SMALL.items()}]
    assert diagnose(HandLate(), halves, logits='out').coalitions.equals(d.coalitions)


class Towers(nn.Module):
    def __init__(self, d1, d2, h=16):
        super().__init__()
        self.enc_one, self.enc_two = nn.Sequential(nn.Linear(d1, h), nn.ReLU()), nn.Sequential(nn.Linear(d2, h), nn.ReLU())
        self.cls = nn.Linear(2 * h, 10)
    def forward(self, b): return self.cls(torch.cat([self.enc_one(b['pix']), self.enc_two(b['mor'])], 1))


@pytest.fixture(scope='module')
def mfeat():
    torch.manual_seed(0)
    tr, te = MFeat('train'), MFeat('test')                 # views pix, mor
    net = Towers(240, 6)
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    for b in make_loader(tr, 64, shuffle=True):
        loss = F.cross_entropy(net(b), b['label']); opt.zero_grad(); loss.backward(); opt.step()
    return net, tr, te


def test_random_late_fusion_table_and_the_mean_missing_value(mfeat):
    net, tr, te = mfeat
    b = te[list(range(60))]
    d = diagnose(net, [b], missing='mean')
    mean = {m: b[m].mean(0, keepdim=True).expand_as(b[m]) for m in ('pix', 'mor')}
    with torch.no_grad():
        for name, present in (('∅ (none)', ()), ('pix', ('pix',)), ('mor', ('mor',)), ('pix + mor', ('pix', 'mor'))):
            x = {m: b[m] if m in present else mean[m] for m in ('pix', 'mor')}
            assert d.coalitions.loc[name, 'correct'] == int((net(x).argmax(1) == b['label']).sum())
    assert net.training                                    # the mode it had


def test_probe_and_gradient_norms_equal_an_independent_computation(mfeat):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    net, tr, te = mfeat
    train, test = tr[list(range(300))], te[list(range(100))]
    d = diagnose(net, [test], features={'pix': 'enc_one', 'mor': net.enc_two}, probe_loader=[train],
                 encoders={'pix': 'enc_one', 'mor': ['enc_two']})
    with torch.no_grad():
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
        clf.fit(net.enc_two(train['mor']).numpy(), train['label'].numpy())
        assert d.metrics['probe_acc_mor'] == pytest.approx(clf.score(net.enc_two(test['mor']).numpy(), test['label'].numpy()))
    net.eval(); net.zero_grad()
    F.cross_entropy(net(test), test['label']).backward()
    by_hand = torch.cat([p.grad.flatten() for p in net.enc_one.parameters()]).norm().item()
    net.zero_grad(); net.train()
    assert d.metrics['grad_norm_pix'] == pytest.approx(by_hand, rel=1e-5)
    assert d.metrics['probe_acc_pix'] > 0.5               # pix features carry the digit


class EarlyNet(nn.Module):
    def __init__(self):
        super().__init__(); self.body = nn.Sequential(nn.Linear(246, 32), nn.ReLU(), nn.Linear(32, 10))
    def forward(self, pix, mor): return (self.body(torch.cat([pix, mor], 1)), 'aux')


def test_early_fusion_positional_model_through_the_brute_force_path(mfeat):
    _, _, te = mfeat
    torch.manual_seed(1)
    net, b = EarlyNet(), te[list(range(80))]
    d = diagnose(PositionalModel(net, ('pix', 'mor')), [b], logits=0)
    with torch.no_grad():
        only_pix = net(b['pix'], torch.zeros_like(b['mor']))[0].argmax(1)
    assert d.coalitions.loc['pix', 'correct'] == int((only_pix == b['label']).sum())
    v = d.coalitions['accuracy']
    assert sum(d.shapley.values()) == pytest.approx(v.iloc[-1] - v.iloc[0])


def test_package_model_equals_the_package_metrics():
    from balance_nb.experiment import run
    r = run(dataset='MFeat', epochs=1, seed=0, out=None, store=None, live=False, progress=False)
    d = diagnose(r.learner.model, make_loader(MFeat('test'), 128))
    assert set(d.metrics) == {'acc', 'f1', 'acc_pix', 'f1_pix', 'acc_mor', 'f1_mor', 'shapley_pix', 'shapley_mor', 'imbalance'}
    for k in d.metrics:                                    # per-modality acc/F1 read from MMOutput.unimodal
        assert d.metrics[k] == pytest.approx(r.metrics[k], abs=1e-9), k


def test_bad_input_names_what_was_found_and_the_fix():
    net = HandLate()
    with pytest.raises(DiagnoseError, match=r"No logits found.*found \{'out': Tensor\(4, 2\)\}.*logits="):
        diagnose(net, [SMALL])
    with pytest.raises(DiagnoseError, match=r"Batch 1 has no 'q': its keys are \['p', 'label'\]"):
        diagnose(net, [SMALL, {'p': SMALL['p'], 'label': SMALL['label']}], logits='out')
    with pytest.raises(DiagnoseError, match=r"encoders\['q'\]='q_net' matches no parameter of HandLate: its parameter names start with p_branch, q_branch"):
        diagnose(net, [SMALL], logits='out', encoders={'q': 'q_net'})
    with pytest.raises(DiagnoseError, match=r"features\['p'\]='p_enc' names no module of HandLate"):
        diagnose(net, [SMALL], logits='out', features={'p': 'p_enc'}, probe_loader=[SMALL])
    with pytest.raises(DiagnoseError, match='features= needs probe_loader='):
        diagnose(net, [SMALL], logits='out', features={'p': 'p_branch'})
    with pytest.raises(DiagnoseError, match="logits='scores': the model's output has no key"):
        diagnose(net, [SMALL], logits='scores')
    with pytest.raises(DiagnoseError, match='no batches'):
        diagnose(net, [], logits='out')
    with pytest.raises(DiagnoseError, match="missing value of 'p' has shape"):
        coalition_values(net, [SMALL], ('p', 'q'), 'out', missing_inputs(lambda x: x[:1], ('p', 'q')))


def test_monitor_logs_what_the_loop_computed(mfeat, tmp_path):
    import pandas as pd
    from balance_nb.diagnosis import Monitor
    _, tr, te = mfeat
    torch.manual_seed(2)
    net, valid = Towers(240, 6), [te[list(range(100))]]
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    mon = Monitor(net, valid, encoders={'pix': 'enc_one', 'mor': net.enc_two}, folder=tmp_path, live=False, tensorboard=tmp_path/'tb')
    for b in make_loader(tr.subset(range(256)), 64):
        loss = F.cross_entropy(net(b), b['label']); opt.zero_grad(); loss.backward()
        mon.step(loss)
        assert mon.history.step_rows[-1]['grad_norm_mor'] == pytest.approx(
            torch.cat([p.grad.flatten() for p in net.enc_two.parameters()]).norm().item())
        opt.step()
    d = mon.epoch()
    assert d.metrics == diagnose(net, valid).metrics                      # logged = a fresh diagnosis of the same weights
    ep = pd.read_csv(tmp_path/'history.csv')
    assert len(ep) == 1 and ep.loc[0, 'shapley_pix'] == pytest.approx(d.metrics['shapley_pix'])
    assert len(pd.read_csv(tmp_path/'steps.csv')) == 4
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    tb = EventAccumulator(str(tmp_path/'tb')).Reload()
    assert [e.value for e in tb.Scalars('epoch/imbalance')] == pytest.approx([d.imbalance])
    assert len(tb.Scalars('step/grad_norm_pix')) == 4
    fig = mon.plot()
    assert len(fig.axes[1].lines) == 2                                   # one gradient-norm line per modality
    with pytest.raises(DiagnoseError, match="encoders\\['pix'\\]='pix_enc' matches no parameter of Towers"):
        Monitor(net, valid, encoders={'pix': 'pix_enc'})


def test_fast_path_equals_brute_force_and_refuses_what_it_cannot_do(mfeat):
    net, _, te = mfeat
    b = [te[list(range(150))], te[list(range(150, 200))]]
    feats = {'pix': 'enc_one', 'mor': 'enc_two'}
    brute = diagnose(net, b, missing='mean')
    fast = diagnose(net, b, missing='mean', features=feats, probe_loader=b, fast=True)
    assert fast.coalitions.equals(brute.coalitions) and fast.shapley == brute.shapley
    assert 'forward' not in net.enc_one.__dict__                        # the encoders compute again
    with pytest.raises(DiagnoseError, match=r"fast=True needs features= for every modality \(\['pix', 'mor'\]; given: \['pix'\]\)"):
        diagnose(net, b, features={'pix': 'enc_one'}, probe_loader=b, fast=True)
    with pytest.raises(DiagnoseError, match=r"the same module \(enc_one\) for 'pix' and 'mor'"):
        diagnose(net, b, features={'pix': 'enc_one', 'mor': 'enc_one'}, probe_loader=b)

def test_one_call_from_the_package():
    "`balance_nb.diagnose` is the function (imported on first use), `balance_nb.diagnosis` its module; anything else is refused."
    import balance_nb, balance_nb.diagnosis
    assert balance_nb.diagnose is balance_nb.diagnosis.diagnose
    with pytest.raises(AttributeError, match='no attribute'): balance_nb.diagnoze
