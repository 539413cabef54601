"""Draw the README's "imbalance being fixed" figure from the course runs (baseline vs `ModalityValuation`).

    python benchmarks/readme_figure.py          # writes docs/images/imbalance_fixed_avdigits.png

The runs come from `course_run` (AV-Digits, seed 0, 4 epochs): answered from the course store when it holds them,
trained otherwise (about a minute on two cores).
"""
import os, sys
from pathlib import Path
os.environ.setdefault('MPLBACKEND', 'Agg')
from balance_nb.experiment import course_run
from balance_nb.analysis import compare_runs

ROOT = Path(__file__).resolve().parents[1]

def main():
    runs = {'baseline': course_run('baseline'), 'ModalityValuation': course_run('ModalityValuation')}
    fig = compare_runs(runs, title='AV-Digits, 4 epochs, seed 0: the plain baseline (top) and a balancing method (bottom)')
    out = ROOT/'docs'/'images'/'imbalance_fixed_avdigits.png'
    fig.savefig(out, dpi=80)
    for n, r in runs.items():
        m = r.metrics
        print(f"{n:28s} acc {m['acc']:.3f}  visual in-model {m['acc_visual']:.3f}  φ audio {m['shapley_audio']:.3f}  "
              f"φ visual {m['shapley_visual']:.3f}  imbalance {m['imbalance']:.3f}")
    print('->', out)
    return 0

if __name__ == '__main__': sys.exit(main())
