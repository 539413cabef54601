"What the test files share: the command line in a subprocess, as a user runs it, and finding a run folder."
import os, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

def cli(*args, cwd=None):
    "`python -m balance_nb ARGS` from the repository (or `cwd`), with this checkout first on the path and IN_TEST set."
    return subprocess.run([sys.executable, '-m', 'balance_nb', *args], cwd=cwd or ROOT, capture_output=True, text=True,
                          env={**os.environ, 'PYTHONPATH': str(ROOT), 'IN_TEST': '1'})

def run_folder(out: Path, method: str) -> Path:
    "The run folder of `method` under `out` (runs/<method>-<dataset>-s<seed>-<hash>)."
    return next(p for p in Path(out).iterdir() if p.is_dir() and p.name.startswith(f'{method}-'))
