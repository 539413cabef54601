"Analysis and attribution: captum's modality Shapley = the package's, the live plot, the CLI's pictures."
import json, os, subprocess, sys
from pathlib import Path
import pytest
import torch
from balance_nb.core import set_seed
from balance_nb.data import MFeat, AVDigits, make_loader
from balance_nb.models import build_model
from balance_nb.learner import Learner
from balance_nb.metrics import EvalCB, GradNormCB, evaluate, sample_shapley, exact_shapley
from balance_nb.analysis import LivePlotCB, compare_runs, live_default
import balance_nb.analysis as analysis
from balance_nb.attribution import (captum_shapley, captum_ablation, modality_shapley, coalition_payoffs,
                                    integrated_gradients, modality_totals)

ROOT = Path(__file__).resolve().parents[1]

@pytest.fixture(scope='module')
def mfeat3():
    "A small trained model on three MFeat views (three players: the general Shapley formula, not just n=2)."
    set_seed(0)
    ds = MFeat('valid', views='pix,fou,mor')
    model = Learner(build_model(ds), make_loader(ds, 32, True), progress=False).fit(2).model.eval()
    return model, ds

@pytest.mark.parametrize('output', ['logit', 'prob', 'correct'])
def test_captum_shapley_equals_package_exact_shapley(mfeat3, output):
    model, ds = mfeat3
    batch = ds[list(range(len(ds)))]
    ours, theirs = modality_shapley(model, batch, output), captum_shapley(model, batch, output)
    for m in model.modalities:
        assert torch.allclose(ours[m], theirs[m], atol=1e-5), (m, (ours[m] - theirs[m]).abs().max())
    # and the package's values are exact_shapley over brute-force coalitions (inputs really zeroed)
    brute = exact_shapley(coalition_payoffs(model, batch, output, brute_force=True), model.modalities)
    for m in model.modalities: assert torch.allclose(brute[m], theirs[m], atol=1e-5)

def test_captum_accuracy_shapley_matches_evaluate_and_sample_shapley(mfeat3):
    model, ds = mfeat3
    batch = ds[list(range(len(ds)))]
    cap = captum_shapley(model, batch, 'correct')
    ev = evaluate(model, make_loader(ds, 64))
    for m in model.modalities: assert abs(cap[m].mean().item() - ev[f'shapley_{m}']) < 1e-5
    # sample_shapley fixes v(∅)=0: every modality shifts by v(∅)/n
    v0 = coalition_payoffs(model, batch, 'correct')[frozenset()]
    ss = sample_shapley(model, batch)
    for m in model.modalities: assert torch.allclose(ss[m], cap[m] + v0 / 3, atol=1e-5)

def test_feature_ablation_is_leave_one_out(mfeat3):
    model, ds = mfeat3
    batch = ds[list(range(64))]
    v, mods = coalition_payoffs(model, batch), frozenset(model.modalities)
    abl = captum_ablation(model, batch)
    for m in model.modalities: assert torch.allclose(abl[m], v[mods] - v[mods - {m}], atol=1e-5)

def test_integrated_gradients_completeness(mfeat3):
    model, ds = mfeat3
    batch = ds[list(range(32))]
    tot = modality_totals(integrated_gradients(model, batch, n_steps=64))
    v = coalition_payoffs(model, batch)
    gap = v[frozenset(model.modalities)] - v[frozenset()]
    assert torch.allclose(sum(tot.values()), gap, atol=1e-2 * gap.abs().max().item())

class _Handle:
    def __init__(self): self.updates = []
    def update(self, obj): self.updates.append(obj)

def _fit_small(cbs, epochs=2):
    set_seed(0)
    ds = MFeat('valid')
    return Learner(build_model(ds), make_loader(ds, 100, True), make_loader(ds, 100), cbs=[EvalCB(), GradNormCB(), *cbs],
                   progress=False).fit(epochs)

def test_liveplot_one_display_updated_in_place():
    shown = []
    def fake_display(obj, display_id=None):
        assert display_id is True
        h = _Handle(); shown.append((obj, h)); return h
    cb = LivePlotCB('t', quiet=False, display_fn=fake_display, max_share=1)
    learn = _fit_small([cb], epochs=3)
    assert len(shown) == 1                                    # exactly one display (a note until the first epoch) ...
    note, h = shown[0]
    fig = cb.fig
    assert type(note).__name__ == 'Markdown' and 'first epoch' in note.data
    assert len(h.updates) == 3 and all(f is fig for f in h.updates)   # ... updated once per epoch, same figure
    assert fig.axes[0].get_lines()[0].get_ydata().tolist() == learn.history.epochs.acc.tolist()

def test_liveplot_quiet_under_in_test(monkeypatch):
    monkeypatch.setenv('IN_TEST', '1')
    calls = []
    cb = LivePlotCB(display_fn=lambda *a, **k: calls.append(a))
    _fit_small([cb], epochs=1)
    assert calls == [] and cb.fig is None and cb.n_updates == 0

