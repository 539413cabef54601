"The optimization-category methods (OGM, AGM, PMR, ReLearning, ReconBoost) and Modality-valuation trained from the command line, as a user runs them."
import os, subprocess, sys
from pathlib import Path
import pandas as pd
import pytest

from helpers import ROOT, cli, run_folder

# method, extra flags, a quantity the method must publish in the step table of a 1-epoch run (None: nothing due yet)
AV_CASES = [
    ('OGM', (), 'ogm_ratio_audio'),                 # window starts at epoch 2 in short runs: ratios only
    ('AGM', (), 'agm_coef_visual'),
    ('PMR', ('--alpha', '0.6'), 'pmr_proto_score_visual'),
    ('ReLearning', (), None),                   # first re-initialisation is due after epoch 2
    ('ReconBoost', (), 'reconboost_loss_visual'),
]

@pytest.mark.parametrize('method,flags,published', AV_CASES, ids=[c[0] + ''.join(c[1]) for c in AV_CASES])
def test_trains_on_avdigits(tmp_path, method, flags, published):
    r = cli('--trainer', method, '--dataset', 'AVDigits', '--epochs', '1', '--no-reference', '--out', str(tmp_path), *flags)
    assert r.returncode == 0, r.stderr[-3000:]
    assert 'fused' in r.stdout and 'imbalance degree' in r.stdout
    rd = run_folder(tmp_path, method)
    steps, epochs = pd.read_csv(rd/'steps.csv'), pd.read_csv(rd/'history.csv')
    assert len(epochs) == 1 and epochs['acc'].notna().all()
    if published: assert published in steps and steps[published].notna().any()

MF3 = ('--dataset', 'MFeat', '--views', 'pix,fou,mor', '--epochs', '1', '--no-reference')

# every optimization method and Modality-valuation runs on three modalities (the paper reports CMU-MOSEI numbers for
# all of them; OGM, PMR and ModalityValuation follow BalanceMM's three-modality code paths)
@pytest.mark.parametrize('method,published', [('AGM', 'agm_coef_mor'), ('ReLearning', None), ('ReconBoost', 'reconboost_loss_mor'),
                                               ('OGM', 'ogm_ratio_mor'), ('PMR', 'pmr_proto_score_mor'), ('ModalityValuation', None)])
def test_three_modality_methods_train_on_mfeat(tmp_path, method, published):
    r = cli('--trainer', method, *MF3, '--out', str(tmp_path))
    assert r.returncode == 0, r.stderr[-3000:]
    rd = run_folder(tmp_path, method)
    steps = pd.read_csv(rd/'steps.csv')
    for m in ('pix', 'fou', 'mor'): assert f'acc_{m}' in pd.read_csv(rd/'history.csv')
    if published: assert steps[published].notna().any()

@pytest.mark.parametrize('method', ['OGM', 'PMR'])
def test_three_modality_methods_refuse_four_views(tmp_path, method):
    r = cli('--trainer', method, '--dataset', 'MFeat', '--views', 'pix,fou,mor,kar', '--epochs', '1', '--no-reference',
            '--out', str(tmp_path))
    assert r.returncode == 2
    assert 'at most 3 modalities' in r.stderr and 'pix, fou, mor, kar' in r.stderr

def test_reconboost_reconcile_flag(tmp_path):
    "The reproduction setting is the default; the paper's differentiable reconcilement term is one flag away."
    r = cli('--trainer', 'ReconBoost', '--hp', 'reconcile=gradient', '--dataset', 'AVDigits', '--epochs', '1',
            '--no-reference', '--out', str(tmp_path))
    assert r.returncode == 0, r.stderr[-3000:]
    r = cli('--trainer', 'ReconBoost', '--hp', 'reconcile=both', '--epochs', '1', '--no-reference', '--out', str(tmp_path))
    assert r.returncode == 2 and 'detached, gradient' in r.stderr

