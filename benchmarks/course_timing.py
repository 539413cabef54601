"""Time every course notebook top to bottom, as a student runs it (slow cells included).

    python benchmarks/course_timing.py            # writes benchmarks/course_timing.md
    python benchmarks/course_timing.py --fast     # skip `#| slow` cells (what the tests run)

Each notebook runs with nbdev's engine in a fresh Python process of its own (`tools/run_nb.py`, as in a fresh kernel; the time
includes starting Python and importing torch), one at a time. The course store (runs/results.sqlite) is used as it
is: for a student's first pass, move it aside first so every demo trains. The table is copied into
nbs/index.ipynb's course map. Wall times depend on the machine and its load: run it on a quiet machine.
"""
import argparse, os, subprocess, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

def run_nb(nb: Path, skip_flags) -> bool:
    "Run `nb` in a fresh process (tools/run_nb.py); print its output when it fails."
    done = subprocess.run([sys.executable, str(ROOT/'tools'/'run_nb.py'), str(nb), '--skip', ','.join(skip_flags)],
                          capture_output=True, text=True)
    if done.returncode: print(done.stdout[-3000:], done.stderr[-6000:], sep='\n', file=sys.stderr)
    return done.returncode == 0

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--fast', action='store_true', help='skip cells marked #| slow')
    p.add_argument('--only', nargs='*', help='notebook name prefixes to time (default: all)')
    p.add_argument('--out', default=str(ROOT/'benchmarks'/'course_timing.md'))
    a = p.parse_args()
    nbs = sorted(q for q in (ROOT/'nbs').glob('*.ipynb') if not q.name.startswith(('_', '.')))
    if a.only: nbs = [q for q in nbs if q.name.startswith(tuple(a.only))]
    rows, total = [], 0.0
    for nb in nbs:
        t0 = time.perf_counter()
        ok = run_nb(nb, ['notest'] + (['slow'] if a.fast else []))
        secs = time.perf_counter() - t0; total += secs
        rows.append((nb.name, secs, ok)); print(f"{nb.name:32s} {secs:7.1f} s  {'ok' if ok else 'FAILED'}", flush=True)
    mode = 'slow cells skipped' if a.fast else 'every cell, as a student runs it'
    lines = [f"# Course timing ({mode})", '', f"Machine: {os.cpu_count()} CPU cores; "
             f"measured {time.strftime('%Y-%m-%d %H:%M')} by `python benchmarks/course_timing.py{' --fast' if a.fast else ''}`.", '',
             '| notebook | seconds | ran |', '|---|---:|---|']
    lines += [f"| {n} | {s:.0f} | {'yes' if ok else 'FAILED'} |" for n, s, ok in rows]
    lines += [f"| **total** | **{total:.0f}** ({total/60:.1f} min) | |"]
    Path(a.out).write_text('\n'.join(lines) + '\n')
    print(f"total {total:.0f} s -> {a.out}")
    return 0 if all(ok for _, _, ok in rows) else 1

if __name__ == '__main__': sys.exit(main())
