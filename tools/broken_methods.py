"""Break each method on purpose, one way at a time, and check that its notebook's tests fail.

    python tools/broken_methods.py                      # every broken copy, in the package (tests run with --package)
    python tools/broken_methods.py --where notebook     # ... in a copy of the notebook instead
    python tools/broken_methods.py opm-never-drops      # one of them

Each entry names one change that must not go unnoticed — a method that no longer does what its formula says (OPM
never drops, AMCo without its unimodal losses, MLA without its projection, Greedy with its parameter groups swapped,
...). `--where package` applies it to a copy of `balance_nb/` and runs the method's notebook with
`tools/run_nb.py --package` on that copy (PYTHONPATH); `--where notebook` applies it to a copy of the notebook's
`#| export` cell beside it. Prints KILLED (a test failed, with the failing line) or SURVIVED (no test noticed) per
entry and exits 1 if any survived. Not part of CI (one notebook run per entry, a few minutes in all).
"""
import argparse, json, os, shutil, subprocess, sys, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODULE = {'10_data_methods': 'data', '11_feedforward_methods': 'feedforward', '12_objective_methods': 'objective',
          '13_optimization_methods': 'optimization', '40_your_own_method': 'course'}
# name: (notebook, [(exact text of the exported code, what replaces it), ...])
BREAKS = {
 'modval-no-resampling': ('10_data_methods', [("ds = ResampledDataset(self.orig_dl.dataset, idx, zero)", "ds = ResampledDataset(self.orig_dl.dataset, [], [])")]),
 'modval-copies-not-zeroed': ('10_data_methods', [("ds = ResampledDataset(self.orig_dl.dataset, idx, zero)", "ds = ResampledDataset(self.orig_dl.dataset, idx, [()] * len(idx))")]),
 'opm-never-drops': ('11_feedforward_methods', [("if not execute or not any(q.values()): return", "return")]),
 'mla-no-projection': ('11_feedforward_methods', [("head.weight.grad = project_grad(head.weight.grad, self.P, self.projection)", "pass")]),
 'amco-no-unimodal-loss': ('11_feedforward_methods', [("learn.loss = learn.loss + sum(learn.loss_func(z, y) for z in self.fusion.masked(learn.out.unimodal).values())", "learn.loss = learn.loss")]),
 'amco-dependence-unmasked': ('11_feedforward_methods', [("amco_dependence(self.fusion.masked(self.learn.out.unimodal))", "amco_dependence(self.learn.out.unimodal)")]),
 'greedy-groups-swapped': ('11_feedforward_methods', [("self.m_bypass[i] += _sq_ratio(model.bypass_params(m))", "self.m_bypass[i] += _sq_ratio(model.MAIN(m))"),
                                                      ("self.m_main[i] += _sq_ratio(model.modality_params(m))", "self.m_main[i] += _sq_ratio(model.bypass_params(m))"),
                                                      ("model.MAIN(m)", "model.modality_params(m)")]),
 'mmcosine-never-cosine': ('12_objective_methods', [("def before_train(self): self.learn.model.fusion.cosine = self.active", "def before_train(self): self.learn.model.fusion.cosine = False")]),
 'umt-no-distillation': ('12_objective_methods', [("learn.loss = learn.loss + self.scaling * sum(d.values())", "learn.loss = learn.loss")]),
 'mbsd-no-kl': ('12_objective_methods', [("for z in uni) + rs + kl", "for z in uni) + rs")]),
 'mbsd-no-rs': ('12_objective_methods', [("for z in uni) + rs + kl", "for z in uni) + kl")]),
 'cml-no-hinge': ('12_objective_methods', [("removals, learn.batch['label'], self.lam,", "removals, learn.batch['label'], 0.0,")]),
 'mmpareto-plain-sum': ('12_objective_methods', [("if p.grad is not None: p.grad = pareto_grad(a, b, w, self.alpha)", "pass")]),
 'gblending-equal-weights': ('12_objective_methods', [("learn.loss = w['fused'] * learn.loss + sum(w[m] * learn.loss_func(z, y)", "learn.loss = learn.loss + sum(learn.loss_func(z, y)")]),
 'lfm-no-alignment': ('12_objective_methods', [("learn.loss = 2 * (self.alphas[0] * learn.loss + self.alphas[1] * align)", "learn.loss = 2 * (self.alphas[0] * learn.loss)")]),
 'ogm-no-scaling': ('13_optimization_methods', [("new = g * k\n", "new = g\n")]),
 'ogmge-noise-of-scaled-gradient': ('13_optimization_methods', [("torch.randn_like(g) * ((g.std() if g.numel() > 1 else 0.) + 1e-8)\n                p.grad = new", "torch.randn_like(g) * ((new.std() if g.numel() > 1 else 0.) + 1e-8)\n                p.grad = new")]),
 'agm-no-encoder-scaling': ('13_optimization_methods', [("if p.grad is not None: p.grad.mul_(c)", "pass")]),
 'pmr-no-prototype-loss': ('13_optimization_methods', [("if beta: learn.loss = learn.loss + beta * F.cross_entropy(sims[a], y)", "if beta: pass")]),
 'pmr3-no-coefficient': ('13_optimization_methods', [("p.grad = g * k - torch.randn_like(g)", "p.grad = g - torch.randn_like(g)")]),
 'relearning-no-move': ('13_optimization_methods', [("move_towards(learn.model.modality_params(m), self.init[m], w)", "pass")]),
 'reconboost-ignores-the-others': ('13_optimization_methods', [("rest = learn.model.fusion.boost_rate.detach() * sum(", "rest = 0 * sum(")]),
 'uniaux-no-auxiliary-loss': ('40_your_own_method', [("learn.loss = learn.loss + self.lam * sum(w * F.cross_entropy(uni[m], y) for w, m in zip(weights, uni))", "learn.loss = learn.loss")]),
}

