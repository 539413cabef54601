"""Run one notebook top to bottom, in a fresh process; exit 1 if a cell fails.

    python tools/run_nb.py nbs/03_learner.ipynb --kernel             # as a student's "Run All": a real ipykernel
    python tools/run_nb.py nbs/03_learner.ipynb --kernel --inplace   # ... and keep the outputs in the notebook
    python tools/run_nb.py nbs/03_learner.ipynb --skip notest,slow   # nbdev's kernel-less engine (what nbdev-test runs)
    python tools/run_nb.py nbs/11_feedforward_methods.ipynb --package --skip notest,slow   # its tests, on balance_nb's code

`--kernel` is what JupyterLab's "Run All" and `jupyter nbconvert --execute` do: nbclient starts an ipykernel whose
working folder is the notebook's folder, runs every cell (`#| slow` and `#| notest` included: a student runs them
too) with `IN_TEST` unset, and stops at the first error. The executed copy goes to `--out` (default: a temporary
file); with `--inplace` a successful run also replaces the notebook (then `nbdev-clean` strips ids and counts and
keeps the outputs, so the committed notebook shows what it produced).

The nbdev engine runs the cells in this process with nbdev's shell (no kernel: `in_jupyter()` is False there),
skipping the cells whose flags are given. Each notebook gets its own process either way: notebooks re-define the
classes they export and register them, so two notebooks in one process would mix their classes.

`--package` (nbdev engine) runs the notebook's tests against the code of the importable `balance_nb` instead of the
notebook's own definitions: every `#| export` cell is replaced by a cell that takes every name of the module the
notebook exports to (`#| default_exp`), and the repository is not put first on `sys.path`, so whatever `balance_nb`
Python imports is what is tested. A broken copy of a method in `balance_nb/methods/` then fails its notebook's
wiring tests, as a broken copy in the notebook does without `--package`.
"""
import argparse, json, os, re, shutil, subprocess, sys, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

def run_nbdev(nb: Path, skip: str, package: bool = False) -> bool:
    "Run `nb` with nbdev's in-process engine, skipping cells flagged with any of `skip` (comma-separated); `package`: see --package."
    from nbdev.test import test_nb
    flags = [f for f in skip.split(',') if f]
    if not package: return test_nb(nb, skip_flags=flags, basepath=ROOT)[0]
    copy = nb.with_name(f'_package_{nb.stem}_{os.getpid()}.ipynb')     # beside it: the same working folder
    try:
        copy.write_text(json.dumps(on_package(json.loads(nb.read_text()), nb.name)))
        return test_nb(copy, skip_flags=flags)[0]
    finally: copy.unlink(missing_ok=True)

def _directives(src: str) -> list[str]:
    return [l[3:].strip() for l in src.splitlines() if l.startswith('#| ')]

def on_package(book: dict, name: str) -> dict:
    "`book` (notebook JSON) with every `#| export` cell replaced by one that takes the names of its exported module."
    cells = [c for c in book['cells'] if c['cell_type'] == 'code']
    exp = [d.split()[1] for c in cells for d in _directives(''.join(c['source'])) if d.startswith('default_exp ')]
    if not exp:
        print(f"run_nb.py --package: {name} has no `#| default_exp` cell, so it exports no module to test.", file=sys.stderr)
        sys.exit(2)
    module = f"balance_nb.{exp[0]}"
    take = (f"import importlib as _il\n_mod = _il.import_module({module!r})\n"
            f"globals().update({{k: v for k, v in vars(_mod).items() if not k.startswith('__')}})   # {module}, as imported\n")
    for c in cells:
        if any(re.fullmatch(r'export[is]?', d) for d in _directives(''.join(c['source']))): c['source'] = take
    return book

