"""The seven benchmark loaders on fabricated trees in their exact layouts (real FSDD audio, real MNIST images),
real encoders for one training step, `prepare cremad` with ffmpeg, and the CLI on a fabricated tree."""
import contextlib, io, json, os, shutil, subprocess, sys, warnings
from pathlib import Path
import numpy as np
import pytest
import torch
from balance_nb.core import DATASETS, set_seed
from balance_nb.data import MissingDataError, make_loader, data_root
from balance_nb.models import build_model
from balance_nb.learner import Learner
import balance_nb.benchmark_data as bd                       # the shared machinery and the audio-visual loaders
import balance_nb.datasets.benchmark_video_text as vt         # UCF-101, Food-101, CMU-MOSEI
import balance_nb.text_encoders as te
import balance_nb.prepare as prep
from balance_nb.testing import fabricate_tree, fabricate_raw_cremad, write_tiny_bert

ROOT = Path(__file__).resolve().parents[1]
SEVEN = ('CREMAD', 'KineticsSounds', 'Balance', 'VGGSound', 'UCF101', 'FOOD101', 'CMUMOSEI')
N_TRAIN, N_TEST = 3, 1
# classes the fabricated trees use (the loaders' num_classes come from the dataset definition or its annotation)
FAB_CLASSES = {'CREMAD': 6, 'KineticsSounds': 4, 'Balance': 4, 'VGGSound': 3, 'UCF101': 3, 'FOOD101': 3, 'CMUMOSEI': 2}
NUM_CLASSES = {'CREMAD': 6, 'KineticsSounds': 31, 'Balance': 30, 'VGGSound': 3, 'UCF101': 3, 'FOOD101': 3, 'CMUMOSEI': 2}
IMG = {'image_size': 32}

def knobs(name): return {} if name == 'CMUMOSEI' else IMG

@pytest.fixture(scope='module')
def trees(tmp_path_factory):
    base = tmp_path_factory.mktemp('trees')
    return {n: fabricate_tree(n, base/n, n_train=N_TRAIN, n_test=N_TEST, size=24) for n in SEVEN}


# ---------------------------------------------------------------------------------------------------------------------
# the modules: split by concern, old imports still work

def test_modules_by_concern_and_old_imports():
    "Each loader lives in its module; `balance_nb.benchmark_data` still answers every name it used to export."
    assert {'CREMAD', 'KineticsSounds', 'VGGSound', 'Balance', 'BenchmarkDataset'} <= set(bd.__all__)
    assert {'UCF101', 'FOOD101', 'CMUMOSEI'} <= set(vt.__all__) and {'Tokenizer', 'BertEncoder'} <= set(te.__all__)
    assert {'prepare', 'prepare_main'} <= set(prep.__all__)
    fixtures = {'fabricate_tree', 'fabricate_raw_cremad', 'write_tiny_bert'}
    import balance_nb.testing as testing
    assert fixtures <= set(testing.__all__)
    for mod in (bd, vt, te, prep): assert not fixtures & set(mod.__all__), mod.__name__   # not in any loader's API
    from balance_nb.benchmark_data import fabricate_tree as ft, UCF101, Tokenizer, prepare_main, FOOD101, CMUMOSEI
    assert (ft, UCF101, Tokenizer, FOOD101, CMUMOSEI) == (fabricate_tree, vt.UCF101, te.Tokenizer, vt.FOOD101, vt.CMUMOSEI)
    assert prepare_main is prep.prepare_main
    with pytest.raises(AttributeError, match='no_such'): bd.no_such


def test_every_benchmark_dataset_is_registered_by_load_datasets():
    "In a fresh interpreter: `load_datasets()` finds the seven loaders (and the `prepare` subcommand resolves)."
    code = ("from balance_nb.experiment import load_datasets, SUBCOMMANDS; import importlib; "
            "names = load_datasets().names(); "
            "mod, fn = SUBCOMMANDS['prepare'].split(':'); assert callable(getattr(importlib.import_module(mod), fn)); "
            "print(','.join(n for n in names if n in %r))" % (SEVEN,))
    r = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True,
                       env={**os.environ, 'PYTHONPATH': str(ROOT)})
    assert r.returncode == 0, r.stderr[-2000:]
    assert sorted(r.stdout.strip().split(',')) == sorted(SEVEN)


