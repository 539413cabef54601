"Sweeps from the shell: a killed sweep resumes without re-training finished runs; worker processes give the same results."
import os, re, signal, sqlite3, subprocess, sys, time
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, 'PYTHONPATH': str(ROOT), 'IN_TEST': '1', 'MPLBACKEND': 'Agg'}

def sweep_cmd(store, *extra):
    return [sys.executable, '-m', 'balance_nb', 'sweep', '--trainers', 'baseline', '--dataset', 'MFeat',
            '--seeds', '0,1,2,3', '--epochs', '1', '--store', str(store), '--no-progress', *extra]

def stored(store) -> dict:
    "config key → finished timestamp of every row in the store."
    if not Path(store).exists(): return {}
    try:
        with sqlite3.connect(store, timeout=30) as db: return dict(db.execute('SELECT key, finished FROM runs').fetchall())
    except sqlite3.OperationalError: return {}       # the table is being created

def test_killed_sweep_resumes_without_recomputing(tmp_path):
    store = tmp_path/'results.sqlite'
    p = subprocess.Popen(sweep_cmd(store), cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         start_new_session=True)
    try:
        deadline = time.time() + 600
        while len(stored(store)) < 1 and p.poll() is None and time.time() < deadline: time.sleep(0.1)
    finally:
        os.killpg(p.pid, signal.SIGKILL); p.wait()       # the sweep and anything it started
    before = stored(store)
    assert 1 <= len(before) < 4, f"expected a partial sweep, the store has {len(before)} of 4 runs"

    r = subprocess.run(sweep_cmd(store, '--workers', '2', '--table', str(tmp_path/'t.md')), cwd=tmp_path, env=ENV,
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    after = stored(store)
    assert len(after) == 4
    assert {k: after[k] for k in before} == before                  # finished runs were not trained (or written) again
    assert f"4 runs: {4 - len(before)} trained, {len(before)} from the store, 0 failed" in r.stderr
    table = (tmp_path/'t.md').read_text()
    assert re.search(r'\| baseline \| \*\*\d+\.\d ± \d+\.\d\*\*', table), table   # mean ± std over the 4 seeds, bold

    # a run trained in a worker process equals the same run trained here
    from balance_nb.experiment import RunConfig, ResultStore, run
    new_seed = next(s for s in range(4) if RunConfig(dataset='MFeat', epochs=1, seed=s).key() not in before)
    c = RunConfig(dataset='MFeat', epochs=1, seed=new_seed, out=None)
    here = run(c, progress=False).metrics
    there = ResultStore(store).get(c)[0]
    assert abs(here['acc'] - there['acc']) <= 0.01 and abs(here['shapley_pix'] - there['shapley_pix']) <= 0.02

def test_sweep_cli_errors(tmp_path):
    r = subprocess.run([sys.executable, '-m', 'balance_nb', 'sweep', '--trainers', 'baseline,Nope', '--store', str(tmp_path/'s.sqlite')],
                       env=ENV, capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 2 and 'Valid methods:' in r.stderr
    r = subprocess.run([sys.executable, '-m', 'balance_nb', 'sweep', '--dataset', 'MFeat', '--hp', 'baseline.alpha=0.1',
                        '--store', str(tmp_path/'s.sqlite')], env=ENV, capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 2 and 'has no hyper-parameter' in r.stderr
    r = subprocess.run([sys.executable, '-m', 'balance_nb', 'sweep', '--dataset', 'AVDigits', '--image-pool', 'x',
                        '--store', str(tmp_path/'s.sqlite')], env=ENV, capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 2 and "--image-pool 'x'" in r.stderr
    assert not (tmp_path/'s.sqlite').exists() or len(stored(tmp_path/'s.sqlite')) == 0

def test_sweep_in_shards_then_merged_equals_the_whole_sweep(tmp_path):
    "A grid split into 3 shards (as a Slurm array would run it), each into its own store, merged: the same table."
    grid = ['--trainers', 'baseline,unimodal', '--dataset', 'MFeat', '--seeds', '0,1', '--epochs', '1', '--no-progress']
    def sweep(store, *extra):
        r = subprocess.run([sys.executable, '-m', 'balance_nb', 'sweep', *grid, '--store', str(store), *extra,
                            '--csv', str(store.with_suffix('.csv'))], env=ENV, capture_output=True, text=True, cwd=tmp_path, timeout=900)
        assert r.returncode == 0, r.stderr[-3000:]
        return r
    whole = sweep(tmp_path/'whole.sqlite')
    shards = [sweep(tmp_path/f'shard-{i}.sqlite', '--shard', f'{i}/3') for i in range(3)]
    sizes = [len(stored(tmp_path/f'shard-{i}.sqlite')) for i in range(3)]
    assert sizes == [2, 2, 2], sizes                                   # 6 runs, disjoint parts
    assert 'shard 1/3' in shards[1].stderr
    m = subprocess.run([sys.executable, '-m', 'balance_nb', 'store', 'merge', *(str(tmp_path/f'shard-{i}.sqlite') for i in range(3)),
                        '--into', str(tmp_path/'merged.sqlite')], env=ENV, capture_output=True, text=True, cwd=tmp_path)
    assert m.returncode == 0 and '6 runs added' in m.stdout, m.stdout + m.stderr
    assert set(stored(tmp_path/'merged.sqlite')) == set(stored(tmp_path/'whole.sqlite'))
    # the merged store answers the whole grid without training, and its table equals the unsharded one (timings aside)
    again = sweep(tmp_path/'merged.sqlite')
    assert '6 runs: 0 trained, 6 from the store, 0 failed' in again.stderr
    import pandas as pd
    a, b = (pd.read_csv(tmp_path/f'{n}.csv').set_index('key').sort_index() for n in ('whole', 'merged'))
    cols = [c for c in a.columns if c not in ('train_seconds', 'seconds_per_step')]
    pd.testing.assert_frame_equal(a[cols], b[cols], check_exact=False, atol=0.01)
    assert (a[['acc', 'probe_acc_pix']].notna().any()).all()

def test_sweep_devices_and_shard_errors(tmp_path):
    base = [sys.executable, '-m', 'balance_nb', 'sweep', '--dataset', 'MFeat', '--store', str(tmp_path/'s.sqlite')]
    r = subprocess.run(base + ['--shard', '3/3'], env=ENV, capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 2 and 'expected I/N' in r.stderr
    import torch
    if not torch.cuda.is_available():
        r = subprocess.run(base + ['--devices', '0,1'], env=ENV, capture_output=True, text=True, cwd=tmp_path)
        assert r.returncode == 2 and 'no CUDA device' in r.stderr
    r = subprocess.run([sys.executable, '-m', 'balance_nb', '--device', '0,1', '--out', str(tmp_path)], env=ENV,
                       capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 2 and 'sweep --devices 0,1' in r.stderr and 'one device' in r.stderr
    assert not list(tmp_path.glob('*/config.yaml'))                   # nothing was trained or written


def test_sweep_workers_limit_every_thread_pool(monkeypatch):
    "A worker's torch, BLAS and OpenMP pools all get its share of the cores (idle BLAS threads spin on the other worker's core)."
    import multiprocessing as mp, threadpoolctl
    from concurrent.futures import ProcessPoolExecutor
    from balance_nb import sweep
    for var in ('OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'MKL_NUM_THREADS'): monkeypatch.delenv(var, raising=False)  # as in a notebook
    # a fresh interpreter with this environment (the sweep's forkserver may have started earlier with another one)
    with ProcessPoolExecutor(1, mp_context=mp.get_context('spawn'), initializer=sweep._init_worker, initargs=(1, os.getpid(), None)) as ex:
        info = ex.submit(threadpoolctl.threadpool_info).result()
    assert {'openblas', 'openmp'} <= {i['internal_api'] for i in info}      # NumPy/SciPy BLAS and OpenMP are loaded ...
    assert [i['num_threads'] for i in info] == [1] * len(info), info       # ... and every pool has the worker's one thread