def test_relearning_short_run_reinitialises(tmp_path):
    "With --reinit_epoch 1 a 3-epoch MFeat run re-initialises after epoch 1 (not after the last) and publishes gaps and weights."
    r = cli('--trainer', 'ReLearning', '--dataset', 'MFeat', '--epochs', '3', '--reinit_epoch', '1', '--no-reference',
            '--out', str(tmp_path))
    assert r.returncode == 0, r.stderr[-3000:]
    ep = pd.read_csv(run_folder(tmp_path, 'ReLearning')/'history.csv')
    for m in ('pix', 'mor'):
        assert ep[f'relearning_purity_gap_{m}'].isna().tolist() == [True, False, True]
        w, gap = ep[f'relearning_reinit_weight_{m}'].iloc[1], ep[f'relearning_purity_gap_{m}'].iloc[1]
        assert abs(w - __import__('math').tanh(3 * gap)) < 1e-9

def test_bad_option_names_valid_values(tmp_path):
    r = cli('--trainer', 'OGM', '--method', 'OGM-GE', '--epochs', '1', '--no-reference', '--out', str(tmp_path))
    assert r.returncode == 2 and 'OGM variant=' in r.stderr and 'OGM_GE, OGM' in r.stderr
    r = cli('--trainer', 'AGM', '--hp', 'sign=paper', '--epochs', '1', '--no-reference', '--out', str(tmp_path))
    assert r.returncode == 2 and 'balancemm, original' in r.stderr

def _learner(*cbs, data: str = 'AVDigits'):
    from balance_nb.core import set_seed
    from balance_nb.data import AVDigits, MFeat, make_loader
    from balance_nb.models import build_model
    from balance_nb.learner import Learner
    ds = {'AVDigits': AVDigits, 'MFeat': MFeat}[data]('valid'); set_seed(0)
    return Learner(build_model(ds), make_loader(ds, 32, shuffle=True, seed=0), make_loader(ds, 128), cbs=cbs, progress=False)

def test_two_step_owners_are_refused_before_training():
    "MLA and ReconBoost both replace the training step: fit refuses before either changes the model, naming both."
    from balance_nb.learner import StepConflictError
    from balance_nb.methods.feedforward import MLA
    from balance_nb.methods.optimization import ReconBoost
    learn = _learner(MLA(), ReconBoost())
    fusion = learn.model.fusion
    with pytest.raises(StepConflictError, match='MLA and ReconBoost each replace the training step'): learn.fit(1)
    assert learn.model.fusion is fusion and learn.history.step_rows == []
    with pytest.raises(AttributeError, match='give a callback a `train_step` method'): learn.train_step = print

# ReconBoost's step losses on MFeat's valid split (pix + mor, MLP encoders), seed 0, batch 32, one epoch (four passes:
# pix stage, global, mor stage, the Learner's own global pass), recorded with the code before its step and passes
# moved to public Learner hooks (commit 7b216f7). MLPs, not AV-Digits' CNN: convolution sums depend on the CPU and
# the memory layout, and Adam amplifies that past any tight tolerance.
RECONBOOST_LOSSES = [1.115531, 1.102964, 1.093675, 1.075921, 1.050694, 1.044541, 1.02436,
                     2.298507, 2.297457, 2.296601, 2.295658, 2.294686, 2.293511, 2.291114,
                     1.050236, 1.037834, 1.053117, 1.039769, 1.064973, 1.018842, 1.056085,
                     2.286944, 2.284989, 2.283564, 2.282307, 2.281874, 2.27922, 2.27462]

def test_reconboost_owns_the_step_and_trains_as_before():
    from balance_nb.methods.optimization import ReconBoost
    rb = ReconBoost()
    learn = _learner(rb, data='MFeat').fit(1)
    steps = learn.history.steps
    assert learn.step_owner is rb
    assert steps.loss.tolist() == pytest.approx(RECONBOOST_LOSSES, rel=1e-4)
    assert steps.reconboost_loss_pix.notna().sum() == 7 and steps.reconboost_loss_mor.notna().sum() == 7
    assert learn.history.epochs.valid_loss[0] == pytest.approx(2.274328, rel=1e-4)