@pytest.mark.parametrize('name', SEVEN)
def test_splits_sizes_and_registry(trees, name):
    splits = {s: DATASETS[name](s, root=trees[name], **knobs(name)) for s in ('train', 'valid', 'test')}
    k = FAB_CLASSES[name]
    if name == 'CMUMOSEI':      # the only dataset with its own validation part
        assert [len(splits[s]) for s in ('train', 'valid', 'test')] == [N_TRAIN * k, N_TEST * k, N_TEST * k]
    else:                       # validation carved from train, stratified: one clip per class here
        assert len(splits['train']) + len(splits['valid']) == N_TRAIN * k
        assert len(splits['valid']) == k and len(splits['test']) == N_TEST * k
        assert sorted(torch.tensor(splits['valid'].labels).tolist()) == list(range(k))
        assert not set(map(str, splits['train'].items)) & set(map(str, splits['valid'].items))
        assert not set(map(str, splits['valid'].items)) & set(map(str, splits['test'].items))
    meta = DATASETS.meta(name)
    assert meta['epochs'] == 30 and tuple(meta['modalities']) == splits['train'].modalities
    for s in splits.values():
        assert s.num_classes == NUM_CLASSES[name]
        assert set(s.default_encoders) == set(s.modalities)


@pytest.mark.parametrize('name', SEVEN)
def test_every_test_sample_once_and_one_training_step(trees, name):
    set_seed(0)
    train = DATASETS[name]('train', root=trees[name], **knobs(name))
    test = DATASETS[name]('test', root=trees[name], **knobs(name))
    seen = torch.cat([b['idx'] for b in make_loader(test, 4)])       # batch 4 does not divide every test size
    assert sorted(seen.tolist()) == list(range(len(test)))
    labels = torch.cat([b['label'] for b in make_loader(test, 4)])
    assert labels.bincount(minlength=FAB_CLASSES[name]).tolist() == [N_TEST] * FAB_CLASSES[name]
    model = build_model(train)
    expected = {'CMUMOSEI': 'SeqTransformerEncoder'}.get(name)
    for m, enc in model.encoders.items():
        want = expected or ('TextTransformerEncoder' if m == 'text' else 'ResNet18Encoder')
        assert type(enc).__name__ == want, (m, type(enc).__name__)
    before = {m: [p.detach().clone() for p in model.modality_params(m)] for m in train.modalities}
    learn = Learner(model, make_loader(train, len(train), shuffle=True), progress=False)
    learn.fit(1)
    assert np.isfinite(learn.history.steps['loss']).all()
    for m in train.modalities:                                           # every encoder was trained
        assert any(not torch.equal(a, b) for a, b in zip(before[m], model.modality_params(m))), m


def test_input_shapes(trees):
    get = lambda n: DATASETS[n]('test', root=trees[n], **knobs(n)).input_shapes
    assert get('CREMAD') == {'audio': (1, 32, 63), 'visual': (2, 3, 32, 32)}
    assert get('KineticsSounds') == {'audio': (1, 32, 63), 'visual': (3, 3, 32, 32)}
    assert get('Balance') == {'audio': (1, 32, 63), 'visual': (3, 3, 32, 32)}
    assert get('UCF101') == {'visual': (3, 3, 32, 32), 'flow': (3, 2, 32, 32)}
    assert get('FOOD101') == {'visual': (1, 3, 32, 32), 'text': (40,)}
    assert get('CMUMOSEI') == {'audio': (12, 74), 'visual': (12, 35), 'text': (12, 300)}


