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

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.xdist_group('browser'),   # one worker: one JupyterLab
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
                rows = db.execute("SELECT method, config FROM runs").fetchall()
            assert sorted(t for t, _ in rows) == ['baseline', 'unimodal', 'unimodal']
            assert all(json.loads(c)['dataset_args'] == {'audio_snr_db': 0.0} for _, c in rows)
        finally:
            try: page.evaluate("() => window.jupyterapp.shell.currentWidget.sessionContext.shutdown()")
            except Exception: pass
            browser.close()

# Records every image a notebook output area shows, as it appears or changes (a live figure is redrawn in place:
# the same <img> gets a new src, or its output is replaced by one new <img>).
RECORD_IMAGES = """() => {
  window.__renders = []; window.__maxImgs = 0;
  const seen = () => {
    const imgs = [...document.querySelectorAll('.jp-CodeCell .jp-OutputArea-output img')];
    window.__maxImgs = Math.max(window.__maxImgs, imgs.length);
    for (const i of imgs) if (i.src && window.__renders[window.__renders.length - 1] !== i.src) window.__renders.push(i.src);
  };
  new MutationObserver(seen).observe(document.body, {subtree: true, childList: true, attributes: true, attributeFilter: ['src']});
}"""

def test_live_figure_is_redrawn_in_place_in_jupyterlab(lab):
    "A method's training cell, run in JupyterLab: one figure appears and is redrawn in place as epochs pass."
    import nbformat
    base, token, root = lab
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "from balance_nb.experiment import run\n"
        "r = run(method='OGM', dataset='MFeat', epochs=4, out=None, store=None, progress=False)   # live=None: live in a kernel")],
        metadata={'kernelspec': {'name': 'python3', 'display_name': 'Python 3', 'language': 'python'}})
    nbformat.write(nb, root/'nbs'/'live_demo.ipynb')
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={'width': 1500, 'height': 1000})
            page.goto(f'{base}/lab/tree/nbs/live_demo.ipynb?token={token}&reset')
            page.wait_for_function(KERNEL_IDLE, timeout=120_000)
            page.evaluate(RECORD_IMAGES)
            page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
            page.wait_for_function(ALL_CELLS_DONE, timeout=600_000, polling=500)
            page.wait_for_function(KERNEL_IDLE, timeout=60_000)
            errors = page.locator('.jp-OutputArea-output:has-text("Traceback (most recent call last)")')
            assert errors.count() == 0, errors.first.inner_text()[-3000:]
            imgs = page.locator('.jp-CodeCell .jp-OutputArea-output img')
            assert imgs.count() == 1                                          # one figure at the end ...
            assert page.evaluate('window.__maxImgs') == 1                     # ... and never more than one on the way
            renders = page.evaluate('window.__renders')
            assert len(set(renders)) >= 2, len(set(renders))                  # the first epoch's drawing, redrawn at the end
            page.wait_for_function("() => document.querySelector('.jp-OutputArea-output img')?.naturalWidth > 800", timeout=30_000)
        finally:
            try: page.evaluate("() => window.jupyterapp.shell.currentWidget.sessionContext.shutdown()")
            except Exception: pass
            browser.close()

@pytest.fixture(scope='module')
def nbs_copy(tmp_path_factory):
    "A temporary copy of nbs/ (the pages' store, ../runs, lands next to it, not in the repository)."
    root = tmp_path_factory.mktemp('voila')
    shutil.copytree(ROOT/'nbs', root/'nbs', ignore=shutil.ignore_patterns('.ipynb_checkpoints', 'runs', '_runs'))
    return root

def voila_page(root: Path, notebook: str, check):
    "Serve `nbs/<notebook>` with the README's Voila command on a free port, open it in Chromium, run `check(page)`."
    port = free_port()
    env = {**os.environ, 'PYTHONPATH': str(ROOT), 'JUPYTER_RUNTIME_DIR': str(root/'runtime'),
           'MPLBACKEND': 'module://matplotlib_inline.backend_inline', 'JUPYTER_PLATFORM_DIRS': '1'}
    env.pop('IN_TEST', None)
    log = open(root/f'voila-{port}.log', 'w')
    proc = subprocess.Popen([sys.executable, '-m', 'voila', f'nbs/{notebook}', '--no-browser', '--Voila.ip=127.0.0.1',
                             f'--port={port}', '--Voila.port_retries=0', '--show_tracebacks=True'], cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 120
        while True:
            try:
                urllib.request.urlopen(f'http://127.0.0.1:{port}/voila/static/', timeout=5); break
            except urllib.error.HTTPError: break                 # the server answers
            except OSError: pass
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"Voila did not start:\n{(root/f'voila-{port}.log').read_text()[-3000:]}")
            time.sleep(0.5)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            try:
                page = browser.new_page(viewport={'width': 1500, 'height': 1000})
                page.goto(f'http://127.0.0.1:{port}/', timeout=900_000)   # Voila runs every cell before it answers
                try: page.locator('.bnb-dashboard').first.wait_for(state='visible', timeout=600_000)
                except Exception as e:
                    raise AssertionError(f"no dashboard on the Voila page of {notebook}; the page says:\n"
                                         f"{page.locator('body').inner_text()[-3000:]}\nVoila's log:\n"
                                         f"{(root/f'voila-{port}.log').read_text()[-3000:]}") from e
                check(page)
            finally: browser.close()
    finally:
        proc.terminate()
        try: proc.wait(30)
        except subprocess.TimeoutExpired: proc.kill(); proc.wait()
        log.close()

def test_voila_lesson_page_has_prose_dashboard_and_test_figures(nbs_copy):
    "30_compare served with Voila: the lesson's text and figures, the dashboard in the middle, the test runs' figures after it."
    def check(page):
        text = page.locator('body').inner_text()
        assert 'Traceback' not in text and 'error when executing cell' not in text, text[-3000:]
        for heading in ('Compare methods: the dashboard', 'Pictures of a comparison', 'The dashboard', 'Tests', 'Try it'):
            assert heading in text, heading
        assert 'def plot_comparison' not in text                         # no code on the page
        order = page.evaluate("""() => {
            const all = [...document.querySelectorAll('h2, .bnb-dashboard, img')];
            return all.map(e => e.tagName === 'H2' ? 'h2:' + e.textContent.trim().replace(/¶$/, '') :
                                e.classList.contains('bnb-dashboard') ? 'dashboard' :
                                e.closest('.bnb-dashboard') ? null : 'img').filter(x => x);
        }""")
        dash = order.index('dashboard')
        assert 'img' in order[:dash] and order[dash + 1:].count('img') >= 2, order   # figures before and after it
        assert any(o.startswith('h2:Tests') for o in order[dash:]), order
    voila_page(nbs_copy, '30_compare.ipynb', check)

def test_voila_teacher_page_is_the_dashboard_alone(nbs_copy):
    def check(page):
        text = page.locator('body').inner_text()
        assert 'Compare balancing methods' in text and 'Traceback' not in text
        assert page.locator('.bnb-dashboard').count() == 1 and page.locator('button.bnb-run').count() == 1
        for lesson in ('Pictures of a comparison', 'Tests', 'Try it', 'CompareDashboard'):
            assert lesson not in text, lesson                              # none of the lesson around it
        assert page.locator('h2').count() == 0
    voila_page(nbs_copy, 'dashboard.ipynb', check)
