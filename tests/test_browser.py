"""The comparison dashboard in a real browser: JupyterLab on 127.0.0.1 + Debian's Chromium driven by Playwright.

Runs all cells of nbs/30_compare.ipynb (a copy), picks a noisier audio setting and two methods, clicks Run and
checks the rendered table and figure. Skipped only when chromium or playwright is missing (setup.sh installs both).
"""
import json, os, re, secrets, shutil, socket, subprocess, sys, time, urllib.request
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = next((p for p in ('/usr/bin/chromium', '/usr/lib/chromium/chromium') if Path(p).exists()), shutil.which('chromium'))
try:
    from playwright.sync_api import sync_playwright, expect
except ImportError: sync_playwright = None

pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install -y chromium, or bash setup.sh)"),
              pytest.mark.skipif(sync_playwright is None, reason="the playwright Python package is not installed (pip install -e '.[dev]')")]

ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-background-networking',
        '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-default-apps']

def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

@pytest.fixture(scope='module')
def lab(tmp_path_factory):
    "A JupyterLab server over a temporary copy of nbs/, with its own Jupyter dirs; yields (base url, token, root)."
    root = tmp_path_factory.mktemp('lab')
    shutil.copytree(ROOT/'nbs', root/'nbs', ignore=shutil.ignore_patterns('.ipynb_checkpoints', 'runs', '_runs'))
    cfg = root/'jupyter_config'
    (cfg/'labconfig').mkdir(parents=True)
    (cfg/'labconfig'/'page_config.json').write_text(json.dumps(
        {'disabledExtensions': {'@jupyterlab/apputils-extension:announcements': True}}))
    env = {**os.environ, 'PYTHONPATH': str(ROOT), 'JUPYTER_CONFIG_DIR': str(cfg), 'JUPYTER_RUNTIME_DIR': str(root/'runtime'),
           'JUPYTER_DATA_DIR': str(root/'data'), 'MPLBACKEND': 'module://matplotlib_inline.backend_inline', 'JUPYTER_PLATFORM_DIRS': '1'}
    env.pop('IN_TEST', None)
    port, token = free_port(), secrets.token_hex(16)
    log = open(root/'lab.log', 'w')
    proc = subprocess.Popen([sys.executable, '-m', 'jupyter', 'lab', '--no-browser', '--allow-root', '--ip=127.0.0.1',
                             f'--port={port}', f'--IdentityProvider.token={token}', f'--ServerApp.root_dir={root}',
                             '--LabApp.expose_app_in_browser=True', '--ServerApp.port_retries=0'],
                            cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f'http://127.0.0.1:{port}'
    try:
        deadline = time.time() + 120
        while True:
            try:
                if urllib.request.urlopen(f'{base}/api/status?token={token}', timeout=5).status == 200: break
            except OSError: pass
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"JupyterLab did not start:\n{(root/'lab.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield base, token, root
    finally:
        proc.terminate()
        try: proc.wait(30)
        except subprocess.TimeoutExpired: proc.kill(); proc.wait()
        log.close()

KERNEL_IDLE = "() => window.jupyterapp?.shell.currentWidget?.sessionContext?.session?.kernel?.status === 'idle'"
# every code cell has run — or one failed (then run-all stops, and the test reports the traceback at once)
ALL_CELLS_DONE = ("() => { const ps = [...document.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')];"
                  " const failed = [...document.querySelectorAll('.jp-OutputArea-output')].some("
                  "o => o.textContent.includes('Traceback (most recent call last)'));"
                  " return failed || (ps.length > 0 && ps.every(p => /\\[\\d+\\]/.test(p.textContent))); }")

def test_dashboard_in_jupyterlab(lab, tmp_path):
    base, token, root = lab
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={'width': 1500, 'height': 1000})
            page.goto(f'{base}/lab/tree/nbs/30_compare.ipynb?token={token}&reset')
            page.wait_for_function(KERNEL_IDLE, timeout=120_000)
            page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
            status = page.locator('.bnb-status').first
            expect(status).to_have_text(re.compile(r'^1 runs: baseline on AVDigits \(default knobs\)'), timeout=300_000)
            page.wait_for_function(ALL_CELLS_DONE, timeout=900_000, polling=1000)   # the notebook's own tests ran in the kernel
            page.wait_for_function(KERNEL_IDLE, timeout=60_000)
            errors = page.locator('.jp-OutputArea-output:has-text("Traceback (most recent call last)")')
            assert errors.count() == 0, errors.first.inner_text()[-3000:]

            dash = page.locator('.bnb-dashboard').first
            dash.scroll_into_view_if_needed()
            snr = page.locator('.bnb-snr .noUi-handle').first
            snr.focus()
            for _ in range(4): snr.press('ArrowRight')                  # clean → 20 → 10 → 5 → 0 dB
            expect(page.locator('.bnb-snr .widget-readout').first).to_have_text('0 dB', timeout=30_000)
            ep = page.locator('.bnb-epochs .noUi-handle').first
            ep.focus(); ep.press('ArrowLeft')                            # 2 → 1 epoch: keep the browser run short
            expect(page.locator('.bnb-epochs .widget-readout').first).to_have_text('1', timeout=30_000)
            page.locator('.bnb-method-unimodal input[type=checkbox]').first.check()
            expect(status).to_have_text(re.compile(r'^3 runs: baseline, unimodal on AVDigits audio_snr_db=0\.0'), timeout=30_000)

            page.locator('button.bnb-run').first.click()
            expect(status).to_have_text(re.compile(r'^done: 3 runs \(3 trained, 0 from the store\)'), timeout=900_000)

            table = page.locator('.bnb-table table').first
            expect(table).to_be_visible()
            heads = table.locator('th').all_inner_texts()
            assert heads[:5] == ['Method', 'Acc', 'F1', 'Acc audio', 'Acc visual'], heads
            names = table.locator('tbody tr td:first-child').all_inner_texts()
            assert names == ['unimodal (audio)', 'unimodal (visual)', 'baseline'], names
            accs = [float(re.match(r'[\d.]+', c).group()) for c in table.locator('tbody tr td:nth-child(2)').all_inner_texts()]
            assert all(10 < a <= 100 for a in accs), accs                  # better than chance (10 classes), in %
            fig = page.locator('img.bnb-figure').first
            fig.scroll_into_view_if_needed()
            page.wait_for_function("() => document.querySelector('img.bnb-figure')?.naturalWidth > 800", timeout=60_000)
            assert page.locator('.bnb-progress .progress-bar').first.is_visible()

            shot = tmp_path/'dashboard.png'
            dash.screenshot(path=str(shot))
            assert shot.stat().st_size > 20_000
            if os.environ.get('BNB_SCREENSHOT'): shutil.copy(shot, os.environ['BNB_SCREENSHOT'])

            # the runs landed in the notebook's store (../runs next to the copied nbs/)
            import sqlite3
            with sqlite3.connect(root/'runs'/'results.sqlite') as db:
                rows = db.execute("SELECT trainer, config FROM runs").fetchall()
            assert sorted(t for t, _ in rows) == ['baseline', 'unimodal', 'unimodal']
            assert all(json.loads(c)['dataset_args'] == {'audio_snr_db': 0.0} for _, c in rows)
        finally:
            try: page.evaluate("() => window.jupyterapp.shell.currentWidget.sessionContext.shutdown()")
            except Exception: pass
            browser.close()
