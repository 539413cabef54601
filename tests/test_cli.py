"The command line, end to end, in a subprocess (as a user runs it)."
import json, subprocess, sys
from pathlib import Path
import pytest

from helpers import ROOT, cli

def test_help_lists_trainers_and_datasets():
    r = cli('--help')
    assert r.returncode == 0 and 'baseline' in r.stdout and 'AVDigits' in r.stdout and 'MFeat' in r.stdout

def test_unknown_trainer_exit_2():
    r = cli('--trainer', 'Nope')
    assert r.returncode == 2 and 'Valid methods:' in r.stderr

def test_unknown_flag_exit_2():
    r = cli('--colour', 'red')
    assert r.returncode == 2 and 'Valid flags:' in r.stderr

def test_missing_data_names_path_and_layout(tmp_path):
    r = cli('--data-root', str(tmp_path/'empty'), '--out', str(tmp_path))
    assert r.returncode == 2 and str(tmp_path/'empty') in r.stderr and 'Expected layout' in r.stderr

@pytest.mark.slow
def test_baseline_avdigits_shows_imbalance(tmp_path):
    "The README's main command: fused acc >= 0.95 and the image modality clearly under-optimised."
    r = cli('--trainer', 'baseline', '--dataset', 'AVDigits', '--device', 'cpu', '--out', str(tmp_path))
    assert r.returncode == 0, r.stderr[-2000:]
    run_dir = next(p for p in tmp_path.iterdir() if p.is_dir() and p.name.startswith('baseline-'))
    m = json.loads((run_dir/'metrics.json').read_text())
    assert m['acc'] >= 0.95
    assert m['alone_acc_visual'] - m['acc_visual'] > 0.1          # the weak modality is under-optimised
    assert m['shapley_audio'] > m['shapley_visual']               # audio dominates
    assert (run_dir/'curves.png').exists() and (run_dir/'history.csv').exists()
    assert 'fused' in r.stdout and 'imbalance degree' in r.stdout

# ---- typed values: every field and hyper-parameter, a wrong type and an out-of-range value -> exit 2, no traceback
import contextlib, io
from balance_nb.experiment import main, load_methods, method_hparam_types, POSITIVE, NON_NEGATIVE, UNIT_INTERVAL

def run_main(*args):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try: code = main(list(args))
        except SystemExit as e: code = e.code
    return code, err.getvalue()

FIELD_CASES = [  # (flag, wrong type, out of range)
    ('--epochs', '2.5', '0'), ('--batch-size', 'x', '0'), ('--lr', 'abc', '0'), ('--seed', '1.5', '-1'),
]
@pytest.mark.parametrize('flag,wrong,bad', FIELD_CASES)
def test_run_config_flags_typed_and_ranged(flag, wrong, bad, tmp_path):
    for v in (wrong, bad):
        code, err = run_main(flag, v, '--out', str(tmp_path))
        assert code == 2 and 'Traceback' not in err and flag.lstrip('-').replace('-', '_').split('_')[0] in err, (flag, v, err)
    assert not list(tmp_path.glob('*-*'))                                  # nothing ran

YAML_CASES = [('lr', 'abc', -1), ('epochs', 'two', 0), ('batch_size', 1.5, 0), ('feature_dim', 'x', 0), ('step_size', 'x', 0),
              ('gamma', 'x', 0), ('weight_decay', 'x', -0.1), ('seed', 'x', -3), ('fusion', 3, 'nofusion'),
              ('method', 3, 'nomethod'), ('dataset', [1], 'nodata'), ('hparams', 3, 'x'), ('dataset_args', 'x', 3)]
@pytest.mark.parametrize('field,wrong,bad', YAML_CASES)
def test_yaml_fields_typed_and_ranged(field, wrong, bad, tmp_path):
    import yaml
    for v in (wrong, bad):
        (tmp_path/'c.yaml').write_text(yaml.safe_dump({field: v}))
        code, err = run_main('--config', str(tmp_path/'c.yaml'), '--out', str(tmp_path))
        assert code == 2 and 'Traceback' not in err and (field in err or 'Unknown' in err), (field, v, err)

def _hparam_cases():
    methods, seen, cases = load_methods(), set(), []
    for name in methods.names():
        cls = methods[name]
        if id(cls) in seen: continue
        seen.add(id(cls))
        for hp, (types, optional) in method_hparam_types(cls).items():
            if float in types or int in types: cases.append((name, hp, 'abc'))
            if int in types and float not in types: cases.append((name, hp, '1.5'))
            numeric = float in types or int in types
            if numeric and hp in POSITIVE | NON_NEGATIVE | UNIT_INTERVAL: cases.append((name, hp, '-1'))
            if numeric and hp in UNIT_INTERVAL: cases.append((name, hp, '2'))
    return cases

