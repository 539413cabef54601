"""Time every course notebook top to bottom, as a student runs it: "Run All" in a real Jupyter kernel, slow cells included.

    python benchmarks/course_timing.py                          # the course as it is now; writes benchmarks/course_timing.md
    python benchmarks/course_timing.py --fresh-store            # a student's first pass: the course store starts empty
    python benchmarks/course_timing.py --fresh-store --inplace  # ... and keep every notebook's outputs (refresh the course)
    python benchmarks/course_timing.py --fast                   # nbdev's kernel-less engine, slow cells skipped (the fast tests)

Each notebook runs in a fresh ipykernel of its own (`tools/run_nb.py --kernel`, the same path as CI's
`pytest -m kernel`), one after another; the time includes starting the kernel and importing torch. `--fresh-store`
moves the course store (`course_store()`, `runs/results.sqlite`) aside first (it is put back unless the run filled
a new one) so every demo trains. `--inplace` writes each executed notebook back into nbs/ (then `nbdev-clean`), which
is how the committed notebooks get the pictures a student sees before running anything: `tools/refresh_course.sh`
does that and redraws the README figure. Wall times depend on the machine and its load: run it on a quiet machine,
alone (two torch processes on two cores thrash).
"""
import argparse, os, re, shutil, subprocess, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

def run_nb(nb: Path, fast: bool, inplace: bool) -> tuple[bool, list[str]]:
    "Run `nb` in a fresh kernel (or nbdev's engine with `fast`); print its output when it fails. (ok, its 3 slowest cells)"
    args = ['--skip', 'notest,slow'] if fast else ['--kernel', '--slowest', '3'] + (['--inplace'] if inplace else [])
    env = {**os.environ, 'IN_TEST': '1'} if fast else {k: v for k, v in os.environ.items() if k != 'IN_TEST'}
    done = subprocess.run([sys.executable, str(ROOT/'tools'/'run_nb.py'), str(nb), *args], capture_output=True, text=True, env=env)
    if done.returncode: print(done.stdout[-3000:], done.stderr[-6000:], sep='\n', file=sys.stderr)
    slow = [' '.join(l.split()) for l in done.stdout.splitlines() if re.match(r'\s+[\d.]+ s  cell ', l)]   # "12.3 s cell 41 first line"
    return done.returncode == 0, slow

def update_course_map(index: Path, rows, total: float):
    "Write the measured first-pass seconds into the course map's table and its total into its sentence (as JSON cells)."
    import json
    book, secs = json.loads(index.read_text()), {n.removesuffix('.ipynb'): s for n, s, ok, _ in rows if ok}
    for cell in book['cells']:
        if cell['cell_type'] != 'markdown': continue
        text = ''.join(cell['source'])
        new = re.sub(r'^(\| \[([\w-]+)\]\(\2\.ipynb\) \|.*\| )\d+ s \|$',
                     lambda m: f"{m[1]}{secs[m[2]]:.0f} s |" if m[2] in secs else m[0], text, flags=re.M)
        new = re.sub(r'takes about \d+ minutes the first time', f'takes about {round(total / 60)} minutes the first time', new)
        if new != text: cell['source'] = new.splitlines(keepends=True)
    index.write_text(json.dumps(book, indent=1, ensure_ascii=False) + '\n')

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--fast', action='store_true', help="nbdev's engine, cells marked #| slow skipped (what the fast tests run)")
    p.add_argument('--fresh-store', action='store_true', help='start from an empty course store (a first pass)')
    p.add_argument('--inplace', action='store_true', help='write each executed notebook back into nbs/ (outputs committed)')
    p.add_argument('--only', nargs='*', help='notebook name prefixes to time (default: all)')
    p.add_argument('--out', default=str(ROOT/'benchmarks'/'course_timing.md'))
    a = p.parse_args()
    if a.fast and a.inplace: p.error('--inplace needs a kernel run: drop --fast')
    nbs = sorted(q for q in (ROOT/'nbs').glob('*.ipynb') if not q.name.startswith(('_', '.')))
    if a.only: nbs = [q for q in nbs if q.name.startswith(tuple(a.only))]
    from balance_nb.experiment import course_store
    store = course_store().path
    aside = store.with_name(store.name + '.aside')
    if a.fresh_store and store.exists(): shutil.move(store, aside)
    import torch
    rows, total = [], 0.0
    try:
        for nb in nbs:
            t0 = time.perf_counter()
            ok, slow = run_nb(nb, a.fast, a.inplace)
            secs = time.perf_counter() - t0; total += secs
            rows.append((nb.name, secs, ok, slow)); print(f"{nb.name:32s} {secs:7.1f} s  {'ok' if ok else 'FAILED'}", flush=True)
    finally:
        if aside.exists() and not store.exists(): shutil.move(aside, store)
    mode = ('slow cells skipped, nbdev engine' if a.fast else 'every cell, in a real Jupyter kernel, as Run All')
    mode += ', first pass (empty course store)' if a.fresh_store else ', course store as it was'
    flags = ' '.join(f for f, on in (('--fast', a.fast), ('--fresh-store', a.fresh_store), ('--inplace', a.inplace)) if on)
    lines = [f"# Course timing ({mode})", '', f"Machine: {os.cpu_count()} CPU cores, torch {torch.__version__} with "
             f"{torch.get_num_threads()} threads; measured {time.strftime('%Y-%m-%d %H:%M')} by "
             f"`python benchmarks/course_timing.py{' ' + flags if flags else ''}`.", '',
             '| notebook | seconds | ran | slowest cells (seconds, cell number, first line) |', '|---|---:|---|---|']
    cell = lambda t: t.replace('|', '\\|').replace('`', "'")
    lines += [f"| {n} | {s:.0f} | {'yes' if ok else 'FAILED'} | {'<br>'.join(cell(x) for x in slow)} |" for n, s, ok, slow in rows]
    lines += [f"| **total** | **{total:.0f}** ({total/60:.1f} min) | | |"]
    Path(a.out).write_text('\n'.join(lines) + '\n')
    print(f"total {total:.0f} s ({total/60:.1f} min) -> {a.out}")
    if a.fresh_store and not a.fast and not a.only: update_course_map(ROOT/'nbs'/'index.ipynb', rows, total)
    return 0 if all(ok for _, _, ok, _ in rows) else 1

if __name__ == '__main__': sys.exit(main())
