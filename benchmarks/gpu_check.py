"""GPU check: one epoch of the CREMA-D configuration (two ResNet-18s, concat fusion) on a CREMA-D-sized fabricated tree.

The tree is laid out exactly as the CREMAD loader documents (real OGM-GE clip names, FSDD recordings turned into
OGM-GE's 257 x 188 log-STFT spectrograms, MNIST digits as 224 x 224 frames), and training goes through the same
`balance_nb.experiment.run` as the CLI. It reports the time per step and the peak GPU memory.

    python benchmarks/gpu_check.py                 # device: cuda when available, else cpu
    python benchmarks/gpu_check.py --cpu --small   # a quick CPU run (64 x 64 frames, 2 clips per emotion)
"""
import argparse, json, sys, tempfile, time
from pathlib import Path
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from balance_nb.benchmark_data import AudioSettings, CREMAD
from balance_nb.testing import fabricate_tree
from balance_nb.experiment import run, RunConfig


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--cpu', action='store_true', help='force the CPU even when a GPU is available')
    p.add_argument('--small', action='store_true', help='64 x 64 frames and 2 clips per emotion (fast on a CPU)')
    p.add_argument('--clips-per-emotion', type=int, default=None, help='training clips per emotion (default 16)')
    p.add_argument('--image-size', type=int, default=None, help='frame size (default 224, as BalanceMM)')
    p.add_argument('--batch-size', type=int, default=32, help='BalanceMM default 32')
    p.add_argument('--workers', type=int, default=0, help='loader worker processes')
    p.add_argument('--root', default=None, help='reuse / write the fabricated tree here (default: a temp folder)')
    a = p.parse_args(argv)
    device = 'cpu' if a.cpu or not torch.cuda.is_available() else 'cuda'
    n = a.clips_per_emotion or (2 if a.small else 16)
    size = a.image_size or (64 if a.small else 224)
    root = Path(a.root or tempfile.mkdtemp(prefix='cremad_check_'))
    t0 = time.perf_counter()
    if not (root/'train.csv').exists():
        fabricate_tree('CREMAD', root, n_train=n, n_test=max(1, n // 8), frames=3, size=size, audio=AudioSettings())
    t_fab = time.perf_counter() - t0
    ds = CREMAD('train', root=root, image_size=size)
    print(f"device {device} ({torch.cuda.get_device_name() if device == 'cuda' else 'cpu'}); {ds}; fabricated in {t_fab:.1f} s")
    if device == 'cuda': torch.cuda.reset_peak_memory_stats()
    r = run(RunConfig(trainer='baseline', dataset='CREMAD', epochs=1, batch_size=a.batch_size, device=device, out=None,
                      dataset_args={'root': str(root), 'image_size': size, 'num_workers': a.workers}), progress=False)
    m = r.metrics
    report = {'device': device, 'train_samples': len(ds), 'input_shapes': {k: list(v) for k, v in ds.input_shapes.items()},
              'batch_size': a.batch_size, 'steps': len(r.history.steps), 'seconds_per_step': m['seconds_per_step'],
              'train_seconds': m['train_seconds'], 'test_acc': m['acc'],
              'peak_gpu_mib': torch.cuda.max_memory_allocated() / 2**20 if device == 'cuda' else None}
    print(json.dumps(report, indent=1))
    assert report['steps'] >= 1 and all(torch.isfinite(torch.tensor(r.history.steps['loss'].values)))
    return 0


if __name__ == '__main__': sys.exit(main())
