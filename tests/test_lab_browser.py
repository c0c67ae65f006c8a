"""The notebooks' explorers, live in JupyterLab in Chromium, as a student uses them.

For every notebook with an explorer (a cell that builds one of ``tadlab.widgets``' explorers) the test opens a
temporary copy of the notebook in JupyterLab (profile "smoke", so the cells above the explorer take seconds, and no
stored outputs), waits for an idle kernel, runs every cell above the explorer and waits until each has finished,
runs the explorer's own, then moves each slider's handle with the mouse and with the
arrow keys. Each time the slider's readout and the figure must change, the figure must never be blank in between
(the same image element stays on screen with a height above zero in every animation frame), and a range slider's
other handle must stay where it was. No "Error displaying widget" may appear, nor a widget error in the console.

JupyterLab runs on 127.0.0.1 with a random token, its config, data, runtime, settings and workspace folders in a
temporary directory; Chromium is the system's (Playwright's own browsers cannot be downloaded here). Outside CI the
test skips, naming what is missing; in CI (CI=true) a missing piece fails it. Every process it starts is stopped,
also when it fails.

TADLAB_LAB_SCREENSHOT=1 also saves figures/02_explorer_jupyterlab.png, notebook 02's explorer live (for README).
"""
import contextlib
import importlib.util
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
EXPLORER_CALL = re.compile(r"\b\w*Explorer\(")  # a cell that builds a tadlab.widgets explorer
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
RUN_TIMEOUT_S = 600  # running a notebook's cells up to its explorer, on a loaded 2-core machine
REDRAW_TIMEOUT_S = 120
SCREENSHOT = ROOT / "figures" / "02_explorer_jupyterlab.png"
# JupyterLab user settings for the test: every cell in the page (no windowing), no news or update prompts
SETTINGS = {"@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
            "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                                "checkForUpdates": False}}


def explorer_cells() -> dict[str, int]:
    """``{notebook name: index of its first explorer cell}`` for every notebook that has one."""
    found = {}
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        cells = nbformat.read(path, as_version=4).cells
        for index, cell in enumerate(cells):
            if cell.cell_type == "code" and EXPLORER_CALL.search(cell.source):
                found[path.name] = index
                break
    return found


EXPLORERS = explorer_cells()


def chromium_path() -> str | None:
    """$TADLAB_CHROMIUM when set, else the system's chromium; None when that is not an executable file."""
    path = os.environ.get("TADLAB_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    return path if path and os.path.isfile(path) and os.access(path, os.X_OK) else None


def missing_requirements() -> list[str]:
    missing = []
    if importlib.util.find_spec("playwright") is None:
        missing.append("the Python package playwright (make browser, or pip install -e '.[browser]')")
    if importlib.util.find_spec("jupyterlab") is None:
        missing.append("the Python package jupyterlab (make browser, or pip install -e '.[lab]')")
    if chromium_path() is None:
        missing.append("a chromium binary (apt-get install chromium, or set TADLAB_CHROMIUM)")
    return missing


@pytest.fixture(scope="module")
def requirements():
    missing = missing_requirements()
    if missing:
        message = "the browser test needs " + "; ".join(missing)
        if os.environ.get("CI"):
            pytest.fail(message + " (CI installs them: see .ci/run)")
        pytest.skip(message)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def copy_notebooks(target: Path) -> None:
    """A copy of notebooks/ at profile "smoke" (their parameters cell edited), so running the cells takes seconds,
    with no outputs and no execution counts: a cell's count then says that it ran in this session."""
    target.mkdir(parents=True)
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        parameters = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
        assert 'profile = "ci"' in parameters.source
        parameters.source = parameters.source.replace('profile = "ci"', 'profile = "smoke"')
        for cell in nb.cells:
            if cell.cell_type == "code":
                cell.outputs, cell.execution_count = [], None
        nbformat.write(nb, target / path.name)


def our_processes(marker: str) -> list[int]:
    """Pids of the processes whose command line names ``marker`` (our temporary folder), e.g. kernels."""
    pids = []
    for entry in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):
            if marker.encode() in (entry / "cmdline").read_bytes() and int(entry.name) != os.getpid():
                pids.append(int(entry.name))
    return pids


def stop(process: subprocess.Popen, marker: str) -> None:
    """Stop JupyterLab (SIGTERM: it shuts its kernels down), then anything left that runs from our folder."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    for pid in our_processes(marker):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def jupyterlab(requirements, tmp_path_factory):
    """JupyterLab serving a temporary copy of the notebooks: ``(base URL, token)``."""
    root = tmp_path_factory.mktemp("jupyterlab")
    notebooks = root / "notebooks"
    copy_notebooks(notebooks)
    jupyter = {name: root / name for name in ("config", "data", "runtime", "workspaces", "settings", "ipython")}
    for name, content in SETTINGS.items():
        path = jupyter["settings"] / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(content))
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(jupyter["config"]), JUPYTER_DATA_DIR=str(jupyter["data"]),
               JUPYTER_RUNTIME_DIR=str(jupyter["runtime"]), JUPYTERLAB_WORKSPACES_DIR=str(jupyter["workspaces"]),
               JUPYTERLAB_SETTINGS_DIR=str(jupyter["settings"]), IPYTHONDIR=str(jupyter["ipython"]),
               OMP_NUM_THREADS="1")
    token, port = secrets.token_hex(16), free_port()
    log = (root / "jupyterlab.log").open("w")
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ServerApp.ip=127.0.0.1",
               f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
               f"--ServerApp.root_dir={notebooks}", "--LabApp.extension_manager=readonly",
               "--ServerApp.terminals_enabled=False"]
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if process.poll() is not None:
                pytest.fail(f"JupyterLab exited ({process.returncode}):\n{(root / 'jupyterlab.log').read_text()}")
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=5) as answer:
                    if answer.status == 200:
                        break
            if time.monotonic() > deadline:
                pytest.fail(f"JupyterLab did not answer in 180 s:\n{(root / 'jupyterlab.log').read_text()}")
            time.sleep(0.5)
        yield base, token
    finally:
        stop(process, str(root))
        log.close()


@pytest.fixture(scope="module")
def browser(jupyterlab, tmp_path_factory):
    """A Chromium context of Playwright's, with an empty profile; closed (and its driver stopped) at the end."""
    from playwright.sync_api import sync_playwright

    profile = tmp_path_factory.mktemp("chromium-profile")
    playwright = sync_playwright().start()
    try:
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=chromium_path(), headless=True, args=CHROMIUM_FLAGS,
            viewport={"width": 1400, "height": 950})
        try:
            yield context
        finally:
            context.close()
    finally:
        playwright.stop()


