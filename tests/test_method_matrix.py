"""Every registered balancing method (and the baseline) × four kinds of input, one short training step each, in this
process through `run(...)` (the path of the CLI, sweeps and notebooks):

- 2-modality AV-Digits (audio spectrogram + image),
- 3-view MFeat (`views='pix,fou,mor'`),
- a fabricated CREMA-D tree with 2 frames per clip (ResNet-18 on frame stacks),
- a fabricated CMU-MOSEI tree (audio + visual + text sequences).

Expectations follow the BalanceBenchmark paper's results table (`../shared/reference/paper-results.md`): it reports
CMU-MOSEI (three modalities) numbers for every method except Greedy, and Greedy numbers only on audio-visual
frame-stack datasets. So every method must train on every case, except Greedy on three modalities, which must refuse
with an error that names the reason (it couples exactly two modalities)."""
from pathlib import Path
import gc, math
import pytest
import torch
from balance_nb.core import DATASETS, METHODS
from balance_nb.data import AVDigits, MFeat, TensorMultimodalDataset
from balance_nb.learner import MethodConfigError
from balance_nb.experiment import run, load_methods
import balance_nb.benchmark_data as bd

load_methods()
# the paper's 17 methods (Modality-valuation is registered as `ModalityValuation`, alias `Sample`) and the baseline
PAPER_METHODS = ('ModalityValuation', 'MLA', 'OPM', 'Greedy', 'AMCo', 'MMCosine', 'UMT', 'MBSD', 'CML', 'MMPareto', 'GBlending',
                 'LFM', 'OGM', 'AGM', 'PMR', 'ReLearning', 'ReconBoost')
TRAINERS = ['baseline', *PAPER_METHODS]

def _head(ds, n):
    "The first `n` samples of a tensor dataset, as a dataset of the same modalities and classes."
    return TensorMultimodalDataset({m: ds.tensors[m][:n] for m in ds.modalities}, ds.labels[:n], ds.num_classes,
                                   default_encoders=ds.default_encoders)

@DATASETS.register('MatrixAVDigits', modalities=('audio', 'visual'), num_classes=10, epochs=1)
def MatrixAVDigits(split: str = 'train'): return _head(AVDigits(split), 20)

@DATASETS.register('MatrixMFeat3', modalities=('pix', 'fou', 'mor'), num_classes=10, epochs=1)
def MatrixMFeat3(split: str = 'train'): return _head(MFeat(split, views='pix,fou,mor'), 20)

@pytest.fixture(scope='module')
def trees(tmp_path_factory):
    base = tmp_path_factory.mktemp('matrix')
    return {'CREMAD': bd.fabricate_tree('CREMAD', base/'cremad', n_train=2, n_test=1, size=24),
            'CMUMOSEI': bd.fabricate_tree('CMUMOSEI', base/'mosei', n_train=2, n_test=1)}

@pytest.fixture(autouse=True)
def free_models():
    "A Learner and its callbacks reference each other; collect each run's models (ResNet-18s) before the next."
    yield
    gc.collect()

CASES = {   # case → (dataset, dataset_args given the trees, number of modalities)
    'AVDigits': ('MatrixAVDigits', lambda t: {}, 2),
    'MFeat-3views': ('MatrixMFeat3', lambda t: {}, 3),
    'CREMAD-2frames': ('CREMAD', lambda t: {'root': str(t['CREMAD']), 'image_size': 32}, 2),
    'CMUMOSEI': ('CMUMOSEI', lambda t: {'root': str(t['CMUMOSEI'])}, 3),
}
# where the paper's results table has no number: Greedy on three modalities (its MOSEI cell is "–")
REFUSES = {('Greedy', 'MFeat-3views'): 'at most 2 modalities', ('Greedy', 'CMUMOSEI'): 'at most 2 modalities'}

def test_every_method_is_registered():
    assert len(set(PAPER_METHODS)) == 17 and all(METHODS.resolve(t) == t for t in TRAINERS)

@pytest.mark.parametrize('case', list(CASES))
@pytest.mark.parametrize('method', TRAINERS)
def test_trains_or_refuses(trees, method, case):
    dataset, args, n_mod = CASES[case]
    cfg = dict(method=method, dataset=dataset, dataset_args=args(trees), epochs=1, batch_size=32, seed=0,
               out=None, progress=False, live=False)
    if (method, case) in REFUSES:
        with pytest.raises(MethodConfigError, match=REFUSES[method, case]): run(**cfg)
        return
    r = run(**cfg)
    mods = DATASETS.meta(dataset)['modalities']
    assert len(mods) == n_mod
    steps = r.history.steps
    assert len(steps) >= 1 and steps['loss'].map(math.isfinite).all(), steps['loss'].tolist()
    assert 0 <= r.metrics['acc'] <= 1
    assert {f'shapley_{m}' for m in mods} <= set(r.metrics)          # evaluated with every modality
    # a finished Learner is not freed by gc here (some reference the collector cannot follow keeps the cycle alive),
    # and 72 runs would then hold ~17 GB: drop its model, optimizer and callbacks explicitly
    if r.learner is not None: r.learner.__dict__.clear()
    del r

# ---- the column rule: every column a method logs is `<log_prefix>_<quantity>[_<modality>]` (nbs/glossary) ----
RULE_CASES = {t: ({'modulation_starts': 0} if 'modulation_starts' in METHODS[t].hyperparameters() else {}, 2)
              for t in (*PAPER_METHODS, 'UniAux')}
RULE_CASES['ReLearning'] = ({'reinit_epoch': 1}, 3)        # re-learns after epoch 1 only when another epoch follows

@pytest.fixture(scope='module')
def standard_columns():
    "What a baseline run writes: the standard columns every run has."
    r = run(method='baseline', dataset='MatrixAVDigits', epochs=2, batch_size=8, seed=0, out=None, progress=False, live=False)
    return set(r.history.steps.columns) | set(r.history.epochs.columns)

@pytest.mark.parametrize('method', list(RULE_CASES))
def test_logged_columns_follow_the_rule(standard_columns, method):
    cls = METHODS[method]
    prefix = cls.log_prefix
    assert prefix == prefix.lower() and prefix.isidentifier(), prefix
    others = {METHODS[t].log_prefix for t in RULE_CASES if METHODS[t] is not cls}
    assert prefix not in others                              # one prefix, one method
    hp, epochs = RULE_CASES[method]
    r = run(method=method, dataset='MatrixAVDigits', hparams=hp, epochs=epochs, batch_size=8, seed=0, out=None,
            progress=False, live=False)
    added = (set(r.history.steps.columns) | set(r.history.epochs.columns)) - standard_columns
    assert added, f'{method} logged nothing of its own'
    assert all(c.startswith(prefix + '_') for c in added), sorted(c for c in added if not c.startswith(prefix + '_'))
    if r.learner is not None: r.learner.__dict__.clear()