@pytest.mark.parametrize('method,hp,value', _hparam_cases())
def test_every_hyperparameter_typed_and_ranged(method, hp, value, tmp_path):
    code, err = run_main('--trainer', method, '--dataset', 'MFeat', '--hp', f'{hp}={value}', '--out', str(tmp_path))
    assert code == 2 and 'Traceback' not in err and f'hyper-parameter {hp}' in err, (method, hp, value, err)

@pytest.mark.parametrize('opt', ['image_pool=2.5', 'image_pool=0', 'audio_snr_db=loud', 'image_noise=-1', 'n_mels=x'])
def test_dataset_options_typed_and_ranged(opt, tmp_path):
    code, err = run_main('--data-opt', opt, '--out', str(tmp_path))
    assert code == 2 and 'Traceback' not in err and opt.split('=')[0] in err, (opt, err)

def test_empty_modality_list_exit_2(tmp_path):
    code, err = run_main('--dataset', 'MFeat', '--data-opt', 'views=[]', '--out', str(tmp_path))
    assert code == 2 and 'empty' in err

def test_yaml_text_numbers_train_as_floats(tmp_path):
    "`lr: 1e-3` (text to PyYAML) and `--hp alpha=1e-3` train with the float value."
    (tmp_path/'c.yaml').write_text("trainer: OGM\ndataset: MFeat\nepochs: 1\nlr: 1e-3\n")
    r = cli('--config', str(tmp_path/'c.yaml'), '--hp', 'alpha=1e-3', '--hp', 'modulation_starts=0', '--no-reference',
            '--out', str(tmp_path))
    assert r.returncode == 0, r.stderr[-2000:]
    import yaml
    run_dir = next(p for p in tmp_path.iterdir() if p.is_dir() and p.name.startswith('OGM-'))
    cfg = yaml.safe_load((run_dir/'config.yaml').read_text())
    assert cfg['lr'] == 1e-3 and cfg['hparams']['alpha'] == 1e-3 and isinstance(cfg['hparams']['alpha'], float)

def test_balancemm_spellings(tmp_path):
    r = cli('--model', 'BaseClassifier', '--trainer', 'OGMTrainer', '--dataset', 'BalancedAV', '--data-root',
            str(tmp_path/'none'), '--out', str(tmp_path))
    assert r.returncode == 2 and 'Unknown' not in r.stderr and 'Expected layout' in r.stderr   # names accepted; data missing

def test_eval_reproduces_final_table(tmp_path):
    r = cli('--dataset', 'MFeat', '--epochs', '2', '--no-reference', '--out', str(tmp_path))
    assert r.returncode == 0, r.stderr[-2000:]
    run_dir = next(p for p in tmp_path.iterdir() if p.is_dir() and p.name.startswith('baseline-'))
    assert {'history.csv', 'progress.json', 'steps.csv'} <= {p.name for p in run_dir.iterdir()}
    assert (run_dir/'checkpoints'/'best.pt').exists() and (run_dir/'checkpoints'/'last.pt').exists()
    e = cli('eval', str(run_dir))
    assert e.returncode == 0, e.stderr[-2000:]
    table = lambda s: [l for l in s.splitlines() if l.startswith(('fused', 'pix', 'mor', 'imbalance'))]
    assert table(e.stdout) == table(r.stdout) and 'evaluated: last.pt' in e.stdout
    b = cli('--mode', 'test', '--test_path', str(run_dir), '--checkpoint', 'best')
    assert b.returncode == 2            # --checkpoint belongs to `eval`
    b = cli('eval', str(run_dir), '--checkpoint', 'best', '--split', 'valid')
    assert b.returncode == 0 and 'evaluated: best.pt' in b.stdout and 'valid split' in b.stdout