def run_kernel(nb: Path, out: Path, timeout: int = 900) -> bool:
    "Execute `nb` in a fresh ipykernel as Run All does (cwd = its folder); write the executed notebook to `out`."
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError
    os.environ.pop('IN_TEST', None)                 # a student's kernel has no IN_TEST
    os.environ['MPLBACKEND'] = 'module://matplotlib_inline.backend_inline'   # JupyterLab's inline figures, whatever the shell set
    book = nbformat.read(nb, as_version=4)
    client = NotebookClient(book, timeout=timeout, kernel_name='python3', resources={'metadata': {'path': str(nb.parent)}},
                            shutdown_kernel='immediate')   # every output has arrived when execute() returns; a graceful stop adds ~1-2 s
    ok = True
    try: client.execute()
    except CellExecutionError as e:
        ok = False
        print(f"{nb.name}: a cell failed in the kernel\n{str(e)[-6000:]}", file=sys.stderr)
    finally: nbformat.write(book, out)
    return ok

def cell_seconds(book) -> list[tuple[float, int, str]]:
    "(seconds, cell number, first source line) of every executed code cell, from the timing nbclient records."
    from datetime import datetime
    out = []
    for i, c in enumerate(book.cells):
        t = c.get('metadata', {}).get('execution', {})
        if c.cell_type == 'code' and 'iopub.execute_input' in t and 'shell.execute_reply' in t:
            dt = (datetime.fromisoformat(t['shell.execute_reply'].rstrip('Z')) - datetime.fromisoformat(t['iopub.execute_input'].rstrip('Z')))
            code = [l for l in c.source.strip().splitlines() if not l.startswith('#|')] or ['']   # the first line that is code
            out.append((dt.total_seconds(), i, code[0][:70]))
    return out

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('notebook')
    p.add_argument('--skip', default='notest', help="nbdev engine: comma-separated cell flags to skip (default: notest)")
    p.add_argument('--kernel', action='store_true', help='run every cell in a real ipykernel (nbclient), as Run All does')
    p.add_argument('--package', action='store_true', help="nbdev engine: test the importable balance_nb's code, not the notebook's export cells")
    p.add_argument('--inplace', action='store_true', help='--kernel: write the outputs back into the notebook')
    p.add_argument('--out', help='--kernel: where to write the executed notebook (default: a temporary file)')
    p.add_argument('--slowest', type=int, default=0, metavar='N', help='--kernel: print the N slowest cells with their seconds')
    p.add_argument('--timeout', type=int, default=900, help='--kernel: seconds one cell may take (default 900)')
    a = p.parse_args()
    nb = Path(a.notebook).resolve()
    if not nb.is_file(): p.error(f"no notebook at {nb}; give a path such as nbs/00_core.ipynb")
    if (a.inplace or a.out) and not a.kernel: p.error("--inplace and --out go with --kernel")
    if a.package and a.kernel: p.error("--package goes with the nbdev engine (a kernel runs the notebook as a student sees it)")
    t0 = time.perf_counter()
    if a.kernel:
        out = Path(a.out) if a.out else Path(tempfile.mkdtemp(prefix='run_nb_'))/nb.name
        ok = run_kernel(nb, out, a.timeout)
        if a.inplace and ok:   # a failed run never overwrites the source; nbdev's cleaner keeps the outputs
            shutil.copyfile(out, nb)
            subprocess.run([str(Path(sys.executable).with_name('nbdev-clean')), '--fname', str(nb)], check=True)
        elif not a.out: print(f"executed copy: {out}")
        if a.slowest:
            import nbformat
            for sec, i, first in sorted(cell_seconds(nbformat.read(out, as_version=4)), reverse=True)[:a.slowest]:
                print(f"  {sec:6.1f} s  cell {i:3d}  {first}")
    else:
        os.environ.setdefault('MPLBACKEND', 'Agg')
        ok = run_nbdev(nb, a.skip, a.package)
    how = 'kernel' if a.kernel else 'nbdev, on the package' if a.package else 'nbdev'
    print(f"{nb.name}: {'ok' if ok else 'FAILED'} in {time.perf_counter() - t0:.1f} s ({how})", flush=True)
    return 0 if ok else 1

if __name__ == '__main__': sys.exit(main())
