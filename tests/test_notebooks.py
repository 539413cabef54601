"""Every notebook in nbs/ runs top to bottom, two ways — each notebook in a process of its own:

- `test_notebook` (the fast pass): nbdev's kernel-less engine, cells marked `#| slow` or `#| notest` skipped, as
  `nbdev-test` runs them;
- `test_method_notebook_on_the_package` (fast pass): the method notebooks' tests again, on the code of the
  importable `balance_nb` instead of the notebook's own `#| export` cells (`run_nb.py --package`), so that a broken
  copy of a method in `balance_nb/methods/` fails the same wiring tests as a broken copy in its notebook;
- `test_notebook_in_kernel` (marker `kernel`, run with `pytest -m kernel`): every cell, slow ones included, in a
  fresh ipykernel started by nbclient — exactly what a student's "Run All" in JupyterLab (or
  `jupyter nbconvert --to notebook --execute`) does: `in_jupyter()` is True there and `IN_TEST` is unset.

Notebooks re-define the classes they export and register them, so two notebooks in one process would mix their
classes: each gets its own process (or kernel).
"""
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

METHOD_NBS = [nb for nb in NBS if nb.name.split('_')[0] in ('10', '11', '12', '13', '40')]   # every registered method's notebook

def _on_package(nb):
    return subprocess.run([sys.executable, str(ROOT/'tools'/'run_nb.py'), str(nb), '--package', '--skip', 'notest,slow'],
                          env={**os.environ, 'MPLBACKEND': 'Agg', 'IN_TEST': '1'}, capture_output=True, text=True)

@pytest.mark.parametrize('nb', METHOD_NBS, ids=lambda p: p.name)
def test_method_notebook_on_the_package(nb):
    done = _on_package(nb)
    assert done.returncode == 0, f'{nb.name} on the package failed:\n{done.stdout[-6000:]}\n{done.stderr[-12000:]}'
    assert 'on the package' in done.stdout

def test_package_mode_tests_the_package_code():
    "A copy of balance_nb whose OPM never drops features fails 11's OPM wiring test in --package mode (the notebook itself is untouched)."
    done = subprocess.run([sys.executable, str(ROOT/'tools'/'broken_methods.py'), 'opm-never-drops'], capture_output=True, text=True)
    assert done.returncode == 0 and 'KILLED' in done.stdout and "test_close(rec['hd']" in done.stdout, done.stdout + done.stderr[-3000:]

def test_broken_methods_names_the_valid_entries():
    done = subprocess.run([sys.executable, str(ROOT/'tools'/'broken_methods.py'), 'opm-nope'], capture_output=True, text=True)
    assert done.returncode == 2 and "unknown entries ['opm-nope']" in done.stderr and 'opm-never-drops' in done.stderr, done.stderr

def test_package_mode_needs_an_exporting_notebook(tmp_path):
    import nbformat
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")])
    nbformat.write(nb, tmp_path/'plain.ipynb')
    done = _on_package(tmp_path/'plain.ipynb')
    assert done.returncode == 2 and 'has no `#| default_exp` cell' in done.stderr, done.stderr[-2000:]

@pytest.mark.kernel
@pytest.mark.parametrize('nb', NBS, ids=lambda p: p.name)
def test_notebook_in_kernel(nb, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != 'IN_TEST'}
    done = subprocess.run([sys.executable, str(ROOT/'tools'/'run_nb.py'), str(nb), '--kernel', '--out', str(tmp_path/nb.name)],
                          env=env, capture_output=True, text=True)
    print(done.stdout.strip().splitlines()[-1] if done.stdout.strip() else '')
    assert done.returncode == 0, f'{nb.name} failed in a kernel:\n{done.stdout[-6000:]}\n{done.stderr[-12000:]}'

def test_runner_names_a_missing_notebook():
    done = subprocess.run([sys.executable, str(ROOT/'tools'/'run_nb.py'), 'nbs/nope.ipynb'], capture_output=True, text=True)
    assert done.returncode == 2 and 'no notebook at' in done.stderr and 'nbs/00_core.ipynb' in done.stderr

def test_runner_kernel_mode_runs_what_nbdev_skips_and_sees_a_kernel(tmp_path):
    "In kernel mode `#| slow` cells run, in_jupyter() is True and IN_TEST is unset, as in JupyterLab; a failing cell fails the run."
    import nbformat
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "#| slow\nimport os\nfrom balance_nb.analysis import in_jupyter\nassert in_jupyter() and 'IN_TEST' not in os.environ\n"
        "open('ran.txt', 'w').write('yes')")], metadata={'kernelspec': {'name': 'python3', 'display_name': 'Python 3', 'language': 'python'}})
    src = tmp_path/'k.ipynb'; nbformat.write(nb, src)
    env = {**os.environ, 'IN_TEST': '1', 'PYTHONPATH': str(ROOT)}
    done = subprocess.run([sys.executable, str(ROOT/'tools'/'run_nb.py'), str(src), '--kernel', '--out', str(tmp_path/'out.ipynb')],
                          env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path/'ran.txt').read_text() == 'yes'          # ran with the notebook's folder as working folder
    nb.cells.append(nbformat.v4.new_code_cell("raise ValueError('boom')")); nbformat.write(nb, src)
    done = subprocess.run([sys.executable, str(ROOT/'tools'/'run_nb.py'), str(src), '--kernel', '--inplace'],
                          env=env, capture_output=True, text=True)
    assert done.returncode == 1 and 'boom' in done.stderr
    assert nbformat.read(src, 4).cells[0].outputs == []        # a failed run leaves the notebook as it was

def test_runner_refuses_output_flags_without_a_kernel():
    "--inplace and --out write an executed notebook, which only a kernel run makes: exit 2 and the fix named."
    for flag in (['--inplace'], ['--out', 'x.ipynb']):
        done = subprocess.run([sys.executable, str(ROOT/'tools'/'run_nb.py'), str(NBS[0]), *flag], capture_output=True, text=True)
        assert done.returncode == 2 and '--inplace and --out go with --kernel' in done.stderr, done.stderr
