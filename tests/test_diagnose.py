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
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, solver='newton-cg'))
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


def test_lightning_callback_logs_every_step_and_the_final_diagnosis(mfeat, tmp_path):
    pl = pytest.importorskip('lightning.pytorch')
    import numpy as np, pandas as pd
    from balance_nb.diagnosis import MonitorCallback
    _, tr, te = mfeat
    torch.manual_seed(3)
    net, valid, by_hand = Towers(240, 6), [te[list(range(100))]], []

    class Lit(pl.LightningModule):                         # the user's module: the network unchanged inside it
        def __init__(self):
            super().__init__(); self.net = net
        def forward(self, b): return self.net(b)
        def training_step(self, b, i): return F.cross_entropy(self.net(b), b['label'])
        def configure_optimizers(self): return torch.optim.SGD(self.parameters(), lr=0.1)
        def on_before_optimizer_step(self, opt):           # Lightning calls the module's hook right after the callbacks'
            by_hand.append(torch.cat([p.grad.flatten() for p in net.enc_two.parameters()]).norm().item())

    # model=None: the callback diagnoses the LightningModule itself, so parameter names start with 'net.'
    cb = MonitorCallback(valid, encoders={'pix': 'net.enc_one', 'mor': 'net.enc_two'}, folder=tmp_path, live=False)
    trainer = pl.Trainer(accelerator='cpu', max_epochs=2, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[cb])
    trainer.fit(Lit(), make_loader(tr.subset(range(256)), 64))
    steps, epochs = cb.monitor.history.steps, cb.monitor.history.epochs
    assert trainer.global_step == 8 and len(steps) == 8 and steps.epoch.tolist() == [0] * 4 + [1] * 4
    for m in ('pix', 'mor'):
        assert np.isfinite(steps[f'grad_norm_{m}']).all() and (steps[f'grad_norm_{m}'] > 0).all()
    assert steps.grad_norm_mor.tolist() == pytest.approx(by_hand, rel=1e-6)   # read before the optimizer used them
    assert steps.loss.notna().all() and len(set(steps.loss)) == 8
    assert epochs.epoch.tolist() == [0, 1]
    ep, st = pd.read_csv(tmp_path/'history.csv'), pd.read_csv(tmp_path/'steps.csv')
    assert len(ep) == 2 and {'acc', 'f1', 'shapley_pix', 'shapley_mor', 'imbalance', 'train_loss'} <= set(ep.columns)
    assert len(st) == 8 and {'loss', 'grad_norm_pix', 'grad_norm_mor'} <= set(st.columns)
    fresh = diagnose(net, valid)                           # the final weights, diagnosed outside Lightning
    for k in ('acc', 'f1', 'shapley_pix', 'shapley_mor', 'imbalance'):
        assert epochs.iloc[-1][k] == pytest.approx(fresh.metrics[k], abs=1e-12), k
        assert ep.iloc[-1][k] == pytest.approx(fresh.metrics[k], abs=1e-9), k
    with pytest.raises(DiagnoseError, match=r"on='test': expected 'train'"):
        MonitorCallback(valid, model=net, on='test')
    with pytest.raises(TypeError, match='passes its other arguments to Monitor'):
        MonitorCallback(valid, model=net, encoder={'pix': 'enc_one'})


def test_lightning_callback_on_validation_and_the_pytorch_lightning_fallback(monkeypatch):
    pl = pytest.importorskip('pytorch_lightning')
    import sys
    from balance_nb.diagnosis import MonitorCallback
    monkeypatch.setitem(sys.modules, 'lightning.pytorch', None)        # as if only pytorch_lightning were installed
    net = HandLate()
    cb = MonitorCallback([SMALL], model=net, logits='out', on='validation', live=False)
    assert isinstance(cb, pl.Callback) and isinstance(cb, MonitorCallback)

    class Lit(pl.LightningModule):
        def __init__(self):
            super().__init__(); self.net = net
        def training_step(self, b, i): return self.net(b)['out'].sum() * 0
        def validation_step(self, b, i): pass
        def configure_optimizers(self): return torch.optim.SGD(self.parameters(), lr=0.0)
    trainer = pl.Trainer(accelerator='cpu', max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[cb], num_sanity_val_steps=1)
    one = torch.utils.data.DataLoader([SMALL], batch_size=None)      # (a list would be read as several loaders)
    trainer.fit(Lit(), one, one)
    ep = cb.monitor.history.epochs                         # two validation runs, the sanity check not counted
    assert ep.epoch.tolist() == [0, 1] and ep['shapley_p'].tolist() == [.25, .25]


