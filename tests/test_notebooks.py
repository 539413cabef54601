"Every notebook in nbs/ runs top to bottom (cells marked `#| slow` or `#| notest` are skipped)."
from pathlib import Path
import os
import pytest
from nbdev.test import test_nb as run_nb   # aliased: pytest would collect a global named test_nb

ROOT = Path(__file__).resolve().parents[1]
NBS = sorted(p for p in (ROOT/'nbs').glob('*.ipynb') if not p.name.startswith(('_', '.')))

@pytest.mark.parametrize('nb', NBS, ids=lambda p: p.name)
def test_notebook(nb):
    os.environ.setdefault('MPLBACKEND', 'Agg')
    ok, secs = run_nb(nb, skip_flags=['notest', 'slow'], basepath=ROOT)
    assert ok, f'{nb.name} failed (traceback above)'