def apply(text: str, edits, name: str) -> str:
    for old, new in edits:
        if text.count(old) != 1: raise SystemExit(f"{name}: expected the text {old!r} once, found it {text.count(old)} times (the code changed: update BREAKS)")
        text = text.replace(old, new)
    return text

def run(name: str, where: str) -> tuple[bool, str]:
    nb, edits = BREAKS[name]
    env = {**os.environ, 'MPLBACKEND': 'Agg', 'IN_TEST': '1', 'OMP_NUM_THREADS': '1'}
    with tempfile.TemporaryDirectory() as tmp:
        if where == 'package':
            shutil.copytree(ROOT/'balance_nb', Path(tmp)/'balance_nb', ignore=shutil.ignore_patterns('__pycache__'))
            src = Path(tmp)/'balance_nb'/'methods'/f'{MODULE[nb]}.py'
            src.write_text(apply(src.read_text(), edits, name))
            env |= {'PYTHONPATH': tmp, 'BALANCE_NB_DATA': str(ROOT/'data_samples')}
            cmd, path = [str(ROOT/'tools'/'run_nb.py'), str(ROOT/'nbs'/f'{nb}.ipynb'), '--package'], None
        else:
            book = json.loads((ROOT/'nbs'/f'{nb}.ipynb').read_text())
            cells = [c for c in book['cells'] if c['cell_type'] == 'code' and ''.join(c['source']).startswith('#| export')]
            whole = apply('\x00'.join(''.join(c['source']) for c in cells), edits, name).split('\x00')
            for c, s in zip(cells, whole): c['source'] = s
            path = ROOT/'nbs'/f'_broken_{name}.ipynb'          # beside the original: the same working folder
            path.write_text(json.dumps(book))
            cmd = [str(ROOT/'tools'/'run_nb.py'), str(path)]
        try: done = subprocess.run([sys.executable, *cmd, '--skip', 'notest,slow'], env=env, capture_output=True, text=True, cwd=ROOT)
        finally:
            if path: path.unlink(missing_ok=True)
    lines = [l.strip() for l in (done.stdout + done.stderr).splitlines()]
    cell = [i for i, l in enumerate(lines) if l.startswith('File "<ipython-input')]     # the notebook cell's failing line
    where_failed = lines[cell[-1] + 1] if cell and cell[-1] + 1 < len(lines) else next((l for l in reversed(lines) if 'Error' in l), '')
    return done.returncode != 0, where_failed

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('names', nargs='*', help=f"entries to run (default: all {len(BREAKS)})")
    p.add_argument('--where', choices=('package', 'notebook'), default='package')
    a = p.parse_args()
    bad = [n for n in a.names if n not in BREAKS]
    if bad: p.error(f"unknown entries {bad}; valid: {', '.join(BREAKS)}")
    survived = []
    for name in a.names or BREAKS:
        t0 = time.perf_counter()
        killed, line = run(name, a.where)
        print(f"{name:32s} {'KILLED  ' if killed else 'SURVIVED'} {time.perf_counter() - t0:5.1f} s  {line[:110]}", flush=True)
        if not killed: survived.append(name)
    print(f"{len(a.names or BREAKS) - len(survived)} of {len(a.names or BREAKS)} broken copies fail a test ({a.where})"
          + (f"; survived: {', '.join(survived)}" if survived else ''))
    return 1 if survived else 0

if __name__ == '__main__': sys.exit(main())