def test_tensorboard_events_read_back(tmp_path):
    "--tensorboard: per-epoch (`epoch/<history.csv column>`) and per-step (`step/<steps.csv column>`) scalars."
    import pandas as pd
    try: from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError: pytest.fail("tensorboard is not installed: it is in the [dev] extra (bash setup.sh, or pip install -e '.[dev]')")
    code, err = run_main('--dataset', 'MFeat', '--epochs', '2', '--no-reference', '--tensorboard', '--out', str(tmp_path))
    assert code == 0, err
    run_dir = next(p for p in tmp_path.iterdir() if p.is_dir())
    ea = EventAccumulator(str(run_dir/'tensorboard')); ea.Reload()
    tags = set(ea.Tags()['scalars'])
    hist, steps = pd.read_csv(run_dir/'history.csv'), pd.read_csv(run_dir/'steps.csv')
    assert {'epoch/acc', 'epoch/train_loss', 'epoch/valid_loss', 'epoch/acc_pix', 'epoch/acc_mor', 'epoch/shapley_pix',
            'epoch/shapley_mor', 'epoch/imbalance', 'step/loss', 'step/grad_norm_pix', 'step/grad_norm_mor'} <= tags
    assert tags == {f'epoch/{c}' for c in hist.columns if c != 'epoch'} | {f'step/{c}' for c in steps.columns if c not in ('epoch', 'iter')}
    acc = ea.Scalars('epoch/acc')
    assert [e.step for e in acc] == [0, 1] and [e.value for e in acc] == pytest.approx(hist['acc'].tolist(), abs=1e-6)
    loss = ea.Scalars('step/loss')
    assert [e.step for e in loss] == steps['iter'].tolist() and [e.value for e in loss] == pytest.approx(steps['loss'].tolist(), rel=1e-6)

def test_tensorboard_is_installed_by_the_projects_own_extras():
    tomllib = pytest.importorskip('tomllib')                                   # Python >= 3.11
    extras = tomllib.loads((ROOT/'pyproject.toml').read_text())['project']['optional-dependencies']
    assert 'tensorboard' in extras['tensorboard'] and 'tensorboard' in extras['dev']        # setup.sh installs .[dev]
    assert '".[dev]"' in (ROOT/'setup.sh').read_text()

def test_tensorboard_missing_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, 'torch.utils.tensorboard', None)          # as if the package were not installed
    code, err = run_main('--dataset', 'MFeat', '--epochs', '1', '--no-reference', '--tensorboard', '--out', str(tmp_path))
    assert code == 2 and "pip install 'balance_nb[tensorboard]'" in err and 'pip install tensorboard' in err and 'Traceback' not in err
    # said before any data is loaded: a dataset whose folder does not exist is not even looked at
    code, err = run_main('--dataset', 'CREMAD', '--data-root', str(tmp_path/'nowhere'), '--tensorboard', '--out', str(tmp_path))
    assert code == 2 and 'pip install tensorboard' in err and 'nowhere' not in err

def test_watch_a_running_cli_run_then_eval_reproduces_it(tmp_path):
    "A headless run followed from outside while it trains (progress.json, history.csv), then `eval` on its folder."
    import io, contextlib, time
    from balance_nb.experiment import main
    epochs = 8
    proc = subprocess.Popen([sys.executable, '-m', 'balance_nb', '--dataset', 'MFeat', '--epochs', str(epochs), '--no-reference',
                             '--out', str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**__import__('os').environ, 'PYTHONPATH': str(ROOT), 'IN_TEST': '1', 'OMP_NUM_THREADS': '1'})
    seen = []                                               # (epochs done in progress.json, rows of history.csv) while running
    try:
        while proc.poll() is None:
            time.sleep(0.05)
            run_dir = next((p for p in tmp_path.iterdir() if p.is_dir()), None)
            if run_dir and (run_dir/'progress.json').exists() and (run_dir/'history.csv').exists():
                try:
                    done = json.loads((run_dir/'progress.json').read_text())['epoch']
                    rows = len((run_dir/'history.csv').read_text().strip().splitlines()) - 1
                except (ValueError, OSError): continue          # caught mid-write of history.csv: read again
                if proc.poll() is None and (not seen or seen[-1] != (done, rows)): seen.append((done, rows))
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None: proc.kill()
    assert proc.returncode == 0, err[-2000:]
    run_dir = next(p for p in tmp_path.iterdir() if p.is_dir())
    running = [d for d, _ in seen if d < epochs]
    assert len(set(running)) >= 2, f"progress.json did not advance while the run was going: {seen}"
    assert any(0 < r < epochs for _, r in seen)                               # history.csv grew before the end
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf): assert main(['eval', str(run_dir)]) == 0
    table = lambda s: [l for l in s.splitlines() if l.startswith(('fused', 'pix', 'mor', 'imbalance'))]
    assert table(buf.getvalue()) == table(out) and table(out)
    m = json.loads((run_dir/'metrics.json').read_text())
    assert f"{m['acc']:.3f}" in table(buf.getvalue())[0]

