"""One run in two processes (torchrun, gloo on CPU) against the same run in one process with the whole batch.

33_distributed shows OGM (with its statistics summed over the processes), a refused method, a refused batch size and
what happens when OGM's synchronisation is removed; these tests add the baseline with its unimodal reference runs,
and resuming a data-parallel run from a checkpoint.
"""
import json, os, shutil, subprocess, sys
from pathlib import Path
import pandas as pd
import pytest
import torch

TORCHRUN = ['-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2']   # --standalone: a free port (tests run side by side)

def launch(*launcher, out, flags):
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'MPLBACKEND': 'Agg'}
    done = subprocess.run([sys.executable, *launcher, '-m', 'balance_nb', *flags, '--out', str(out)],
                          capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    return next(Path(out).glob('*/config.yaml')).parent

def weights(folder): return torch.load(folder/'checkpoints'/'last.pt', weights_only=False)['model']

def max_gap(a, b): return max((a[k] - b[k]).abs().max().item() for k in a)

def test_baseline_and_its_unimodal_references_in_two_processes_match_one(tmp_path):
    flags = ['--trainer', 'baseline', '--dataset', 'MFeat', '--epochs', '1', '--device', 'cpu']
    two, one = launch(*TORCHRUN, out=tmp_path/'two', flags=flags), launch(out=tmp_path/'one', flags=flags)
    m2, m1 = (json.loads((f/'metrics.json').read_text()) for f in (two, one))
    assert (m2['recorded']['world_size'], m1['recorded']['world_size']) == (2, 1)
    s2, s1 = (pd.read_csv(f/'steps.csv') for f in (two, one))
    assert len(s2) == len(s1) == 44                                    # 1400 samples, global batches of 32
    assert (s2.loss - s1.loss).abs().max() < 1e-4                      # the whole batch's loss at every step
    assert max_gap(weights(two), weights(one)) < 1e-4
    for k in ('acc', 'alone_acc_pix', 'alone_acc_mor'):               # the unimodal references trained in 2 processes too
        assert abs(m2[k] - m1[k]) <= 0.0051, (k, m2[k], m1[k])
    assert (tmp_path/'two'/'results.sqlite').exists()

@pytest.mark.parametrize('trainer,logged', [('MMCosine', 'mmcosine_cos_y_pix'), ('MBSD', 'mbsd_rs')])
def test_methods_with_per_sample_losses_match_one_process(tmp_path, trainer, logged):
    "Their losses are means of per-sample terms: nothing to add up, and their logged batch means are the whole batch's."
    flags = ['--trainer', trainer, '--dataset', 'MFeat', '--epochs', '1', '--device', 'cpu', '--no-reference']
    two, one = launch(*TORCHRUN, out=tmp_path/'two', flags=flags), launch(out=tmp_path/'one', flags=flags)
    s2, s1 = (pd.read_csv(f/'steps.csv') for f in (two, one))
    assert len(s2) == len(s1) and s1[logged].abs().max() > 0
    for col in ('loss', logged): assert (s2[col] - s1[col]).abs().max() < 1e-4, col
    assert max_gap(weights(two), weights(one)) < 1e-3

def test_a_data_parallel_run_resumes_from_a_checkpoint(tmp_path):
    "A 2-epoch run in two processes resumed after its first epoch ends where one process's 2-epoch run ends."
    flags = ['--trainer', 'OGM', '--dataset', 'MFeat', '--device', 'cpu', '--no-reference', '--modulation_starts', '0']
    full = launch(out=tmp_path/'full', flags=flags + ['--epochs', '2'])
    half = launch(out=tmp_path/'half', flags=flags + ['--epochs', '1'])
    cut = tmp_path/'resumed'/full.name/'checkpoints'                   # the 2-epoch run's folder, killed after epoch 0
    cut.mkdir(parents=True); shutil.copy(half/'checkpoints'/'last.pt', cut/'last.pt')
    resumed = launch(*TORCHRUN, out=tmp_path/'resumed', flags=flags + ['--epochs', '2', '--resume'])
    assert resumed.name == full.name
    h = pd.read_csv(resumed/'history.csv')
    assert list(h.epoch) == [0, 1]                                     # epoch 0 from the checkpoint, epoch 1 trained
    assert max_gap(weights(resumed), weights(full)) < 1e-3                # as close as an unbroken run in 2 processes (08)
    assert json.loads((resumed/'metrics.json').read_text())['recorded']['world_size'] == 2

def test_torchrun_refuses_what_would_train_differently(tmp_path):
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    r = subprocess.run([sys.executable, *TORCHRUN, '-m', 'balance_nb', '--trainer', 'AGM', '--dataset', 'MFeat',
                        '--device', 'cpu', '--out', str(tmp_path)], capture_output=True, text=True, env=env)
    assert r.returncode != 0 and 'AGM cannot train in several processes yet' in r.stderr and 'OGM' in r.stderr
    assert not list(tmp_path.glob('*/config.yaml'))                   # refused before any run folder was made