def test_live_default_only_in_a_kernel_outside_tests(monkeypatch):
    monkeypatch.setattr(analysis, 'in_jupyter', lambda: True)
    monkeypatch.setenv('IN_TEST', '1'); assert live_default() is False
    monkeypatch.delenv('IN_TEST'); assert live_default() is True
    monkeypatch.setattr(analysis, 'in_jupyter', lambda: False); assert live_default() is False

def test_compare_runs_bad_input():
    with pytest.raises(ValueError, match='non-empty dict'): compare_runs({})
    with pytest.raises(TypeError, match='Expected a RunResult'): compare_runs({'a': 1})

def test_cli_run_folder_holds_curves_png(tmp_path):
    r = subprocess.run([sys.executable, '-m', 'balance_nb', '--dataset', 'MFeat', '--epochs', '1', '--no-reference',
                        '--out', str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                       env={**os.environ, 'PYTHONPATH': str(ROOT), 'IN_TEST': '1', 'MPLBACKEND': 'Agg'})
    assert r.returncode == 0, r.stderr[-2000:]
    run_dir = next(p for p in tmp_path.iterdir() if p.is_dir())
    png = run_dir/'curves.png'
    assert png.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n' and png.stat().st_size > 10_000
    assert 'Figure' not in r.stdout                          # nothing was "displayed" on the terminal

def test_in_jupyter_reads_the_ipython_kernel(monkeypatch):
    "True only when IPython runs with a kernel (JupyterLab, nbconvert --execute); False in a terminal or nbdev's shell."
    import IPython
    class Shell: kernel = None
    shell = Shell()
    monkeypatch.setattr(IPython, 'get_ipython', lambda: shell)
    assert analysis.in_jupyter() is False                     # IPython without a kernel (terminal, nbdev-test)
    shell.kernel = object()
    assert analysis.in_jupyter() is True                      # a Jupyter kernel
    monkeypatch.setattr(IPython, 'get_ipython', lambda: None)
    assert analysis.in_jupyter() is False                     # plain Python

def test_run_adds_a_live_plot_only_in_a_kernel_outside_tests(monkeypatch, tmp_path):
    from balance_nb.experiment import run
    shown = []
    monkeypatch.setattr(analysis, '_ipython_display', lambda obj, display_id=True: shown.append(obj) or _Handle())
    monkeypatch.setattr(analysis, 'in_jupyter', lambda: True)
    monkeypatch.delenv('IN_TEST', raising=False)
    r = run(method='baseline', dataset='MFeat', epochs=1, out=None, progress=False, store=None)
    assert [type(cb).__name__ for cb in r.learner.cbs].count('LivePlotCB') == 1 and len(shown) == 1
    monkeypatch.setenv('IN_TEST', '1')
    r = run(method='baseline', dataset='MFeat', epochs=1, out=None, progress=False, store=None)
    assert 'LivePlotCB' not in [type(cb).__name__ for cb in r.learner.cbs] and len(shown) == 1

def test_run_figure_scales_published_quantities_and_keeps_imbalance_off_the_shapley_axis():
    import pandas as pd
    from balance_nb.analysis import plot_history
    class H: pass
    h = H()
    h.epochs = pd.DataFrame({'epoch': [0, 1, 2], 'acc': [.5, .6, .7], 'shapley_audio': [.3, .4, .4], 'shapley_visual': [.1, .1, .2],
                             'imbalance': [.5, .6, .33], 'count': [1200., 900., 600.], 'contrib_audio': [.4, .2, .1]})
    h.steps = pd.DataFrame({'epoch': [0, 0], 'iter': [0, 1], 'loss': [2., 1.]})
    fig = plot_history(h, modalities=['audio', 'visual'])
    panel4 = {l.get_label().split(' (')[0]: l.get_ydata() for l in fig.axes[3].get_lines()}
    assert max(abs(panel4['count'])) == 1 and max(abs(panel4['contrib audio'])) == 1   # both readable on one axis
    assert panel4['count'].tolist() == [1., .75, .5]
    assert 'imbalance' not in ' '.join(l.get_label() for l in fig.axes[2].get_lines())
    twin = fig.axes[2].balance_nb_twin
    assert twin.get_ylabel().startswith('imbalance degree') and twin.get_lines()[0].get_ydata().tolist() == [.5, .6, .33]
    assert 'Shapley' in fig.axes[2].get_ylabel() and 'Shapley' not in twin.get_ylabel()
    assert all(float(t).is_integer() for ax in fig.axes[:4:2] for t in ax.get_xticks())   # whole epochs
    fig2 = plot_history(h, modalities=['audio', 'visual'], axes=fig.axes[:4])           # a redraw reuses the twin
    assert fig2 is fig and len(fig.axes) == 5
