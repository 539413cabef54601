"""Every notebook in nbs/ runs top to bottom (cells marked `#| slow` or `#| notest` are skipped).

Each notebook runs in its own Python process (`tools/run_nb.py`), as it would in a fresh kernel."""
from pathlib import Path
import os, subprocess, sys
import pytest

ROOT = Path(__file__).resolve().parents[1]
NBS = sorted(p for p in (ROOT/'nbs').glob('*.ipynb') if not p.name.startswith(('_', '.')))

@pytest.mark.parametrize('nb', NBS, ids=lambda p: p.name)
def test_notebook(nb):
    done = subprocess.run([sys.executable, str(ROOT/'tools'/'run_nb.py'), str(nb), '--skip', 'notest,slow'],
                          env={**os.environ, 'MPLBACKEND': 'Agg', 'IN_TEST': '1'}, capture_output=True, text=True)
    assert done.returncode == 0, f'{nb.name} failed:\n{done.stdout[-6000:]}\n{done.stderr[-12000:]}'

def test_runner_names_a_missing_notebook():
    done = subprocess.run([sys.executable, str(ROOT/'tools'/'run_nb.py'), 'nbs/nope.ipynb'], capture_output=True, text=True)
    assert done.returncode == 2 and 'no notebook at' in done.stderr and 'nbs/00_core.ipynb' in done.stderr
