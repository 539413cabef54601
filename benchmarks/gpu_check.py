"""GPU check: one epoch of the CREMA-D configuration (two ResNet-18s, concat fusion) on a CREMA-D-sized fabricated tree,
for each method and arithmetic asked (fp32 vs bf16 mixed precision, `--precision` of the CLI).

The tree is laid out exactly as the CREMAD loader documents (real OGM-GE clip names, FSDD recordings turned into
OGM-GE's 257 x 188 log-STFT spectrograms, MNIST digits as 224 x 224 frames), and training goes through the same
`balance_nb.experiment.run` as the CLI. It reports samples per second, the time per step and the peak GPU memory.

    python benchmarks/gpu_check.py                 # device: cuda when available, else cpu
    python benchmarks/gpu_check.py --cpu --small   # a quick CPU run (64 x 64 frames, 2 clips per emotion)
    python benchmarks/gpu_check.py --trainers baseline,OGM,MMPareto --precisions 32,bf16 --md benchmarks/gpu_check.md
    torchrun --nproc_per_node 1 benchmarks/gpu_check.py --trainers baseline,OGM,MMPareto   # the same through DDP
                                                    # (NCCL on a GPU, gloo with --cpu); N processes: add --root DIR

Under torchrun every run is data-parallel (notebook 33_distributed): --batch-size is the global batch, samples/s
counts the whole batch, and only process 0 prints and writes the table.
"""
import argparse, json, sys, tempfile, time
from pathlib import Path
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from balance_nb.benchmark_data import AudioSettings, CREMAD
from balance_nb.testing import fabricate_tree
from balance_nb.experiment import run, RunConfig
from balance_nb.distributed import torchrun_env


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--cpu', action='store_true', help='force the CPU even when a GPU is available')
    p.add_argument('--small', action='store_true', help='64 x 64 frames and 2 clips per emotion (fast on a CPU)')
    p.add_argument('--clips-per-emotion', type=int, default=None, help='training clips per emotion (default 16)')
    p.add_argument('--image-size', type=int, default=None, help='frame size (default 224, as BalanceMM)')
    p.add_argument('--batch-size', type=int, default=32, help='BalanceMM default 32')
    p.add_argument('--workers', type=int, default=0, help='loader worker processes')
    p.add_argument('--root', default=None, help='reuse / write the fabricated tree here (default: a temp folder)')
    p.add_argument('--trainers', default='baseline', help='comma-separated methods to time (e.g. baseline,OGM,MMPareto)')
    p.add_argument('--precisions', default='32', help='comma-separated: 32, bf16, fp16')
    p.add_argument('--md', default=None, help='also write the throughput table (markdown) to this file')
    a = p.parse_args(argv)
    device = 'cpu' if a.cpu or not torch.cuda.is_available() else 'cuda'
    env = torchrun_env() or {'world_size': 1, 'rank': 0}       # torchrun sets them
    world, rank = env['world_size'], env['rank']
    say = print if rank == 0 else (lambda *a, **k: None)
    n = a.clips_per_emotion or (2 if a.small else 16)
    size = a.image_size or (64 if a.small else 224)
    root = Path(a.root or tempfile.mkdtemp(prefix='cremad_check_'))
    t0 = time.perf_counter()
    if not (root/'train.csv').exists():
        fabricate_tree('CREMAD', root, n_train=n, n_test=max(1, n // 8), frames=3, size=size, audio=AudioSettings())
    t_fab = time.perf_counter() - t0
    ds = CREMAD('train', root=root, image_size=size)
    say(f"device {device} ({torch.cuda.get_device_name() if device == 'cuda' else 'cpu'}); {ds}; fabricated in {t_fab:.1f} s; "
        f"{world} process(es){' (torchrun: DistributedDataParallel)' if torchrun_env() else ''}")
    rows = []
    for method in a.trainers.split(','):
        for precision in a.precisions.split(','):
            if device == 'cuda': torch.cuda.reset_peak_memory_stats()
            r = run(RunConfig(method=method, dataset='CREMAD', epochs=1, batch_size=a.batch_size, device=device, out=None,
                              precision=precision, hparams={'modulation_starts': 0} if method == 'OGM' else {},
                              dataset_args={'root': str(root), 'image_size': size, 'num_workers': a.workers}), progress=False)
            m = r.metrics
            report = {'method': method, 'precision': precision, 'device': device, 'train_samples': len(ds),
                      'world_size': world,
                      'input_shapes': {k: list(v) for k, v in ds.input_shapes.items()}, 'batch_size': a.batch_size,
                      'steps': len(r.history.steps), 'seconds_per_step': m['seconds_per_step'],
                      'samples_per_second': len(ds) / len(r.history.steps) / m['seconds_per_step'], 'train_seconds': m['train_seconds'],
                      'test_acc': m['acc'], 'peak_gpu_mib': torch.cuda.max_memory_allocated() / 2**20 if device == 'cuda' else None}
            say(json.dumps(report, indent=1))
            assert report['steps'] >= 1 and all(torch.isfinite(torch.tensor(r.history.steps['loss'].values)))
            rows.append(report)
    table = ['| method | precision | processes | samples/s | ms/step | peak GPU MiB |', '|---|---|---:|---:|---:|---:|']
    for r in rows:
        peak = '–' if r['peak_gpu_mib'] is None else f"{r['peak_gpu_mib']:.0f}"
        table.append(f"| {r['method']} | {r['precision']} | {r['world_size']} | {r['samples_per_second']:.1f} | {1000 * r['seconds_per_step']:.0f} | {peak} |")
    say('\n'.join(table))
    if a.md and rank == 0:
        head = (f"# GPU check: two ResNet-18s on a fabricated CREMA-D tree\n\nDevice: {device} "
                f"({torch.cuda.get_device_name() if device == 'cuda' else 'CPU, ' + str(torch.get_num_threads()) + ' threads'}), "
                f"torch {torch.__version__}; {len(ds)} training clips, frames {size} px, batch {a.batch_size}, one epoch per row; "
                f"measured {time.strftime('%Y-%m-%d %H:%M')} by `python benchmarks/gpu_check.py {' '.join(argv or sys.argv[1:])}`.\n\n")
        Path(a.md).write_text(head + '\n'.join(table) + '\n')
    return 0


if __name__ == '__main__': sys.exit(main())
