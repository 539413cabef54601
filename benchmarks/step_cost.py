"""Seconds per training step of every method relative to the baseline, measured in one process.

    python benchmarks/step_cost.py                    # all methods, 3 rounds, writes benchmarks/step_cost.md
    python benchmarks/step_cost.py --only OGM PMR     # a few

Why a separate script: the sweep's Time/step column comes from runs that ran hours apart, on a shared machine, so
load changes between them swamp a 10-25% difference. Here every round trains the baseline and each method for the
same short budget (same model, data and batch size) one after another, and the ratio is taken within the round;
the median over rounds is reported. The step time is the Learner's own `step_seconds` (forward, loss, backward,
optimizer step and every callback hook inside the batch); per-epoch work (validation, a method's per-epoch
estimates, temporary models) is in the second ratio, whole training time per epoch. Every method's modulation
window is opened from the first step. "Single forward" = one forward pass of the model per step.
"""
import argparse, os, statistics, sys, time
from pathlib import Path
import torch
from balance_nb.experiment import run, methods_by_category, load_methods

ROOT = Path(__file__).resolve().parents[1]
WARMUP_STEPS = 5

def measure(method, epochs, seed):
    # methods with a modulation window start it at epoch 2 in short runs: open it at once, so the steps timed are
    # the steps the method changes
    hp = {'modulation_starts': 0} if 'modulation_starts' in load_methods()[method].hyperparameters() else {}
    r = run(method=method, dataset='AVDigits', epochs=epochs, seed=seed, hparams=hp, out=None, store=None,
            progress=False, live=False)
    st = r.history.steps
    steps = st.iloc[WARMUP_STEPS:]                                # the first steps warm up allocators and caches
    return {'step': float(steps['step_seconds'].median()), 'fwd': float(st['forward_passes'].mean()),
            'bwd': float(st['backward_passes'].mean()), 'epoch': r.metrics['train_seconds'] / epochs}

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--only', nargs='*', help='trainers to measure (default: every registered method)')
    p.add_argument('--rounds', type=int, default=3)
    p.add_argument('--epochs', type=int, default=1)
    p.add_argument('--threads', type=int, default=2, help='torch threads (default 2, a laptop)')
    p.add_argument('--out', default=str(ROOT/'benchmarks'/'step_cost.md'))
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    trainers = a.only or [t for cat, ts in methods_by_category().items() if cat != 'baseline' for t in ts]
    pairs = {t: [] for t in trainers}      # (baseline, method) measured one right after the other
    for rnd in range(a.rounds):
        for t in trainers:   # the baseline right before each method: the ratio compares neighbours in time
            b, m = measure('baseline', a.epochs, rnd), measure(t, a.epochs, rnd)
            pairs[t].append((b, m))
            print(f"round {rnd} {t:12s} {m['step']*1000:7.1f} ms/step  baseline {b['step']*1000:7.1f}  "
                  f"ratio {m['step'] / b['step']:.2f}", flush=True)
    med = statistics.median
    lines = ['# Seconds per training step relative to the baseline (AV-Digits)', '',
             f"Measured {time.strftime('%Y-%m-%d %H:%M')} by `python benchmarks/step_cost.py` on {os.cpu_count()} CPU cores, "
             f"{a.threads} torch threads: {a.rounds} rounds x {a.epochs} epochs per run, each method right after a baseline "
             "run; ratio = median over rounds of (method ms/step / baseline ms/step), ms/step = median over a run's "
             f"steps after the first {WARMUP_STEPS} (warm-up).", '',
             '| method | ms/step | baseline ms/step | step ratio | epoch ratio | forward/step | backward/step | single forward | step ≤ 1.25x |',
             '|---|---:|---:|---:|---:|---:|---:|---|---|']
    for t in trainers:
        ms, bs = (med([pair[i]['step'] for pair in pairs[t]]) * 1000 for i in (1, 0))
        ratio, epoch_ratio = (med([m[k] / b[k] for b, m in pairs[t]]) for k in ('step', 'epoch'))
        fwd, bwd = pairs[t][0][1]['fwd'], pairs[t][0][1]['bwd']
        single = fwd <= 1.0 + 1e-9
        lines.append(f"| {t} | {ms:.1f} | {bs:.1f} | {ratio:.2f} | {epoch_ratio:.2f} | {fwd:.1f} | {bwd:.1f} | {'yes' if single else 'no'} | "
                     f"{('yes' if ratio <= 1.25 else '**no**') if single else '–'} |")
    Path(a.out).write_text('\n'.join(lines) + '\n')
    print('\n'.join(lines))
    return 0

if __name__ == '__main__': sys.exit(main())