def test_without_lightning_the_package_imports_and_the_callback_says_how_to_install():
    import subprocess, sys
    code = ("import sys\n"
            "for n in ('lightning', 'lightning.pytorch', 'pytorch_lightning'): sys.modules[n] = None\n"
            "import balance_nb, balance_nb.diagnosis as d\n"
            "assert balance_nb.diagnose is d.diagnose and d.import_lightning(required=False) is None\n"
            "try: d.MonitorCallback([])\n"
            "except ImportError as e: print(e)\n")
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert 'MonitorCallback needs PyTorch Lightning' in out.stdout and 'pip install lightning' in out.stdout
    assert "balance_nb[lightning]" in out.stdout


class FoldFrames(nn.Module):
    "A frame CNN applied to every frame (frames folded into the batch), features averaged per clip."
    def __init__(self, cnn):
        super().__init__(); self.per_frame = cnn
    def forward(self, v): return self.per_frame(v.flatten(0, 1)).unflatten(0, v.shape[:2]).mean(1)


class CremaResNets(nn.Module):
    "Two torchvision ResNet-18s (1-channel spectrogram, RGB frames), late fusion by concatenation."
    def __init__(self):
        super().__init__()
        from torchvision.models import resnet18
        self.spec_cnn = resnet18(weights=None)
        self.spec_cnn.conv1 = nn.Conv2d(1, 64, 7, stride=2, padding=3, bias=False)
        self.spec_cnn.fc = nn.Identity()
        frame_cnn = resnet18(weights=None); frame_cnn.fc = nn.Identity()
        self.frames = FoldFrames(frame_cnn)
        self.fuse = nn.Linear(1024, 6)
    def forward(self, b): return self.fuse(torch.cat([self.spec_cnn(b['audio']), self.frames(b['visual'])], 1))


def test_torchvision_resnet_pair_on_a_fabricated_cremad_tree(tmp_path):
    "Trained for 6 Adam steps, so the encoders are not at their initialisation; every check holds for any weights."
    from torchvision.models import resnet18
    from balance_nb.benchmark_data import CREMAD
    from balance_nb.testing import fabricate_tree
    from balance_nb.diagnosis import param_groups, feature_modules, FeatureTap, collect_features
    root = fabricate_tree('CREMAD', tmp_path/'cremad', n_train=3, n_test=1)
    tr, te = CREMAD('train', root=root, image_size=48), CREMAD('test', root=root, image_size=48)
    test_dl = make_loader(te, 6)
    b = next(iter(test_dl))
    assert b['audio'].shape[:2] == (6, 1) and b['visual'].shape[1:] == (2, 3, 48, 48)
    torch.manual_seed(0)
    net = CremaResNets()
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    for _ in range(3):
        for tb in make_loader(tr, 6, shuffle=True):
            loss = F.cross_entropy(net(tb), tb['label']); opt.zero_grad(); loss.backward(); opt.step()
    net.eval()
    kw = dict(encoders={'audio': 'spec_cnn', 'visual': net.frames}, features={'audio': 'spec_cnn', 'visual': 'frames'},
              probe_loader=make_loader(tr, 6))
    brute = diagnose(net, test_dl, **kw)
    v = brute.coalitions['accuracy']
    assert sum(brute.shapley.values()) == pytest.approx(v.iloc[-1] - v.iloc[0], abs=1e-12)       # efficiency
    assert brute.metrics['acc'] == pytest.approx(v.iloc[-1])
    with torch.no_grad():                                  # one coalition by hand: the frames replaced by zeros
        only_audio = net({'audio': b['audio'], 'visual': torch.zeros_like(b['visual'])}).argmax(1)
    assert brute.coalitions.loc['audio', 'correct'] == int((only_audio == b['label']).sum())
    fast = diagnose(net, test_dl, fast=True, **kw)
    assert fast.coalitions.equals(brute.coalitions) and fast.shapley == brute.shapley
    groups, stock = param_groups(net, kw['encoders'], ('audio', 'visual')), resnet18(weights=None)
    stock_params = [p for n, p in stock.named_parameters() if not n.startswith('fc.')]
    for m in ('audio', 'visual'): assert len(groups[m]) == len(stock_params)
    assert sum(p.numel() for p in groups['visual']) == sum(p.numel() for p in stock_params)
    assert sum(p.numel() for p in groups['audio']) == sum(p.numel() for p in stock_params) - 64 * 2 * 7 * 7   # conv1: 1 channel
    assert not {id(p) for p in groups['audio']} & {id(p) for p in groups['visual']}
    assert brute.metrics['grad_norm_audio'] > 0 and brute.metrics['grad_norm_visual'] > 0
    with FeatureTap(feature_modules(net, kw['features'], ('audio', 'visual'))) as tap:
        feats, y = collect_features(net, test_dl, ('audio', 'visual'), tap)
    assert {m: x.shape for m, x in feats.items()} == {'audio': (6, 512), 'visual': (6, 512)} and len(y) == 6
    with pytest.raises(DiagnoseError, match=r"'visual' gave 12 rows for 6 samples.*frames folded into the batch"):
        diagnose(net, test_dl, features={'visual': 'frames.per_frame'}, probe_loader=test_dl)