def test_cremad_uses_real_clip_names_and_labels(trees):
    ds = bd.CREMAD('test', root=trees['CREMAD'])
    real = dict(bd.read_cremad_list(data_root()/'ogm_ge_cremad_splits'/'test.csv'))
    assert all(real[c] == l for c, l in zip(ds.items, ds.labels))
    assert all(c.split('_')[2] == bd.CREMAD_EMOTIONS[l] for c, l in zip(ds.items, ds.labels))   # emotion in the name


def test_frame_sampling_deterministic_at_test_seeded_at_train(trees):
    te = bd.KineticsSounds('test', root=trees['KineticsSounds'], **IMG)
    assert torch.equal(te[1]['visual'], te[1]['visual'])
    tr = bd.CREMAD('train', root=trees['CREMAD'], seed=3, **IMG)
    a = [tr[i]['visual'] for i in range(len(tr))]
    assert all(torch.equal(x, tr[i]['visual']) for i, x in enumerate(a))            # same (seed, epoch): same draw
    tr.set_epoch(1)
    assert any(not torch.equal(x, tr[i]['visual']) for i, x in enumerate(a))        # next epoch: new draw
    other = bd.CREMAD('train', root=trees['CREMAD'], seed=3, **IMG)
    loader = make_loader(other, 4, shuffle=True, seed=0); loader.set_epoch(1)          # the loader tells the dataset
    by_idx = {int(i): v for b in loader for i, v in zip(b['idx'], b['visual'])}
    assert all(torch.equal(by_idx[i], tr[i]['visual']) for i in range(len(tr)))


def test_worker_processes_give_the_same_batches(trees):
    "2 kept (persistent) workers give exactly the batches of 0 workers, two epochs running, and start only once."
    ds = bd.CREMAD('train', root=trees['CREMAD'], num_workers=2, **IMG)
    assert make_loader(ds, 4).num_workers == 2

    def two_epochs(workers):
        dl, out = make_loader(ds, 4, shuffle=True, seed=1, num_workers=workers), []
        for e in (0, 1):
            dl.set_epoch(e)
            out.append([(b['idx'], b['visual']) for b in dl])
            if workers: out[-1].append(sorted(w.pid for w in dl._dl._iterator._workers))
        dl.close()
        return out
    w0, w2 = two_epochs(0), two_epochs(2)
    for e in (0, 1):
        assert len(w0[e]) == len(w2[e]) - 1                                          # + the worker pids
        assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(w0[e], w2[e]))
    assert w2[0][-1] == w2[1][-1] and len(w2[0][-1]) == 2                            # the same two processes
    assert not all(torch.equal(a[1], b[1]) for a, b in zip(w0[0], w0[1]))           # the epochs' draws differ


def test_workers_follow_a_dataset_epoch_set_from_outside(trees):
    "A loader's workers draw at the epoch of this process's dataset, as loading in this process does."
    ds = bd.CREMAD('train', root=trees['CREMAD'], **IMG)
    dl = make_loader(ds, 4, num_workers=2)
    first = [b['visual'] for b in dl]
    ds.set_epoch(3)                                                  # e.g. the training loader of the same dataset
    again = [b['visual'] for b in dl]
    ds0 = bd.CREMAD('train', root=trees['CREMAD'], num_workers=0, **IMG); ds0.set_epoch(3)
    assert all(torch.equal(a, b) for a, b in zip(again, [b['visual'] for b in make_loader(ds0, 4)]))
    assert not all(torch.equal(a, b) for a, b in zip(first, again))
    dl.close()