# JavaScript run in the page. The watcher records, every animation frame, the explorer image's height and whether
# it is still the element that was there when the watch began: a redraw that empties the output area shows up as a
# height of 0 or as a new element.
FIGURE = ".jp-OutputArea-output img"  # the explorer's figure: the last image in the explorer cell's output
WATCH_START = """cell => {
    const FIGURE = '""" + FIGURE + """';
    const image = () => [...cell.querySelectorAll(FIGURE)].pop();
    const watch = {first: image(), minHeight: Infinity, replaced: false, frames: 0, running: true};
    const tick = () => {
        const now = image();
        watch.minHeight = Math.min(watch.minHeight, now ? now.getBoundingClientRect().height : 0);
        watch.replaced = watch.replaced || now !== watch.first;
        watch.frames += 1;
        if (watch.running) requestAnimationFrame(tick);
    };
    window.__tadlabWatch = watch;
    requestAnimationFrame(tick);
}"""
FIGURE_CHANGED = """([cell, src]) => { const im = [...cell.querySelectorAll('""" + FIGURE + """')].pop();
    return im !== undefined && im.getAttribute('src') !== src && im.complete && im.naturalWidth > 0; }"""
WATCH_STOP = """() => { const w = window.__tadlabWatch; w.running = false;
    return {minHeight: w.minHeight, replaced: w.replaced, frames: w.frames}; }"""


