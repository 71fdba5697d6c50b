"""The chapters' widgets as a learner sees them: JupyterLab in headless Chromium.

For each entry of WIDGET_CASES the test copies a solution notebook to a temporary folder, opens
it in JupyterLab (a free loopback port, its own config), runs all cells, and hands the page to
the entry's check, which asserts that the widget renders as controls and redraws when they
change. The browser's console must stay free of errors. Everything started is stopped, on
failure too. Skipped where Chromium, chromedriver or selenium are missing (.ci/run installs them).
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import lab_server
import pytest

from mi_course import cli

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
CHROMEDRIVER = shutil.which("chromedriver")
MISSING = ", ".join(name for name, found in (("Chromium", CHROMIUM), ("chromedriver", CHROMEDRIVER)) if not found)
if MISSING:
    pytest.skip(f"needs a browser: {MISSING} not found (Debian: apt-get install chromium chromium-driver)",
                allow_module_level=True)
webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (pip install selenium)")
from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select  # noqa: E402

TOKEN = "mi-course-browser-test"
RUN_TIMEOUT_S = 150
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--window-size=1280,1400",
)
# Console messages that are not errors of the page: Chromium asking for a favicon it may not find.
HARMLESS_CONSOLE = ("favicon.ico",)


# --- the chapters' widgets ------------------------------------------------------------------


def wait_for(condition: Callable[[], object], what: str, timeout_s: float = 30.0) -> object:
    """Poll until `condition()` is truthy (stale elements count as not yet) and return its value."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            value = condition()
        except StaleElementReferenceException:
            value = None
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def dropdown(driver, label: str) -> Select:
    """The ipywidgets Dropdown whose description is `label`."""
    return Select(driver.find_element(
        By.XPATH, f"//div[contains(@class, 'widget-dropdown')][label[normalize-space()='{label}']]//select"))


def check_attention_explorer(driver) -> None:
    """Chapter 3: the explorer is two dropdowns and a picture, and the picture follows them."""
    explorer = wait_for(lambda: driver.find_elements(By.XPATH, "//div[contains(@class, 'widget-vbox')]"
                                                      "[.//label[normalize-space()='layer']]"), "the explorer")[0]

    def picture() -> str:
        images = explorer.find_elements(By.CSS_SELECTOR, ".widget-output img")
        return images[0].get_attribute("src") if images else ""

    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", explorer)
    seen = [wait_for(picture, "the explorer's first picture")]
    assert seen[0].startswith("data:image/png"), seen[0][:80]
    for label, value in (("head", "1"), ("layer", "1")):
        control = dropdown(driver, label)
        assert len(control.options) > 1, f"the {label} dropdown offers {len(control.options)} option(s)"
        control.select_by_visible_text(value)
        seen.append(wait_for(lambda: picture() not in ("", *seen) and picture(), f"a new picture after {label}={value}"))
    assert len(set(seen)) == 3


@dataclass(frozen=True)
class WidgetCase:
    """A notebook to run in JupyterLab and the check of its widgets; add one per chapter."""

    notebook: str
    check: Callable[[object], None]


WIDGET_CASES = [WidgetCase("solutions/03_induction_heads.ipynb", check_attention_explorer)]


# --- JupyterLab and Chromium ----------------------------------------------------------------


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server on a free loopback port serving a fresh folder: (url, folder, marker)."""
    home = tmp_path_factory.mktemp("lab")
    folder = home / "notebooks"
    folder.mkdir()
    port = lab_server.free_port()
    command = [sys.executable, "-m", "jupyterlab", *lab_server.lab_options(port, TOKEN),
               f"--ServerApp.root_dir={folder}", "--LabApp.expose_app_in_browser=True"]
    if cli.running_as_root():
        command.append("--allow-root")
    process = lab_server.start(command, home)
    try:
        lab_server.wait_until_serving(process, home, port, TOKEN)
        yield f"http://127.0.0.1:{port}", folder, str(home)
    finally:
        lab_server.stop(process, str(home))


@pytest.fixture(scope="module")
def browser(lab):
    """Headless Chromium with a fresh profile that keeps the console log."""
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={Path(lab[2]) / 'chromium'}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def run_all_cells(driver, timeout_s: float) -> None:
    """Run every cell through JupyterLab's own command; fail with the first error's message."""
    ready = ("const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;"
             "const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;"
             "return !!(k && k.status === 'idle' && w.content.widgets.length);")
    wait_for(lambda: driver.execute_script(ready), "the notebook and its kernel", timeout_s=60)
    driver.execute_script("window.jupyterapp.commands.execute('notebook:run-all-cells');")
    state = ("const cells = window.jupyterapp.shell.currentWidget.content.widgets"
             "  .filter(c => c.model.type === 'code');"
             "for (const c of cells) for (const o of c.model.outputs.toJSON())"
             "  if (o.output_type === 'error') return 'error: ' + o.ename + ': ' + o.evalue;"
             "return cells.every(c => c.model.executionCount !== null) ? 'done' : '';")
    outcome = wait_for(lambda: driver.execute_script(state), "all cells to run", timeout_s=timeout_s)
    assert outcome == "done", outcome


def console_errors(driver) -> list[str]:
    return [entry["message"] for entry in driver.get_log("browser")
            if entry["level"] == "SEVERE" and not any(text in entry["message"] for text in HARMLESS_CONSOLE)]


@pytest.mark.parametrize("case", WIDGET_CASES, ids=lambda case: Path(case.notebook).stem)
def test_widgets_render_and_respond_in_jupyterlab(case, lab, browser, tmp_path):
    url, folder, _ = lab
    shutil.copy(ROOT / case.notebook, folder)
    name = Path(case.notebook).name
    browser.get(f"{url}/lab/tree/{name}?token={TOKEN}")
    try:
        run_all_cells(browser, RUN_TIMEOUT_S)
        outputs = browser.execute_script(
            "return [...document.querySelectorAll('.jp-OutputArea-output')].map(o => o.textContent).join('\\n');")
        assert "Error displaying widget" not in outputs
        for text_repr in ("VBox(", "HBox(", "Dropdown(", "interactive("):
            assert text_repr not in outputs, f"a widget shown as text ({text_repr}...): its front end did not load"
        case.check(browser)
        assert console_errors(browser) == []
    finally:
        screenshot = tmp_path / f"{Path(name).stem}.png"
        browser.save_screenshot(str(screenshot))
        print(f"screenshot: {screenshot}")
