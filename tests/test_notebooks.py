"""Every notebook in nbs/ runs top to bottom (cells marked `#| slow` or `#| notest` are skipped).

Each notebook runs in its own Python process, as it would in a fresh kernel: notebooks re-define the classes they
export and register them, so running several in one process would mix a notebook's classes with another's."""
from pathlib import Path
import os, subprocess, sys
import pytest

ROOT = Path(__file__).resolve().parents[1]
NBS = sorted(p for p in (ROOT/'nbs').glob('*.ipynb') if not p.name.startswith(('_', '.')))
RUNNER = ("import sys; from nbdev.test import test_nb; "
          "ok, secs = test_nb(sys.argv[1], skip_flags=['notest', 'slow'], basepath=sys.argv[2]); "
          "sys.exit(0 if ok else 1)")

@pytest.mark.parametrize('nb', NBS, ids=lambda p: p.name)
def test_notebook(nb):
    env = {**os.environ, 'MPLBACKEND': 'Agg', 'IN_TEST': '1'}
    done = subprocess.run([sys.executable, '-c', RUNNER, str(nb), str(ROOT)], cwd=ROOT/'nbs', env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, f'{nb.name} failed:\n{done.stdout[-6000:]}\n{done.stderr[-12000:]}'