# The input prompts of the code cells above cell number `index` (non-empty ones): "[ ]:" not run, "[*]:" queued or
# running, "[3]:" done.
PROMPTS_ABOVE = """(panel, index) => [...panel.querySelectorAll('.jp-Cell')].slice(0, index)
    .filter(c => c.classList.contains('jp-CodeCell') && c.querySelector('.cm-content').innerText.trim() !== '')
    .map(c => c.querySelector('.jp-InputPrompt').innerText.trim())"""
DONE = re.compile(r"^\[\d+\]:$")


def kernel_state(base, token, name) -> str | None:
    """The execution state of the kernel of notebook ``name`` (JupyterLab's sessions API), None before it has one."""
    with urllib.request.urlopen(f"{base}/api/sessions?token={token}", timeout=10) as answer:
        sessions = json.load(answer)
    return next((s["kernel"]["execution_state"] for s in sessions if s["path"].endswith(name)), None)


def wait_until(condition, timeout_s, what, log) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen in {timeout_s} s; browser console:\n" + "\n".join(log[-30:]))
        time.sleep(0.5)


def fail_on_traceback(page) -> None:
    error = page.locator(".jp-OutputArea-output", has_text="Traceback (most recent call last)")
    if error.count():
        pytest.fail(f"a cell raised while running up to the explorer:\n{error.first.inner_text()[-3000:]}")


def run_up_to(page, panel, index, kernel, log) -> None:
    """Run every code cell above cell number ``index`` (Run menu) and wait until each has its execution count and
    the kernel is idle, then run the cell itself (Shift+Enter). Under load the menu can act before the kernel is
    ready: the kernel must be idle first, and the menu is used again when no cell above has started."""
    cell = panel.locator(".jp-Cell").nth(index)
    prompts = lambda: panel.evaluate(PROMPTS_ABOVE, index)  # noqa: E731
    wait_until(lambda: kernel() == "idle", 180, "the kernel becoming idle", log)
    for _ in range(3):
        cell.locator(".jp-InputPrompt").first.click()
        page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
        page.locator(".lm-Menu-itemLabel", has_text="Run All Above Selected Cell").click()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and all(p == "[ ]:" for p in prompts()):
            time.sleep(0.5)
        if not all(p == "[ ]:" for p in prompts()):
            break

    def above_done():
        fail_on_traceback(page)
        return all(DONE.match(p) for p in prompts()) and kernel() == "idle"

    wait_until(above_done, RUN_TIMEOUT_S, "running every cell above the explorer", log)
    cell.locator(".jp-InputPrompt").first.click()
    page.keyboard.press("Shift+Enter")


def wait_for_explorer(page, cell, log) -> None:
    """Wait until the explorer's image is shown; fail early with the traceback when a cell raises."""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    image, slider = cell.locator(FIGURE).last, cell.locator(".widget-slider")
    while time.monotonic() < deadline:  # the slider and a loaded image: the live explorer
        if slider.count() and image.count() and image.evaluate("im => im.complete && im.naturalWidth > 0"):
            return
        fail_on_traceback(page)
        time.sleep(1)
    pytest.fail(f"the explorer did not appear in {RUN_TIMEOUT_S} s; browser console:\n" + "\n".join(log[-30:]))


