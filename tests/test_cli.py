"The command line, end to end, in a subprocess (as a user runs it)."
import json, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]

def cli(*args, cwd=None):
    return subprocess.run([sys.executable, '-m', 'balance_nb', *args], cwd=cwd or ROOT, capture_output=True, text=True,
                          env={**__import__('os').environ, 'PYTHONPATH': str(ROOT), 'IN_TEST': '1'})

def test_help_lists_trainers_and_datasets():
    r = cli('--help')
    assert r.returncode == 0 and 'baseline' in r.stdout and 'AVDigits' in r.stdout and 'MFeat' in r.stdout

def test_unknown_trainer_exit_2():
    r = cli('--trainer', 'Nope')
    assert r.returncode == 2 and 'Valid trainers:' in r.stderr

def test_unknown_flag_exit_2():
    r = cli('--colour', 'red')
    assert r.returncode == 2 and 'Valid flags:' in r.stderr

def test_missing_data_names_path_and_layout(tmp_path):
    r = cli('--data-root', str(tmp_path/'empty'), '--out', str(tmp_path))
    assert r.returncode == 2 and str(tmp_path/'empty') in r.stderr and 'Expected layout' in r.stderr

@pytest.mark.slow
def test_baseline_avdigits_shows_imbalance(tmp_path):
    "The README's main command: fused acc >= 0.95 and the image modality clearly under-optimised."
    r = cli('--trainer', 'baseline', '--dataset', 'AVDigits', '--device', 'cpu', '--out', str(tmp_path))
    assert r.returncode == 0, r.stderr[-2000:]
    run_dir = next(p for p in tmp_path.iterdir() if p.is_dir() and p.name.startswith('baseline-'))
    m = json.loads((run_dir/'metrics.json').read_text())
    assert m['acc'] >= 0.95
    assert m['alone_acc_visual'] - m['acc_visual'] > 0.1          # the weak modality is under-optimised
    assert m['shapley_audio'] > m['shapley_visual']               # audio dominates
    assert (run_dir/'curves.png').exists() and (run_dir/'history.csv').exists()
    assert 'fused' in r.stdout and 'imbalance degree' in r.stdout