def test_default_workers_env_and_option(trees, monkeypatch):
    monkeypatch.delenv(bd.WORKERS_ENV, raising=False)
    cores = bd.usable_cores()
    assert bd.default_num_workers() == max(0, min(8, cores - 1))
    for name in ('CREMAD', 'UCF101'):                                  # the file-backed loaders ask for the default
        assert make_loader(DATASETS[name]('test', root=trees[name], **IMG)).num_workers == bd.default_num_workers()
    assert make_loader(DATASETS['CMUMOSEI']('test', root=trees['CMUMOSEI'])).num_workers == 0   # in memory
    monkeypatch.setenv(bd.WORKERS_ENV, '3')
    assert make_loader(bd.CREMAD('test', root=trees['CREMAD'], **IMG)).num_workers == 3
    assert make_loader(bd.CREMAD('test', root=trees['CREMAD'], num_workers=1, **IMG)).num_workers == 1   # the option wins
    monkeypatch.setenv(bd.WORKERS_ENV, 'lots')
    with pytest.raises(ValueError, match="BALANCE_NB_WORKERS='lots'"): bd.CREMAD('test', root=trees['CREMAD'])
    with pytest.raises(ValueError, match='num_workers=-2'): bd.CREMAD('test', root=trees['CREMAD'], num_workers=-2)


def test_pin_memory_without_cuda_changes_nothing(trees):
    ds = bd.CREMAD('test', root=trees['CREMAD'], **IMG)
    with warnings.catch_warnings():
        warnings.simplefilter('error')                                  # torch would warn if asked to pin without CUDA
        pinned = [b['visual'] for b in make_loader(ds, 4, num_workers=1, pin_memory=True)]
    assert all(torch.equal(a, b) for a, b in zip(pinned, [b['visual'] for b in make_loader(ds, 4, num_workers=0)]))
    if torch.cuda.is_available(): assert all(t.is_pinned() for t in pinned)


# what each loader needs, removed one at a time: (dataset, relative path, text the message must contain)
MISSING = [('CREMAD', 'visual', 'visual/<clip>/*.jpg'), ('CREMAD', 'train.csv', 'train.csv'),
           ('CREMAD', 'audio', 'audio/<clip>.pt'),
           ('KineticsSounds', 'audio/train', 'audio/train/<clip>.npy'), ('KineticsSounds', 'test.txt', 'train.txt, test.txt'),
           ('Balance', 'visual', 'visual/<clip>.hdf5'), ('Balance', 'balanced_av.json', 'balanced_av.json'),
           ('VGGSound', 'vggsound.csv', 'vggsound.csv'), ('VGGSound', 'visual/test', 'visual/test/<clip>/*.jpg'),
           ('UCF101', 'flow/u', 'flow/u/<v_...>/*.jpg'), ('UCF101', 'ucfTrainTestlist/classInd.txt', 'classInd.txt'),
           ('FOOD101', 'images/train', 'images/train/<label>/<Image_path>'), ('FOOD101', 'texts/test_titles.csv', 'test_titles.csv'),
           ('CMUMOSEI', 'mosei_senti_data_noalign.pkl', 'mosei_senti_data_noalign.pkl')]

@pytest.mark.parametrize('name,rel,shown', MISSING, ids=[f'{n}-{r}' for n, r, _ in MISSING])
def test_missing_file_or_folder_is_named_with_layout(trees, tmp_path, name, rel, shown):
    root = tmp_path/name
    shutil.copytree(trees[name], root)
    p = root/rel
    shutil.rmtree(p) if p.is_dir() else p.unlink()
    split = 'test' if 'test' in rel else 'train'
    with pytest.raises(MissingDataError) as e:
        DATASETS[name](split, root=root, **knobs(name))
    msg = str(e.value)
    assert str(p) in msg and 'Expected layout' in msg and shown in msg


@pytest.mark.parametrize('name', SEVEN)
def test_no_root_and_bad_split(name, tmp_path):
    with pytest.raises(MissingDataError, match='--data-root'): DATASETS[name]('train')
    with pytest.raises(MissingDataError, match=str(tmp_path/'nope')): DATASETS[name]('train', root=tmp_path/'nope')
    with pytest.raises(ValueError, match='Valid splits: train, valid, test'): DATASETS[name]('dev', root=tmp_path)