def test_progress_files_follow_a_run(tmp_path):
    import json as _json
    code, err = run_main('--dataset', 'MFeat', '--epochs', '2', '--no-reference', '--out', str(tmp_path))
    assert code == 0, err
    run_dir = next(p for p in tmp_path.iterdir() if p.is_dir())
    prog = _json.loads((run_dir/'progress.json').read_text())
    assert prog['state'] == 'finished' and prog['epoch'] == prog['epochs'] == 2 and 'acc' in prog['last_epoch']
    yml = (run_dir/'config.yaml').read_text()
    assert 'torch_threads' in yml and 'torch_version' in yml

def _installed_plugin(site, body: str, name='bnb_plugin_demo'):
    "A package installed the way pip leaves it (module + .dist-info with an entry point in balance_nb.plugins)."
    (site/name).mkdir(parents=True)
    (site/name/'__init__.py').write_text(body)
    info = site/f'{name}-0.1.dist-info'; info.mkdir()
    (info/'METADATA').write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info/'entry_points.txt').write_text(f"[balance_nb.plugins]\ndemo = {name}\n")
    return {**__import__('os').environ, 'PYTHONPATH': f"{ROOT}:{site}", 'IN_TEST': '1'}

PLUGIN = '''
from balance_nb.core import DATASETS
from balance_nb.learner import BalancingMethod, register_method
from balance_nb.data import MFeat

@register_method('PluginNoOp', category='objective')
class PluginNoOp(BalancingMethod):
    "Changes nothing: a method that an installed package adds."

@DATASETS.register('PluginMFeat', modalities=('pix', 'mor'), epochs=1)
def PluginMFeat(split: str = 'train'):
    "MFeat's pixel and morphology views, registered by an installed package."
    return MFeat(split, views='pix,mor')
'''

def test_installed_plugin_adds_a_method_and_a_dataset_with_no_flag(tmp_path):
    env = _installed_plugin(tmp_path/'site', PLUGIN)
    run = lambda *a: subprocess.run([sys.executable, '-m', 'balance_nb', *a], cwd=tmp_path, capture_output=True, text=True, env=env)
    h = run('--help')
    assert h.returncode == 0 and 'PluginNoOp' in h.stdout and 'PluginMFeat' in h.stdout, h.stdout[-2000:] + h.stderr[-2000:]
    r = run('--trainer', 'PluginNoOp', '--dataset', 'PluginMFeat', '--no-reference', '--out', str(tmp_path/'runs'))
    assert r.returncode == 0 and 'PluginNoOp on PluginMFeat (1 epochs' in r.stdout, r.stderr[-3000:]
    s = run('sweep', '--trainers', 'PluginNoOp', '--dataset', 'PluginMFeat', '--store', str(tmp_path/'s.sqlite'), '--no-progress')
    assert s.returncode == 0 and '| PluginNoOp |' in s.stdout, s.stderr[-3000:]      # sweeps (their workers too) see it

def test_broken_installed_plugin_is_named_exit_2(tmp_path):
    env = _installed_plugin(tmp_path/'site', 'raise RuntimeError("half-installed")\n', name='bnb_broken_plugin')
    r = subprocess.run([sys.executable, '-m', 'balance_nb', '--trainer', 'baseline'], cwd=tmp_path, capture_output=True, text=True, env=env)
    assert r.returncode == 2 and 'bnb_broken_plugin' in r.stderr and 'half-installed' in r.stderr and 'uninstall' in r.stderr, r.stderr[-2000:]

def test_precision_bf16_trains_and_is_recorded(tmp_path):
    r = cli('--trainer', 'OGM', '--dataset', 'MFeat', '--epochs', '1', '--precision', 'bf16', '--no-reference',
            '--modulation_starts', '0', '--out', str(tmp_path))
    assert r.returncode == 0, r.stderr[-3000:]
    rd = next(p.parent for p in tmp_path.glob('*/config.yaml'))
    import yaml
    assert yaml.safe_load((rd/'config.yaml').read_text())['precision'] == 'bf16'
    m = json.loads((rd/'metrics.json').read_text())
    assert 0.3 < m['acc'] <= 1 and all(abs(v) < 10 for k, v in m.items() if k.startswith('shapley_'))
    steps = (rd/'steps.csv').read_text().splitlines()
    assert 'ogm_coef_pix' in steps[0], steps[0]                      # OGM edited the (unscaled) gradients
