"""Which AV-Digits setting shows the harm of joint training? One run per line of JSON (method, seed, epochs, data knobs).

    python benchmarks/avdigits_noisy_check.py METHOD SEED EPOCHS '{"audio_snr_db": 0, "image_pool": 2, "image_noise": 0.2}' ['{"modality": "audio"}']
    python benchmarks/avdigits_noisy_check.py --table benchmarks/avdigits_noisy_check.jsonl   # the markdown summary

Runs were made two at a time with one thread each (OMP_NUM_THREADS=1), no result store, test split."""
import json, sys, time
from collections import defaultdict

def one(method, seed, epochs, da, hp):
    from balance_nb.experiment import run
    t = time.time()
    r = run(method=method, dataset='AVDigits', dataset_args=da, hparams=hp, seed=seed, epochs=epochs, out=None, store=None,
            progress=False, live=False)
    keep = ('acc', 'probe', 'shapley', 'imb')
    return {'method': method, 'seed': seed, 'epochs': epochs, 'da': da, 'hp': hp, 'sec': round(time.time() - t, 1),
            **{k: round(v, 3) for k, v in r.metrics.items() if isinstance(v, float) and k.startswith(keep)}}

def table(path):
    rows = defaultdict(list)
    for line in open(path):
        d = json.loads(line)
        s = d['da']; name = d['method'] + (f" ({d['hp']['modality']})" if d['hp'].get('modality') else '')
        rows[(s.get('audio_snr_db'), s.get('image_pool'), s.get('image_noise'), d.get('epochs', 4), name)].append(d)
    out = ['| audio SNR dB | image pool | image noise | epochs | method | seeds | acc | acc audio | acc visual | probe audio | probe visual | φ audio | φ visual | imbalance |',
           '|---:|---:|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|']
    mean = lambda ds, k: sum(d.get(k, float('nan')) for d in ds) / len(ds)
    for (snr, pool, noise, ep, name), ds in sorted(rows.items(), key=lambda kv: tuple(str(x) for x in kv[0])):
        cells = [f"{mean(ds, k):.3f}" if all(k in d for d in ds) else '–' for k in
                 ('acc', 'acc_audio', 'acc_visual', 'probe_acc_audio', 'probe_acc_visual', 'shapley_audio', 'shapley_visual', 'imbalance')]
        out.append(f"| {snr} | {pool} | {noise} | {ep} | {name} | {','.join(str(d['seed']) for d in sorted(ds, key=lambda d: d['seed']))} | " + ' | '.join(cells) + ' |')
    return '\n'.join(out)

if __name__ == '__main__':
    if sys.argv[1] == '--table': print(table(sys.argv[2])); sys.exit()
    method, seed, epochs, da = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), json.loads(sys.argv[4])
    print(json.dumps(one(method, seed, epochs, da, json.loads(sys.argv[5]) if len(sys.argv) > 5 else {})))
