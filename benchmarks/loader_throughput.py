"""Loader throughput: samples per second of reading a CREMA-D-shaped tree with 0 and N loader worker processes.

The tree is fabricated in the real on-disk layout the CREMAD loader reads after `prepare` (real OGM-GE clip names;
per clip a `.pt` log-STFT spectrogram of 257 x 188, OGM-GE's settings, and a folder of JPEG frames, 256 pixels a
side as `prepare`'s default --frame-size writes them), from FSDD recordings and MNIST digits. Each configuration
reads the training split for a few epochs through `make_loader` exactly as training does (shuffled, training
transforms: 2 frames per clip, random crop to 224, flip, normalisation), with nothing else to do, so the figure is
an upper bound on how fast the loader can feed a model. Epoch 1 includes starting the workers; the later epochs
reuse them (persistent workers).

    python benchmarks/loader_throughput.py                    # 0 and default_num_workers() workers; writes loader_throughput.md
    python benchmarks/loader_throughput.py --workers 0,1,2,4 --clips-per-emotion 60
"""
import argparse, os, platform, sys, tempfile, time
from pathlib import Path
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from balance_nb.benchmark_data import AudioSettings, CREMAD, default_num_workers, usable_cores
from balance_nb.data import make_loader
from balance_nb.testing import fabricate_tree

HERE = Path(__file__).resolve().parent


def cpu_model() -> str:
    "The CPU's model name (Linux /proc/cpuinfo), else what `platform` says."
    try:
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('model name'): return line.split(':', 1)[1].strip()
    except OSError: pass
    return platform.processor() or platform.machine()


def epoch_rates(ds, workers: int, batch_size: int, epochs: int, seed: int = 0) -> list[float]:
    "Samples per second of each of `epochs` shuffled epochs over `ds` with `workers` loader processes."
    dl, rates = make_loader(ds, batch_size, shuffle=True, seed=seed, num_workers=workers), []
    try:
        for e in range(epochs):
            dl.set_epoch(e)
            t0, n = time.perf_counter(), 0
            for b in dl: n += len(b['label'])
            rates.append(n / (time.perf_counter() - t0))
    finally: dl.close()
    return rates


def parse_workers(text: str) -> list[int]:
    "'0,N' → [0, default_num_workers()]; '0,2,4' → [0, 2, 4]."
    out = []
    for part in text.split(','):
        part = part.strip()
        k = default_num_workers() if part.upper() == 'N' else int(part)
        if k < 0: raise SystemExit(f"--workers {text!r}: worker counts must be >= 0.")
        if k not in out: out.append(k)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--workers', default='0,N', help="comma-separated worker counts; N = default_num_workers() (default '0,N')")
    p.add_argument('--clips-per-emotion', type=int, default=40, help='training clips per emotion (default 40: 240 clips)')
    p.add_argument('--frames', type=int, default=4, help='JPEG frames per clip on disk (default 4)')
    p.add_argument('--frame-size', type=int, default=256, help='side of the frames on disk (default 256, prepare\'s)')
    p.add_argument('--image-size', type=int, default=224, help='side the loader crops to (default 224, BalanceMM\'s)')
    p.add_argument('--batch-size', type=int, default=32)
    p.add_argument('--epochs', type=int, default=3, help='epochs per configuration (default 3)')
    p.add_argument('--root', default=None, help='reuse / write the fabricated tree here (default: a temporary folder)')
    p.add_argument('--out', default=str(HERE/'loader_throughput.md'), help='markdown file to write ("" for none)')
    a = p.parse_args(argv)
    workers = parse_workers(a.workers)
    root = Path(a.root or tempfile.mkdtemp(prefix='cremad_loader_'))
    t0 = time.perf_counter()
    if not (root/'train.csv').exists():
        fabricate_tree('CREMAD', root, n_train=a.clips_per_emotion, n_test=1, frames=a.frames, size=a.frame_size,
                       audio=AudioSettings())
    t_fab = time.perf_counter() - t0
    ds = CREMAD('train', root=root, image_size=a.image_size, num_workers=0)
    ds[0]                                            # untimed: imports torchvision, which the first sample needs
    load_before = os.getloadavg()
    rows = [(w, epoch_rates(ds, w, a.batch_size, a.epochs)) for w in workers]
    load_after = os.getloadavg()

    head = '| workers | ' + ' | '.join(f'epoch {e + 1}' for e in range(a.epochs)) + ' | later epochs, mean |'
    lines = [head, '|' + '---:|' * (a.epochs + 2)]
    for w, r in rows:
        later = r[1:] or r
        lines.append(f'| {w} | ' + ' | '.join(f'{x:.0f}' for x in r) + f' | {sum(later) / len(later):.0f} |')
    table = '\n'.join(lines)
    machine = (f"{cpu_model()}; {usable_cores()} usable cores (os.cpu_count() {os.cpu_count()}); "
               f"Python {platform.python_version()}, torch {torch.__version__}, {platform.system()} {platform.release()}")
    text = f"""# Loader throughput: a CREMA-D-shaped tree, 0 and N worker processes

Samples per second of the CREMAD loader reading its training split ({len(ds)} clips: a 257 x 188 `.pt` spectrogram
and {a.frames} JPEG frames of {a.frame_size} px each, 2 frames drawn per clip, random crop to {a.image_size},
flip, normalisation), batch {a.batch_size}, shuffled, nothing else running in the loop. Epoch 1 includes starting
the workers; later epochs reuse them (persistent workers). Made by `python benchmarks/loader_throughput.py`
(tree fabricated in {t_fab:.0f} s).

{table}

**Machine:** {machine}. `default_num_workers()` here: {default_num_workers()}.

**Reading the table:** the loop only loads, it trains nothing. With 0 workers the main process decodes; with N
workers it waits while they decode, so the gain is bounded by the cores the workers find free, and the copy of
each batch from a worker to the main process costs a little. During training the main process is busy with the
model, and the workers' decoding can overlap with it; this script does not measure that overlap (it would need a
model step per batch), so on few, shared cores read it as the cost of the workers, not their benefit.

**Load:** this machine's CPUs are shared with other jobs (other agents were working on it during the run), so
the figures are noisy and lower than on an idle machine. Load average (1, 5, 15 min) before the timing:
{', '.join(f'{x:.2f}' for x in load_before)}; after: {', '.join(f'{x:.2f}' for x in load_after)}.
"""
    print(text)
    if a.out: Path(a.out).write_text(text); print(f"written to {a.out}")
    return rows


if __name__ == '__main__':
    main()
