"""One run in two processes (torchrun, gloo on CPU) against the same run in one process with the whole batch.

33_distributed shows OGM (with its statistics summed over the processes), a refused method, a refused batch size and
what happens when OGM's synchronisation is removed; these tests add the baseline with its unimodal reference runs,
every other method declared exact (`ddp = True`), and resuming a data-parallel run from a checkpoint.
"""
import json, os, shutil, subprocess, sys
from pathlib import Path
import pandas as pd
import yaml
import pytest
import torch
from balance_nb.learner import Callback

TORCHRUN = ['-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2']   # --standalone: a free port (tests run side by side)

def launch(*launcher, out, flags, env=None):
    env = {**(env or os.environ), 'OMP_NUM_THREADS': '1', 'MPLBACKEND': 'Agg'}
    done = subprocess.run([sys.executable, *launcher, '-m', 'balance_nb', *flags, '--out', str(out)],
                          capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    method = flags[flags.index('--trainer') + 1]                       # its folder (UMT's teachers have their own)
    return next(Path(out).glob(f'{method}-*/config.yaml')).parent

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

@pytest.mark.parametrize('method,logged', [('MMCosine', 'mmcosine_cos_y_pix'), ('MBSD', 'mbsd_rs')])
def test_methods_with_per_sample_losses_match_one_process(tmp_path, method, logged):
    "Their losses are means of per-sample terms: nothing to add up, and their logged batch means are the whole batch's."
    flags = ['--trainer', method, '--dataset', 'MFeat', '--epochs', '1', '--device', 'cpu', '--no-reference']
    two, one = launch(*TORCHRUN, out=tmp_path/'two', flags=flags), launch(out=tmp_path/'one', flags=flags)
    s2, s1 = (pd.read_csv(f/'steps.csv') for f in (two, one))
    assert len(s2) == len(s1) and s1[logged].abs().max() > 0
    for col in ('loss', logged): assert (s2[col] - s1[col]).abs().max() < 1e-4, col
    assert max_gap(weights(two), weights(one)) < 1e-3

# (method, extra flags, per-step columns, per-epoch columns): each a number the method computes from the batch
SYNCED = [
    ('AGM', [], ['agm_score_pix', 'agm_coef_mor'], []),                          # batch-mean scores: mean_over_ranks
    ('AMCo', [], ['amco_dependence_mass_pix'], []),                             # batch-mean mass: mean_over_ranks
    ('UniAux', [], ['uniaux_score_pix', 'uniaux_weight_mor'], []),              # the course's method: mean_over_ranks
    ('OPM', [], ['opm_drop_prob_pix', 'opm_drop_executed'], []),                # sums; the whole batch's random draws
    ('PMR', [], ['pmr_proto_score_pix', 'pmr_proto_ratio'], []),                # prototypes on whole batches, sums
    ('CML', ['--epochs', '3'], ['cml_hinge'], []),                              # hinge of a batch sum: batch_sum (active
                                                                                # at one step of 132 here; see below)
    ('LFM', [], ['lfm_align'], ['lfm_alpha_align']),                            # per-sample terms, hyper-gradient alike
    ('GBlending', [], [], ['gb_weight_fused', 'gb_weight_pix']),                # temporary runs on whole batches
    ('ReLearning', ['--epochs', '3', '--reinit_epoch', '1'], [], ['relearning_purity_gap_pix', 'relearning_reinit_weight_mor']),
    ('MMPareto', [], ['mmpareto_cos_pix', 'mmpareto_w_mm_mor'], []),            # per-loss gradients: whole_batch_grads
    ('MLA', [], ['mla_unimodal_loss_pix', 'grad_norm_mor'], []),                # steps outside DDP: sync_grads;
                                                                                # projector's mean feature: mean_over_ranks
    ('UMT', [], ['umt_distill_pix', 'umt_distill_mor'], []),                    # per-sample terms; teachers trained in 2 processes
    ('ReconBoost', [], ['reconboost_loss_pix', 'reconboost_loss_mor'], ['reconboost_rate']),   # a boosting stage's steps
                                                                                # outside DDP: sync_grads
    ('ModalityValuation', ['--epochs', '2'], [], ['modval_added_copies', 'modval_contribution_pix']),  # valued alike
                                                                                # everywhere; its resampled loader shared out
    ('Greedy', [], ['greedy_speed', 'greedy_curating_mor'], []),                # MMTM gates' running means: mean_over_ranks
]

# every tool of 33_distributed replaced by "this process's own numbers"
UNSYNCED = """import contextlib, balance_nb.distributed as d
d.sum_over_ranks = d.mean_over_ranks = d.batch_sum = d.same_on_every_rank = lambda learn, t: t
d.batch_slice = lambda learn: (slice(0, len(learn.batch['label'])), len(learn.batch['label']))
d.whole_batches = contextlib.contextmanager(lambda learn: (yield learn.train_dl))
d.whole_batch_grads = lambda learn, grads: grads
"""

# MLA's projector divides element-wise by α + k rᵀ (BalanceMM's rule, 11_feedforward_methods), and its entries near
# zero amplify rounding: after about 15 steps, even one process on 1 thread and on 2 threads part (weights 0.013 apart
# after an epoch, per-step numbers 1e-3). Its first steps are compared, where rounding (1e-7) is all that differs; the
# processes' weights are equal to each other at the end (DataParallelCB checks) but not to one process's.
STABLE_STEPS = {'MLA': 12}

def differences(two, one, step_cols, epoch_cols) -> dict:
    "Largest difference of each column (and of the final weights) between the two-process and the one-process run."
    s2, s1 = (pd.read_csv(f/'steps.csv') for f in (two, one))
    e2, e1 = (pd.read_csv(f/'history.csv') for f in (two, one))
    assert len(s2) == len(s1) and len(e2) == len(e1)
    if (n := STABLE_STEPS.get(yaml.safe_load((one/'config.yaml').read_text())['method'])):
        s2, s1 = s2.head(n), s1.head(n)
        return {col: (s2[col] - s1[col]).abs().max() for col in ('loss', *step_cols)}
    for col in ('loss', *step_cols): assert s1[col].abs().max() > 0, col            # the statistic is really there
    for col in epoch_cols: assert e1[col].notna().any(), col
    return {**{col: (s2[col] - s1[col]).abs().max() for col in ('loss', *step_cols)},
            **{col: (e2[col] - e1[col]).abs().max() for col in epoch_cols}, 'weights': max_gap(weights(two), weights(one))}

@pytest.mark.parametrize('method,extra,step_cols,epoch_cols', SYNCED, ids=[t[0] for t in SYNCED])
def test_methods_with_batch_statistics_match_one_process(tmp_path, method, extra, step_cols, epoch_cols):
    """Two processes, each with half of every batch, log the one-process statistics and end with its weights; with
    the synchronisation removed (each process its own statistics) they do not, or the processes' weights part."""
    flags = ['--trainer', method, '--dataset', 'MFeat', '--epochs', '1', '--device', 'cpu', '--no-reference', *extra]
    one = launch(out=tmp_path/'one', flags=flags)
    gaps = differences(launch(*TORCHRUN, out=tmp_path/'two', flags=flags), one, step_cols, epoch_cols)
    assert max(gaps.values()) < 1e-3, gaps
    if method in ('LFM', 'UMT'): return              # nothing to synchronise: their losses are per-sample terms
    if method == 'ModalityValuation': return         # uses no tool; that its loader is shared out is tested below
    site = tmp_path/'unsync'; site.mkdir(); (site/'sitecustomize.py').write_text(UNSYNCED)
    env = {**os.environ, 'PYTHONPATH': f"{site}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    try: broken = launch(*TORCHRUN, out=tmp_path/'broken', flags=flags, env=env)
    except AssertionError as e: assert 'ended with different weights' in str(e); return
    assert max(differences(broken, one, step_cols, epoch_cols).values()) > 1e-3

def _helpers_in_one_of_two(rank, store, out):
    "Process `rank` of 2 with its unequal slice (3 and 2 of 5 samples) of a batch, as DataParallelCB gives it."
    import torch.distributed as dist
    from types import SimpleNamespace
    from balance_nb.distributed import batch_sum, mean_over_ranks, same_on_every_rank, whole_batch_grads
    dist.init_process_group('gloo', init_method=f'file://{store}', rank=rank, world_size=2)
    x = torch.tensor([0.5, -1., 2., 0.3, -0.2], dtype=torch.float64)
    sl = [slice(0, 3), slice(3, 5)][rank]
    learn = SimpleNamespace(ddp=True, batch={'label': x[sl]})
    w = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    s = (w * x[sl]) ** 2
    mean = mean_over_ranks(learn, s.mean())
    slice_grad, = whole_batch_grads(learn, list(torch.autograd.grad(s.mean(), w, retain_graph=True)))  # outside DDP
    # a per-sample mean plus a nonlinear function of a batch sum, weighted by w_k = N|B_k|/|B| as DataParallelCB does
    loss = (s.mean() + torch.relu(batch_sum(learn, (w * x[sl]).sum()) - 0.1) ** 2) * (2 * len(x[sl]) / len(x))
    loss.backward()
    g = w.grad.clone(); dist.all_reduce(g); g /= 2                      # what DDP does to the gradients
    order = same_on_every_rank(learn, [rank, 'drawn by', rank])
    torch.save({'mean': mean.item(), 'grad': g.item(), 'order': order, 'mean_grad': slice_grad.item()}, out/f'{rank}.pt')
    dist.destroy_process_group()

def test_the_synchronisation_tools_give_the_one_process_numbers(tmp_path):
    "mean_over_ranks, batch_sum (value and gradient), whole_batch_grads and same_on_every_rank in two gloo processes, unequal slices."
    torch.multiprocessing.spawn(_helpers_in_one_of_two, args=(tmp_path/'store', tmp_path), nprocs=2)
    x = torch.tensor([0.5, -1., 2., 0.3, -0.2], dtype=torch.float64)
    w = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    s = (w * x) ** 2
    mean_grad, = torch.autograd.grad(s.mean(), w, retain_graph=True)     # the whole batch's mean loss's gradient
    loss = s.mean() + torch.relu((w * x).sum() - 0.1) ** 2            # one process, the whole batch
    loss.backward()
    for r in (0, 1):
        got = torch.load(tmp_path/f'{r}.pt')
        assert abs(got['mean'] - s.mean().item()) < 1e-12
        assert abs(got['grad'] - w.grad.item()) < 1e-12, (got['grad'], w.grad.item())
        assert got['order'] == [0, 'drawn by', 0]
        assert abs(got['mean_grad'] - mean_grad.item()) < 1e-12, (got['mean_grad'], mean_grad.item())

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
    r = subprocess.run([sys.executable, *TORCHRUN, '-m', 'balance_nb', '--trainer', 'UMT', '--hp', 'teacher_bn=train',
                        '--dataset', 'MFeat', '--device', 'cpu', '--out', str(tmp_path)], capture_output=True, text=True, env=env)
    assert r.returncode != 0 and 'UMT cannot train in several processes yet' in r.stderr
    assert "teacher_bn='train' runs the teachers' BatchNorm" in r.stderr   # its own reason
    assert 'AGM' in r.stderr and 'MMPareto' in r.stderr                # the methods that can
    assert not list(tmp_path.glob('*/config.yaml'))                   # refused before any run folder was made

def test_data_parallel_training_refuses_a_loader_it_cannot_share_out(tmp_path):
    "A training loader that is not an EpochLoader: a clear error naming what it is (in a process group of one)."
    import torch.distributed as dist
    from balance_nb.data import MFeat
    from balance_nb.models import build_model
    from balance_nb.learner import Learner, MethodConfigError
    from balance_nb.distributed import DataParallelCB
    ds = MFeat('train', views='pix,mor')
    dl = torch.utils.data.DataLoader(ds, batch_size=32)
    dist.init_process_group('gloo', init_method=f"file://{tmp_path/'group'}", rank=0, world_size=1)
    try:
        learn = Learner(build_model(ds), dl, cbs=[DataParallelCB()], progress=False)
        with pytest.raises(MethodConfigError, match='shares out the batches of an EpochLoader.*DataLoader'): learn.fit(1)
    finally: dist.destroy_process_group()

class _CountTrain(Callback):
    "The training samples this process sees in each epoch."
    def before_fit(self): self.n = {}
    def after_batch(self):
        if self.learn.training: self.n[self.learn.epoch] = self.n.get(self.learn.epoch, 0) + len(self.learn.batch['label'])

def _resample_in_one_of_two(rank, store, out):
    "ModalityValuation (resampling from epoch 1) on 150 AV-Digits samples in process `rank` of 2."
    import torch.distributed as dist
    from balance_nb.core import set_seed
    from balance_nb.data import AVDigits, make_loader
    from balance_nb.models import build_model
    from balance_nb.learner import Learner
    from balance_nb.methods.data import ModalityValuation
    from balance_nb.distributed import DataParallelCB
    dist.init_process_group('gloo', init_method=f'file://{store}', rank=rank, world_size=2)
    torch.set_num_threads(1)
    ds = AVDigits('valid').subset(torch.arange(150))
    set_seed(0)
    count = _CountTrain()
    learn = Learner(build_model(ds), make_loader(ds, 32, shuffle=True), cbs=[ModalityValuation(), count, DataParallelCB()],
                    progress=False).fit(2)
    torch.save({'seen': count.n, 'copies': learn.history.epochs.modval_added_copies.tolist()}, out/f'{rank}.pt')
    dist.destroy_process_group()

def test_a_resampled_training_loader_is_shared_out(tmp_path):
    "ModalityValuation's epoch-1 loader (the samples plus their copies) is shared between the processes like the first."
    torch.multiprocessing.spawn(_resample_in_one_of_two, args=(tmp_path/'store', tmp_path), nprocs=2)
    r0, r1 = (torch.load(tmp_path/f'{r}.pt') for r in (0, 1))
    copies = int(r0['copies'][1])
    assert copies > 0 and r0['copies'][1] == r1['copies'][1]                    # the same plan in both processes
    assert r0['seen'][0] + r1['seen'][0] == 150                                  # epoch 0: the 150 samples, shared
    assert r0['seen'][1] + r1['seen'][1] == 150 + copies                         # epoch 1: samples and copies, shared
    assert abs(r0['seen'][1] - r1['seen'][1]) <= -(-(150 + copies) // 32)       # about half each (one per batch at most)

class _CountValid(Callback):
    "Counts the validation samples this process sees."
    def __init__(self): self.n = 0
    def after_valid_batch(self): self.n += len(self.learn.batch['label'])

def _fit_and_evaluate(world):
    "1 epoch of the baseline on 3-view MFeat (train: 600 samples, valid: 199), then `evaluate` on the valid split."
    from balance_nb.core import set_seed
    from balance_nb.data import MFeat, make_loader
    from balance_nb.models import build_model
    from balance_nb.learner import Learner
    from balance_nb.metrics import EvalCB, evaluate
    from balance_nb.distributed import DataParallelCB, share_samples
    tr, va = MFeat('train', views='pix,fou,mor'), MFeat('valid', views='pix,fou,mor')
    tr, va = tr.subset(torch.arange(600)), va.subset(torch.arange(199))          # 199: unequal parts, 100 and 99
    set_seed(0)
    count = _CountValid()
    cbs = [EvalCB(), count] + ([DataParallelCB()] if world > 1 else [])
    learn = Learner(build_model(tr), make_loader(tr, 32, shuffle=True), make_loader(va, 64), cbs=cbs, progress=False)
    learn.fit(1)
    dl = share_samples(make_loader(va, 64))
    seen = [i for b in dl for i in b['idx'].tolist()]
    return {'row': dict(learn.history.epoch_rows[-1]), 'valid_seen': count.n, 'test': evaluate(learn.model, dl),
            'test_seen': seen, 'weights': {k: v.clone() for k, v in learn.model.state_dict().items()}}

def _evaluation_in_one_of_two(rank, store, out, sabotage):
    import torch.distributed as dist
    dist.init_process_group('gloo', init_method=f'file://{store}', rank=rank, world_size=2)
    torch.set_num_threads(1)
    if sabotage:                                       # each process keeps its own part's numbers
        from balance_nb.metrics import MetricAccumulator
        from balance_nb.distributed import DataParallelCB
        MetricAccumulator.add_other_processes = lambda self: None
        DataParallelCB.after_validate = lambda self: None
    torch.save(_fit_and_evaluate(2), out/f'{rank}.pt')
    dist.destroy_process_group()

@pytest.mark.parametrize('sabotage', [False, True], ids=['summed', 'each-its-own'])
def test_evaluation_is_shared_out_and_added_up(tmp_path, sabotage):
    """Two processes each validate and evaluate their own contiguous part of the split (each sample once) and report
    the whole split's numbers: the one-process numbers, with the counts added up over the processes (04_metrics);
    without the adding up, each process reports its own part's numbers, which differ."""
    torch.set_num_threads(1)
    one = _fit_and_evaluate(1)
    torch.multiprocessing.spawn(_evaluation_in_one_of_two, args=(tmp_path/'store', tmp_path, sabotage), nprocs=2)
    r0, r1 = (torch.load(tmp_path/f'{r}.pt', weights_only=False) for r in (0, 1))
    assert (r0['valid_seen'], r1['valid_seen'], one['valid_seen']) == (100, 99, 199)       # each sample validated once
    assert r0['test_seen'] == list(range(100)) and r1['test_seen'] == list(range(100, 199))
    assert max((r0['weights'][k] - one['weights'][k]).abs().max().item() for k in one['weights']) < 1e-4
    keys = ['acc', 'f1', 'acc_pix', 'f1_fou', 'shapley_pix', 'shapley_mor', 'imbalance']
    if not sabotage:
        for r in (r0, r1):
            assert abs(r['row']['valid_loss'] - one['row']['valid_loss']) < 1e-4
            for k in keys:
                assert abs(r['row'][k] - one['row'][k]) < 1e-9, (k, r['row'][k], one['row'][k])
                assert abs(r['test'][k] - one['test'][k]) < 1e-9, (k, r['test'][k], one['test'][k])
    else:
        assert abs(r0['row']['valid_loss'] - r1['row']['valid_loss']) > 1e-3
        assert any(abs(r0['test'][k] - r1['test'][k]) > 1e-3 for k in keys)
        assert any(abs(r0['row'][k] - one['row'][k]) > 1e-3 for k in keys)
