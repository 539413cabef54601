"""Run one notebook top to bottom with nbdev's engine, in this (fresh) process; exit 1 if a cell fails.

    python tools/run_nb.py nbs/03_learner.ipynb --skip notest,slow

The tests and benchmarks/course_timing.py start it once per notebook, as a fresh kernel would run it: notebooks
re-define the classes they export and register them, so two notebooks in one process would mix their classes.
"""
import argparse, os, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('notebook')
    p.add_argument('--skip', default='notest', help="comma-separated cell flags to skip (default: notest)")
    a = p.parse_args()
    os.environ.setdefault('MPLBACKEND', 'Agg')
    from nbdev.test import test_nb
    nb = Path(a.notebook).resolve()
    if not nb.is_file(): p.error(f"no notebook at {nb}; give a path such as nbs/00_core.ipynb")
    ok, _ = test_nb(nb, skip_flags=[f for f in a.skip.split(',') if f], basepath=ROOT)
    return 0 if ok else 1

if __name__ == '__main__': sys.exit(main())