def move_and_check(page, cell, slider, which, action, describe) -> None:
    """Do ``action()`` on a slider; the readout and the figure must change, the figure never blank, and any
    other handle of the slider stay put."""
    readout = slider.locator(".widget-readout")
    image = cell.locator(FIGURE).last
    before_text, before_src = readout.inner_text(), image.get_attribute("src")
    before_png = image.screenshot()
    cell.evaluate(WATCH_START)
    action()
    page.wait_for_function(FIGURE_CHANGED, arg=[cell.element_handle(), before_src], timeout=REDRAW_TIMEOUT_S * 1000)
    page.wait_for_timeout(300)  # a few more frames after the swap
    watch = page.evaluate(WATCH_STOP)
    after_text = readout.inner_text()
    assert after_text != before_text, f"{describe}: the readout stayed {before_text!r}"
    assert image.screenshot() != before_png, f"{describe}: the figure looks the same"
    assert watch["frames"] > 3 and watch["minHeight"] > 0 and not watch["replaced"], \
        f"{describe}: the figure was blank or replaced during the redraw ({watch})"
    if which == "upper":  # a range slider's readout reads "3.3 – 17.1": its start must not move
        start, start_after = before_text.split(" – ")[0], after_text.split(" – ")[0]
        assert start_after == start, f"{describe}: moving the end moved the start from {start} to {start_after}"


@pytest.mark.parametrize("name", sorted(EXPLORERS), ids=lambda n: n[:2])
def test_explorer_live_in_jupyterlab(jupyterlab, browser, name):
    base, token = jupyterlab
    page = browser.new_page()
    log = []
    page.on("console", lambda message: log.append(f"{message.type}: {message.text}"))
    page.on("pageerror", lambda error: log.append(f"pageerror: {error}"))
    try:
        page.goto(f"{base}/lab/tree/{name}?reset&token={token}")  # reset: only this notebook open
        panel = page.locator(".jp-NotebookPanel:visible")
        panel.locator(".jp-Cell").first.wait_for(timeout=120_000)
        panel.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").wait_for(timeout=120_000)
        cell = panel.locator(".jp-Cell").nth(EXPLORERS[name])
        run_up_to(page, panel, EXPLORERS[name], lambda: kernel_state(base, token, name), log)
        wait_for_explorer(page, cell, log)
        sliders = cell.locator(".widget-slider")
        assert sliders.count() >= 1, "the explorer has no slider"
        for i in range(sliders.count()):
            slider = sliders.nth(i)
            handles = slider.locator(".noUi-handle")
            handle = handles.nth(handles.count() - 1)  # a range slider's end; the only handle otherwise
            which = "upper" if handles.count() > 1 else "only"
            slider.scroll_into_view_if_needed()
            track = slider.locator(".noUi-target").bounding_box()

            def toward_the_middle():  # +1 or -1: so that the handle never presses against an end of the track
                box = handle.bounding_box()
                return 1 if box["x"] + box["width"] / 2 < track["x"] + track["width"] / 2 else -1

            def drag():
                box = handle.bounding_box()
                x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
                page.mouse.move(x, y)
                page.mouse.down()
                page.mouse.move(x + 45 * toward_the_middle(), y, steps=8)
                page.mouse.up()

            move_and_check(page, cell, slider, which, drag, f"{name}, slider {i}, mouse")

            def arrow_key():
                handle.focus()
                page.keyboard.press("ArrowRight" if toward_the_middle() > 0 else "ArrowLeft")

            move_and_check(page, cell, slider, which, arrow_key, f"{name}, slider {i}, keyboard")
        if os.environ.get("TADLAB_LAB_SCREENSHOT") and name.startswith("02"):
            save_screenshot(page, cell)
        assert page.get_by_text("Error displaying widget").count() == 0
        widget_errors = [line for line in log if line.startswith(("error", "pageerror"))
                         and ("widget" in line.lower() or "model not found" in line)]
        assert not widget_errors, "widget errors in the browser console:\n" + "\n".join(widget_errors)
    finally:
        page.close()


def save_screenshot(page, cell) -> None:
    """Notebook 02's explorer with the JupyterLab around it, for README."""
    cell.scroll_into_view_if_needed()
    box = cell.bounding_box()
    panel = page.locator(".jp-NotebookPanel:visible").bounding_box()
    top = max(panel["y"], box["y"] - 40)
    page.screenshot(path=str(SCREENSHOT), clip={"x": panel["x"], "y": top, "width": panel["width"],
                                                "height": min(box["height"] + 60, 1000)})