def test_rows_without_media_are_skipped_with_a_warning(trees, tmp_path):
    root = tmp_path/'c'; shutil.copytree(trees['CREMAD'], root)
    first = (root/'test.csv').read_text().splitlines()[0].split(',')[0]
    shutil.rmtree(root/'visual'/first)
    with pytest.warns(UserWarning, match=f'1 of 6 rows.*{first}'):
        ds = bd.CREMAD('test', root=root)
    assert len(ds) == 5 and first not in ds.items


def test_cremad_ogm_ge_layout(tmp_path):
    root = fabricate_tree('CREMAD', tmp_path/'ogm', n_train=2, n_test=1, layout='ogm-ge', size=24)
    assert (root/'AudioWAV').is_dir() and (root/'Image-01-FPS').is_dir() and not (root/'audio').exists()
    ds = bd.CREMAD('test', root=root, **IMG)
    assert ds.input_shapes == {'audio': (1, 257, 188), 'visual': (2, 3, 32, 32)}   # OGM-GE's STFT, computed on load


def test_food101_with_a_local_bert_folder(trees, tmp_path):
    titles = (trees['FOOD101']/'texts'/'train_titles.csv').read_text().lower()
    words = sorted({w for w in te.basic_tokenize(titles) if w.isalpha()})
    bert = write_tiny_bert(tmp_path/'bert', ['[PAD]', '[UNK]', '[CLS]', '[SEP]'] + words)
    ds = vt.FOOD101('train', root=trees['FOOD101'], bert_path=str(bert), **IMG)
    ids = ds[0]['text']
    assert ids[0] == 2 and 3 in ids.tolist() and (ids == 1).sum() < 3           # [CLS] ... [SEP], few unknown
    model = build_model(ds)
    assert type(model.encoders['text']).__name__ == 'BertEncoder'
    w = torch.load(bert/'pytorch_model.bin')['bert.embeddings.word_embeddings.weight']
    assert torch.equal(model.encoders['text'].word.weight.detach(), w)             # the local weights were loaded
    Learner(model, make_loader(ds, len(ds)), progress=False).fit(1)


def test_ucf_flow_flip_negates_u():
    from PIL import Image
    ramp = Image.fromarray(np.tile(np.linspace(0, 255, 16).astype(np.uint8), (16, 1))).convert('RGB')
    for seed in range(20):                  # find a seed whose draw flips
        torch.manual_seed(seed)
        x = bd.frames_to_tensor([ramp], 16, train=True, normalize=False)
        if x.flipped: break
    assert x.flipped
    row = x[0, 0].mean(0)
    assert row[0] > row[-1]                 # the flip mirrored the left-to-right ramp


def test_mosei_labels_and_inf(trees):
    ds = vt.CMUMOSEI('train', root=trees['CMUMOSEI'])
    assert torch.isfinite(ds.tensors['audio']).all()                              # -inf replaced by 0
    assert ds.labels.tolist() == [0, 0, 0, 1, 1, 1]                               # score >= 0 -> 1


# ---------------------------------------------------------------------------------------------------------------------
# bad data: a corrupt or empty media file, on_error=stop|skip

FOLDER_SIX = tuple(n for n in SEVEN if n != 'CMUMOSEI')

def _break(path: Path, how: str):
    "Make `path` unreadable: 'empty' (0 bytes) or 'cut' (its first 40 bytes only, a truncated copy)."
    path.write_bytes(b'' if how == 'empty' else path.read_bytes()[:40])

# (dataset, which file of the first test sample to break: 0 = first (audio / image), -1 = last (a frame), how)
BROKEN = [(n, 0, 'cut') for n in FOLDER_SIX] + [(n, -1, 'empty') for n in FOLDER_SIX]

