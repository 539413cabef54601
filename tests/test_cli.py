"The command line, end to end, in a subprocess (as a user runs it)."
import json, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]

def cli(*args, cwd=None):
    return subprocess.run([sys.executable, '-m', 'balance_nb', *args], cwd=cwd or ROOT, capture_output=True, text=True,
                          env={**__import__('os').environ, 'PYTHONPATH': str(ROOT), 'IN_TEST': '1'})

def test_help_lists_trainers_and_datasets():
    r = cli('--help')
    assert r.returncode == 0 and 'baseline' in r.stdout and 'AVDigits' in r.stdout and 'MFeat' in r.stdout

def test_unknown_trainer_exit_2():
    r = cli('--trainer', 'Nope')
    assert r.returncode == 2 and 'Valid trainers:' in r.stderr

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
              ('trainer', 3, 'nomethod'), ('dataset', [1], 'nodata'), ('hparams', 3, 'x'), ('dataset_args', 'x', 3)]
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

@pytest.mark.parametrize('trainer,hp,value', _hparam_cases())
def test_every_hyperparameter_typed_and_ranged(trainer, hp, value, tmp_path):
    code, err = run_main('--trainer', trainer, '--dataset', 'MFeat', '--hp', f'{hp}={value}', '--out', str(tmp_path))
    assert code == 2 and 'Traceback' not in err and f'hyper-parameter {hp}' in err, (trainer, hp, value, err)

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

def test_tensorboard_writes_events_or_says_what_to_install(tmp_path):
    import importlib.util
    code, err = run_main('--dataset', 'MFeat', '--epochs', '1', '--no-reference', '--tensorboard', '--out', str(tmp_path))
    if importlib.util.find_spec('tensorboard') is None:
        assert code == 2 and 'pip install tensorboard' in err and 'Traceback' not in err
    else:
        assert code == 0 and list(tmp_path.glob('*/tensorboard/events.out.tfevents.*'))

def test_progress_files_follow_a_run(tmp_path):
    import json as _json
    code, err = run_main('--dataset', 'MFeat', '--epochs', '2', '--no-reference', '--out', str(tmp_path))
    assert code == 0, err
    run_dir = next(p for p in tmp_path.iterdir() if p.is_dir())
    prog = _json.loads((run_dir/'progress.json').read_text())
    assert prog['state'] == 'finished' and prog['epoch'] == prog['epochs'] == 2 and 'acc' in prog['last_epoch']
    yml = (run_dir/'config.yaml').read_text()
    assert 'torch_threads' in yml and 'torch_version' in yml
