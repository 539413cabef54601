"The objective methods (notebook 12) from the command line, as a user runs them (two and three modalities), and UMT's teachers from a store."
import json, os, subprocess, sys
from pathlib import Path
import pandas as pd
import pytest
import torch

from helpers import ROOT, cli, run_folder

# method → (published column, file it lands in: steps.csv per step, history.csv per epoch)
PUBLISHED = {'MMCosine': ('mmcosine_cos_y_{m}', 'steps.csv'), 'UMT': ('umt_distill_{m}', 'steps.csv'), 'MBSD': ('mbsd_rs', 'steps.csv'),
             'CML': ('cml_hinge', 'steps.csv'), 'MMPareto': ('mmpareto_cos_{m}', 'steps.csv'),
             'GBlending': ('gb_weight_fused', 'history.csv'), 'LFM': ('lfm_alpha_align', 'history.csv')}
THREE = list(PUBLISHED)        # all seven run on three modalities (BalanceMM has 3-modality paths for MMCosine, MBSD, CML)



def check_run(out, method, modality, min_acc):
    rd = run_folder(out, method)
    m = json.loads((rd/'metrics.json').read_text())
    assert m['acc'] >= min_acc, m
    col, file = PUBLISHED[method]
    df = pd.read_csv(rd/file)
    col = col.format(m=modality)
    assert col in df.columns and df[col].notna().any(), (col, list(df.columns))

@pytest.mark.slow
@pytest.mark.parametrize('method', list(PUBLISHED))
def test_trains_on_avdigits(method, tmp_path):
    r = cli('--trainer', method, '--dataset', 'AVDigits', '--epochs', '1', '--no-reference', '--out', str(tmp_path))
    assert r.returncode == 0, r.stderr[-3000:]
    assert 'fused' in r.stdout and 'imbalance degree' in r.stdout
    check_run(tmp_path, method, 'visual', 0.3)          # one epoch; the baseline reaches ~0.75 here

@pytest.mark.parametrize('method', THREE)
def test_trains_on_three_mfeat_views(method, tmp_path):
    r = cli('--trainer', method, '--dataset', 'MFeat', '--views', 'pix,fou,mor', '--epochs', '1', '--no-reference', '--out', str(tmp_path))
    assert r.returncode == 0, r.stderr[-3000:]
    check_run(tmp_path, method, 'fou', 0.5)             # the baseline reaches ~0.95 after one epoch

@pytest.mark.parametrize('method', ['MMCosine', 'CML'])
def test_four_views_are_refused(method, tmp_path):
    r = cli('--trainer', method, '--dataset', 'MFeat', '--views', 'pix,fou,mor,kar', '--epochs', '1', '--no-reference', '--out', str(tmp_path))
    assert r.returncode == 2
    assert f'{method} supports at most 3 modalities' in r.stderr

def test_bad_hyperparameters_exit_2(tmp_path):
    r = cli('--trainer', 'GBlending', '--method', 'sometimes', '--dataset', 'MFeat', '--out', str(tmp_path))
    assert r.returncode == 2 and "'online' or 'offline'" in r.stderr
    r = cli('--trainer', 'MMCosine', '--lam', '0.3', '--dataset', 'MFeat', '--out', str(tmp_path))
    assert r.returncode == 2 and 'MMCosine has no hyper-parameter' in r.stderr and 'scaling=15.0' in r.stderr

def test_umt_teachers_come_from_the_store_and_run_folder(tmp_path):
    "Teachers trained before (cached in the store) are loaded from their run folder's checkpoints/best.pt (BalanceMM's best-validation teacher), not retrained."
    from balance_nb.experiment import run, ResultStore, RunConfig
    store = ResultStore(tmp_path/'results.sqlite')
    c = RunConfig(dataset='MFeat', epochs=2, out=str(tmp_path))
    teachers = {m: run(c, method='unimodal', hparams={'modality': m}, store=store, progress=False) for m in ('pix', 'mor')}
    r = run(c, method='UMT', store=store, progress=False)
    umt = next(cb for cb in r.learner.cbs if type(cb).__name__ == 'UMT')
    for m, t in teachers.items():
        saved = torch.load(t.run_dir/'checkpoints'/'best.pt', weights_only=False)
        for k, v in umt.teacher[m].state_dict().items(): assert torch.equal(v, saved['model'][f'encoders.{m}.{k}']), k
        assert r.history.epochs.loc[0, f'umt_teacher_acc_{m}'] == t.metrics['acc']
        assert r.history.epochs.loc[0, f'umt_teacher_epoch_{m}'] == saved['epoch'] == int(t.history.epochs.acc.idxmax())
    assert len(store) == 3                             # two teachers + the UMT run: nothing retrained

def test_umt_teachers_come_from_a_store_that_keeps_weights(tmp_path):
    "Without run folders (the course's runs), a store made with weights=True gives UMT its teachers' best-validation weights: nothing retrained."
    from balance_nb.experiment import run, ResultStore, RunConfig
    store = ResultStore(tmp_path/'results.sqlite', weights=True)
    c = RunConfig(dataset='MFeat', epochs=2, out=None)
    teachers = {m: run(c, method='unimodal', hparams={'modality': m}, store=store, progress=False) for m in ('pix', 'mor')}
    import sqlite3
    def finished(): return dict(sqlite3.connect(store.path).execute("SELECT key, finished FROM runs").fetchall())
    before = finished()
    r = run(c, method='UMT', store=store, progress=False)
    umt = next(cb for cb in r.learner.cbs if type(cb).__name__ == 'UMT')
    for m, t in teachers.items():
        best = store.states(t.config)['best']
        for k, v in umt.teacher[m].state_dict().items(): assert torch.equal(v, best[f'encoders.{m}.{k}']), k
        assert r.history.epochs.loc[0, f'umt_teacher_epoch_{m}'] == int(t.history.epochs.acc.idxmax())
    assert len(store) == 3                             # two teachers + the UMT run
    after = finished()
    for t in teachers.values(): assert after[t.config.key()] == before[t.config.key()]   # no teacher was trained (and stored) again

def test_methods_do_not_import_the_experiment_layer():
    "Layers point one way: a method gets what it needs from above (UMT's teacher runs) through the Learner, never by import."
    import ast, importlib, inspect, pkgutil
    import balance_nb.methods as methods
    for mod in pkgutil.iter_modules(methods.__path__):
        tree = ast.parse(inspect.getsource(importlib.import_module(f'balance_nb.methods.{mod.name}')))
        imported = {n.name for x in ast.walk(tree) if isinstance(x, ast.Import) for n in x.names}
        imported |= {'.' * x.level + (x.module or '') for x in ast.walk(tree) if isinstance(x, ast.ImportFrom)}
        for name in imported:       # every import, module-level or deferred inside a function
            assert not any(layer in name.split('.') for layer in ('experiment', 'sweep', 'compare')), (mod.name, name)

def test_umt_in_a_bare_learner_names_the_missing_service():
    from balance_nb.core import set_seed
    from balance_nb.data import MFeat, make_loader
    from balance_nb.models import build_model
    from balance_nb.learner import Learner, MethodConfigError
    from balance_nb.methods.objective import UMT
    ds = MFeat('valid', views='pix,mor'); set_seed(0)
    learn = Learner(build_model(ds), make_loader(ds, 50), cbs=[UMT()], progress=False)
    with pytest.raises(MethodConfigError, match='`teacher_run`'): learn.fit(1)