@pytest.mark.parametrize('name,which,how', BROKEN, ids=[f'{n}-{w}-{h}' for n, w, h in BROKEN])
def test_corrupt_file_stops_naming_it_or_is_skipped(trees, tmp_path, name, which, how):
    root = tmp_path/name; shutil.copytree(trees[name], root)
    ds = DATASETS[name]('test', root=root, **IMG)
    n, item = len(ds), ds.items[0]
    bad = ds.media_files(item)[which]
    _break(bad, how)
    if which == 0:                                                     # a file every read of the sample decodes:
        with pytest.raises(bd.CorruptMediaError) as e:                 # on_error='stop' (default) stops the loader
            for _ in make_loader(DATASETS[name]('test', root=root, **IMG), 8): pass
        assert str(bad) in str(e.value) and 'on_error=skip' in str(e.value)
    else:                                                              # the last frame: the test path may never read it,
        assert str(bad) in str(ds.unreadable(item))                    # but a full decode of the sample finds it
    with pytest.warns(UserWarning, match=f"1 of {n} samples skipped") as w:
        sk = DATASETS[name]('test', root=root, on_error='skip', **IMG)
    assert str(bad) in str(w[0].message)
    assert len(sk) == n - 1 and item not in sk.items and [i for i, _ in sk.skipped] == [item]
    assert sum(len(b['label']) for b in make_loader(sk, 8)) == n - 1    # what is left loads

def test_corrupt_wav_in_the_ogm_ge_layout(tmp_path):
    root = fabricate_tree('CREMAD', tmp_path/'ogm', n_train=2, n_test=1, layout='ogm-ge', size=24)
    ds = bd.CREMAD('test', root=root, image_size=32)
    wav = ds.media_files(ds.items[0])[0]
    assert wav.suffix == '.wav'
    _break(wav, 'cut')
    with pytest.raises(bd.CorruptMediaError, match=str(wav)): bd.CREMAD('test', root=root, image_size=32)[0]
    with pytest.warns(UserWarning, match=str(wav)):
        assert len(bd.CREMAD('test', root=root, image_size=32, on_error='skip')) == len(ds) - 1

def test_corrupt_mosei_pickle_is_named(trees, tmp_path):
    root = tmp_path/'m'; shutil.copytree(trees['CMUMOSEI'], root)
    pkl = root/'mosei_senti_data_noalign.pkl'; _break(pkl, 'cut')
    for mode in ('stop', 'skip'):
        with pytest.raises(bd.CorruptMediaError, match='replace that file') as e: vt.CMUMOSEI('train', root=root, on_error=mode)
        assert str(pkl) in str(e.value)

@pytest.mark.parametrize('name', SEVEN)
def test_on_error_value_is_checked_first(name, tmp_path):
    # checked before the root is even looked at: the message names the option and the allowed values
    with pytest.raises(ValueError, match=f"{name} option on_error='Skip': expected one of stop, skip"):
        DATASETS[name]('train', root=tmp_path/'nowhere', on_error='Skip')

def test_cli_corrupt_file_exit_2_or_skip(trees, tmp_path):
    root = tmp_path/'c'; shutil.copytree(trees['CREMAD'], root)
    train = bd.CREMAD('train', root=root)
    first = train.items[0]
    bad = root/'audio'/f'{first}.pt'; _break(bad, 'empty')            # a training clip: 'stop' fails at the first batch
    args = ('--dataset', 'CREMAD', '--data-root', root, '--epochs', 1, '--device', 'cpu', '--batch-size', 8,
            '--no-reference', '--data-opt', 'image_size=32')
    code, _, err = _main(*args, '--out', tmp_path/'stop')
    assert code == 2 and str(bad) in err and '--data-opt on_error=skip' in err and 'Traceback' not in err
    with pytest.warns(UserWarning, match=f'1 of {len(train)} samples skipped.*{first}'):
        code, out, err = _main(*args, '--out', tmp_path/'skip', '--data-opt', 'on_error=skip')
    assert code == 0 and 'fused' in out, err
    rd = next(d for d in (tmp_path/'skip').iterdir() if (d/'config.yaml').exists())   # the run folder records what was dropped
    assert json.loads((rd/'metrics.json').read_text())['skipped_train'] == 1
    assert (rd/'skipped.txt').read_text().startswith('train\t') and str(bad) in (rd/'skipped.txt').read_text()
    code, _, err = _main(*args, '--out', tmp_path/'bad', '--data-opt', 'on_error=ignore')
    assert code == 2 and "on_error='ignore'" in err and 'stop, skip' in err and 'Traceback' not in err


