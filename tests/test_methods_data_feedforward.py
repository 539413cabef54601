"Data and feed-forward methods (ModalityValuation/Sample, MLA, OPM, Greedy, AMCo) train from the CLI, one epoch each;\nGreedy on frame stacks (fabricated CREMA-D) and its refusal of three modalities."
import json, os, subprocess, sys
from pathlib import Path
import pandas as pd
import pytest

from helpers import ROOT, cli

def train(tmp_path, method, *extra, dataset='AVDigits', min_acc=0.1):
    r = cli('--trainer', method, '--dataset', dataset, '--epochs', '1', '--no-reference', '--device', 'cpu',
            '--out', str(tmp_path), *extra)
    assert r.returncode == 0, r.stderr[-3000:]
    run_dir = next(p.parent for p in tmp_path.glob('*/config.yaml'))   # (an alias like Sample runs as its method's name)
    metrics = json.loads((run_dir/'metrics.json').read_text())
    assert min_acc < metrics['acc'] <= 1.0                     # AV-Digits: learned something in one epoch (10 classes)
    return metrics, pd.read_csv(run_dir/'history.csv'), pd.read_csv(run_dir/'steps.csv')

# what each method publishes (the column must be in the run's history) and its extra CLI flags
AV_CASES = {
    'ModalityValuation': (('--modulation_starts', '0'), 'epochs', 'modval_added_copies'),
    'Sample': ((), 'epochs', None),      # BalanceMM's name (an alias); 1 epoch = warm-up only (Sample-level is tested in nbs/10)
    'MLA': ((), 'epochs', 'mla_gate_weight_visual'),
    'OPM': (('--p_exe', '0.7'), 'steps', 'opm_drop_prob_audio'),
    'Greedy': (('--window_size', '5'), 'steps', 'greedy_curating_visual'),
    'AMCo': (('--sigma', '0.5'), 'steps', 'amco_dependence_mass_audio'),
}

@pytest.mark.parametrize('method', list(AV_CASES))
def test_trains_on_avdigits(tmp_path, method):
    extra, table, column = AV_CASES[method]
    _, epochs, steps = train(tmp_path, method, *extra)
    df = epochs if table == 'epochs' else steps
    assert column is None or (column in df.columns and df[column].notna().any())
    if method == 'ModalityValuation': assert epochs.modval_added_copies[0] > 0       # audio dominates: copies from the first epoch

@pytest.mark.parametrize('method', ['MLA', 'OPM', 'AMCo'])
def test_three_views(tmp_path, method):
    m, _, _ = train(tmp_path, method, '--views', 'pix,fou,mor', dataset='MFeat')
    assert {'shapley_pix', 'shapley_fou', 'shapley_mor'} <= set(m)

def test_greedy_refuses_three(tmp_path):
    # the paper has no Greedy number on three modalities (its CMU-MOSEI cell is empty): MMTM couples exactly two
    r = cli('--trainer', 'Greedy', '--dataset', 'MFeat', '--views', 'pix,fou,mor', '--epochs', '1', '--no-reference',
            '--out', str(tmp_path))
    assert r.returncode == 2 and 'at most 2 modalities' in r.stderr and 'pix, fou, mor' in r.stderr

def test_greedy_on_frame_stacks(tmp_path):
    "Greedy on a fabricated CREMA-D tree (2 frames per clip, ResNet-18s): BalanceMM folds batch and time; so do we."
    from balance_nb.benchmark_data import fabricate_tree
    root = fabricate_tree('CREMAD', tmp_path/'cremad', n_train=2, n_test=1, size=24)
    m, _, steps = train(tmp_path/'out', 'Greedy', '--data-root', str(root), '--data-opt', 'image_size=32',
                        '--batch-size', '6', dataset='CREMAD', min_acc=0.0)
    assert {'shapley_audio', 'shapley_visual'} <= set(m) and steps['greedy_speed'].notna().any()

# MLA's step losses (mean of its two unimodal losses) on MFeat's valid split (pix + mor, MLP encoders), seed 0,
# batch 32, one epoch, recorded with the code before MLA's step moved from `learn.train_step = ...` to a `train_step`
# method the Learner runs (commit 7b216f7). MLPs, not AV-Digits' CNN: convolution kernels sum in an order that depends
# on the CPU and the memory layout, and ten Adam steps amplify that past any tight tolerance.
MLA_LOSSES = [2.286406, 2.249834, 2.243566, 2.206406, 2.193231, 2.150672, 2.159086]

def test_mla_owns_the_step_and_trains_as_before():
    from balance_nb.core import set_seed
    from balance_nb.data import MFeat, make_loader
    from balance_nb.models import build_model
    from balance_nb.learner import Learner
    from balance_nb.methods.feedforward import MLA
    ds = MFeat('valid'); set_seed(0)
    mla = MLA()
    learn = Learner(build_model(ds), make_loader(ds, 32, shuffle=True, seed=0), make_loader(ds, 128), cbs=[mla],
                    progress=False).fit(1)
    assert learn.step_owner is mla and mla.n_steps == 2 * len(MLA_LOSSES)    # one optimizer step per modality
    assert learn.history.steps.loss.tolist() == pytest.approx(MLA_LOSSES, rel=1e-4)
    assert learn.history.epochs.valid_loss[0] == pytest.approx(2.046281, rel=1e-4)

@pytest.mark.parametrize('argv,name,value', [
    (['--trainer', 'OGM', '--method', 'OGM'], 'variant', 'OGM'),
    (['--trainer', 'Sample', '--method', 'Sample-level'], 'level', 'Sample-level'),
    (['--trainer', 'ModalityValuation', '--method', 'Sample-level'], 'level', 'Sample-level'),
    (['--trainer', 'GBlending', '--method', 'offline'], 'schedule', 'offline'),
    (['--trainer', 'OGM', '--hp', 'variant=OGM'], 'variant', 'OGM')])
def test_balancemm_method_flag_reaches_the_renamed_hyperparameter(argv, name, value, tmp_path):
    "BalanceMM's `--method` (and a YAML `method:`) reaches the argument each class names for what it chooses."
    from balance_nb.experiment import build_parser, config_from_args, make_method, RunConfig
    c = config_from_args(build_parser().parse_args(argv)).resolved()
    assert c.hparams == {name: value}
    cb = make_method(c.method, c.hparams)
    assert getattr(cb, name) == value and not hasattr(cb, 'method')
    yml = tmp_path/'c.yaml'; yml.write_text(f"trainer: {argv[1]}\nhparams: {{method: {value}}}\n")
    if argv[2] == '--method':
        assert config_from_args(build_parser().parse_args(['--config', str(yml)])).resolved().hparams == {name: value}
        assert getattr(make_method(argv[1], {'method': value}), name) == value
