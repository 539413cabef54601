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
    assert r.returncode == 2 and 'Valid trainers:' in r.stderr
    r = subprocess.run([sys.executable, '-m', 'balance_nb', 'sweep', '--dataset', 'MFeat', '--hp', 'baseline.alpha=0.1',
                        '--store', str(tmp_path/'s.sqlite')], env=ENV, capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 2 and 'has no hyper-parameter' in r.stderr
    r = subprocess.run([sys.executable, '-m', 'balance_nb', 'sweep', '--dataset', 'AVDigits', '--image-pool', 'x',
                        '--store', str(tmp_path/'s.sqlite')], env=ENV, capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 2 and "--image-pool 'x'" in r.stderr
    assert not (tmp_path/'s.sqlite').exists() or len(stored(tmp_path/'s.sqlite')) == 0