# ---------------------------------------------------------------------------------------------------------------------
# prepare (ffmpeg)

needs_ffmpeg = pytest.mark.skipif(shutil.which('ffmpeg') is None,
                                  reason="ffmpeg not installed (apt-get install -y ffmpeg): cannot make or decode test videos")

class _R:
    def __init__(self, code, out, err): self.returncode, self.stdout, self.stderr = code, out, err

def _prepare_cli(*args):
    "`python -m balance_nb prepare ...`, in-process (the same dispatch through experiment.main)."
    return _R(*_main('prepare', *args))

@needs_ffmpeg
def test_prepare_cremad_resume_and_unreadable(tmp_path):
    raw = fabricate_raw_cremad(tmp_path/'raw', n_per_emotion=1, corrupt=True)
    out = tmp_path/'out'
    opts = ['--sample-rate', 8000, '--seconds', 1, '--spectrogram', 'mel', '--n-fft', 256, '--hop', 128, '--n-mels', 32,
            '--frame-size', 32, '--no-progress']
    r = _prepare_cli('cremad', '--raw', raw, '--out', out, *opts)
    assert r.returncode == 0, r.stderr
    assert '12 clips prepared' in r.stdout and '1 unreadable' in r.stdout and '1076_MTI_SAD_XX.flv' in r.stdout
    rep = json.loads((out/'prepare_report.json').read_text())
    assert [u['key'] for u in rep['unreadable']] == ['1076_MTI_SAD_XX']
    settings = json.loads((out/'audio_settings.json').read_text())
    assert settings['audio'] == {'sample_rate': 8000, 'seconds': 1.0, 'kind': 'mel', 'n_fft': 256, 'hop': 128, 'n_mels': 32}
    manifest = [json.loads(l) for l in (out/'manifest.jsonl').read_text().splitlines()]
    assert len(manifest) == 12
    m0 = manifest[0]
    assert m0['audio_sha256'] == prep.sha256(out/m0['audio']) and m0['frames'] == 3      # 1.5 s at 2 fps
    assert torch.load(out/m0['audio']).shape == (32, 63)
    # interrupted run: the last clip's manifest line and outputs are gone; a rerun does exactly that clip
    last = manifest[-1]
    (out/'manifest.jsonl').write_text(''.join(json.dumps(m) + '\n' for m in manifest[:-1]) + '{"key": "cut')
    (out/last['audio']).unlink()
    r = _prepare_cli('cremad', '--raw', raw, '--out', out, *opts)
    assert r.returncode == 0 and '1 clips prepared, 11 already done' in r.stdout, r.stdout + r.stderr
    # other settings in the same folder are refused
    r = _prepare_cli('cremad', '--raw', raw, '--out', out, '--fps', 5, *opts)
    assert r.returncode == 2 and 'other settings' in r.stderr
    # the result loads and trains
    ds = bd.CREMAD('train', root=out, **IMG)
    assert len(ds) == 6 and len(bd.CREMAD('test', root=out)) == 6
    with pytest.raises(ValueError, match='too few training clips per class'): bd.CREMAD('valid', root=out)
    Learner(build_model(ds), make_loader(ds, 8), progress=False).fit(1)

@needs_ffmpeg
def test_prepare_jobs_2_gives_the_tree_of_jobs_1(tmp_path):
    raw = fabricate_raw_cremad(tmp_path/'raw', n_per_emotion=1, corrupt=True)
    opts = ['--sample-rate', 8000, '--seconds', 1, '--spectrogram', 'mel', '--n-fft', 256, '--hop', 128, '--n-mels', 32,
            '--frame-size', 32, '--no-progress']
    for j in (1, 2):
        r = _prepare_cli('cremad', '--raw', raw, '--out', tmp_path/f'j{j}', '--jobs', j, *opts)
        assert r.returncode == 0 and '12 clips prepared' in r.stdout and '1 unreadable' in r.stdout, r.stdout + r.stderr
    m1, m2 = ((tmp_path/f'j{j}'/'manifest.jsonl').read_text() for j in (1, 2))
    assert m1 == m2 and len(m1.splitlines()) == 12                       # same clips, order and checksums
    rep = [json.loads((tmp_path/f'j{j}'/'prepare_report.json').read_text()) for j in (1, 2)]
    assert rep[0] == rep[1] and [u['key'] for u in rep[1]['unreadable']] == ['1076_MTI_SAD_XX']
    files = lambda d: sorted((str(p.relative_to(d)), prep.sha256(p)) for p in d.rglob('*') if p.is_file()
                             and p.name not in ('audio_settings.json',))
    assert files(tmp_path/'j1') == files(tmp_path/'j2')                  # the whole tree, file by file
    # resumable with two jobs: drop three clips' manifest lines, a rerun prepares exactly those
    lines = m2.splitlines()
    (tmp_path/'j2'/'manifest.jsonl').write_text('\n'.join(lines[:9]) + '\n')
    r = _prepare_cli('cremad', '--raw', raw, '--out', tmp_path/'j2', '--jobs', 2, *opts)
    assert '3 clips prepared, 9 already done' in r.stdout, r.stdout + r.stderr
    assert (tmp_path/'j2'/'manifest.jsonl').read_text() == m1
    r = _prepare_cli('cremad', '--raw', raw, '--out', tmp_path/'j3', '--jobs', 0, *opts)
    assert r.returncode == 2 and '--jobs 0' in r.stderr

def test_prepare_errors(tmp_path):
    r = _prepare_cli('cremad', '--raw', tmp_path/'none', '--out', tmp_path/'o')
    assert r.returncode == 2 and 'VideoFlash' in r.stderr
    r = _prepare_cli('mnist', '--raw', tmp_path, '--out', tmp_path/'o')
    assert r.returncode == 2 and 'Valid: cremad, kinetics-sounds, vggsound' in r.stderr


# ---------------------------------------------------------------------------------------------------------------------
# the CLI

def _main(*args):
    from balance_nb.experiment import main
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()

@pytest.mark.parametrize('name', SEVEN)
def test_cli_trains_each_dataset(trees, tmp_path, name):
    opts = [] if name == 'CMUMOSEI' else ['--data-opt', 'image_size=32']
    code, out, err = _main('--trainer', 'baseline', '--dataset', name, '--data-root', trees[name], '--epochs', 1,
                           '--device', 'cpu', '--batch-size', 8, '--out', tmp_path, '--no-reference', *opts)
    assert code == 0, err
    run_dir = next(p for p in tmp_path.iterdir() if p.is_dir() and p.name.startswith(f'baseline-{name}'))
    m = json.loads((run_dir/'metrics.json').read_text())
    assert 0 <= m['acc'] <= 1 and all(f'acc_{mod}' in m for mod in DATASETS.meta(name)['modalities'])

def test_cli_subprocess_cremad_and_missing_root(trees, tmp_path):
    r = subprocess.run([sys.executable, '-m', 'balance_nb', '--trainer', 'baseline', '--dataset', 'CREMAD', '--data-root',
                        str(trees['CREMAD']), '--epochs', '1', '--device', 'cpu', '--out', str(tmp_path), '--no-reference',
                        '--data-opt', 'image_size=32'], cwd=ROOT, capture_output=True, text=True,
                       env={**os.environ, 'PYTHONPATH': str(ROOT), 'IN_TEST': '1'})
    assert r.returncode == 0, r.stderr[-2000:]
    assert 'fused' in r.stdout
    code, _, err = _main('--dataset', 'CREMAD', '--data-root', tmp_path/'nowhere', '--out', tmp_path)
    assert code == 2 and str(tmp_path/'nowhere') in err and 'Expected layout' in err and 'train.csv' in err
