"""The run report in a real browser: headless Chromium driven over the DevTools protocol.

Checks that the page loads with no console errors, that the verdict and the plots are
visible, that the report's own script works and that a script injected through model text
never runs. Skips when Chromium (Debian's `chromium`, see .ci/install_chromium.sh) or
`websocket-client` (the `dev` extra) is missing. Set FAITHCHECK_SCREENSHOT_DIR to keep the
screenshots."""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from faithcheck.report.compare import render_comparison
from faithcheck.report.html import render_run

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--remote-debugging-port=0", "--window-size=1280,900")
TIMEOUT_S = 60


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    pytest.skip("chromium not installed: run .ci/install_chromium.sh (apt-get install chromium)")


class Page:
    """A minimal DevTools-protocol client for one page: commands in, events collected."""

    def __init__(self, ws):
        self.ws = ws
        self.ids = itertools.count(1)
        self.events: list[dict] = []

    def send(self, method: str, **params) -> dict:
        msg_id = next(self.ids)
        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise AssertionError(f"DevTools {method} failed: {msg['error']}")
                return msg.get("result", {})
            self._event(msg)
        raise AssertionError(f"DevTools {method}: no answer in {TIMEOUT_S} s")

    def _event(self, msg: dict) -> None:
        if "method" not in msg:
            return
        self.events.append(msg)
        if msg["method"] == "Page.javascriptDialogOpening":  # an alert() ran: dismiss it so the page goes on
            self.ws.send(json.dumps({"id": next(self.ids), "method": "Page.handleJavaScriptDialog",
                                     "params": {"accept": True}}))

    def wait_for(self, method: str) -> dict:
        deadline = time.monotonic() + TIMEOUT_S
        for msg in self.events:
            if msg["method"] == method:
                return msg
        while time.monotonic() < deadline:
            msg = json.loads(self.ws.recv())
            self._event(msg)
            if msg.get("method") == method:
                return msg
        raise AssertionError(f"page never sent {method} within {TIMEOUT_S} s")

    def eval(self, expression: str):
        res = self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in res:
            raise AssertionError(f"evaluating {expression!r} threw: {res['exceptionDetails']}")
        return res["result"].get("value")

    def errors(self) -> list[str]:
        out = []
        for msg in self.events:
            p = msg.get("params", {})
            if msg["method"] == "Runtime.exceptionThrown":
                out.append(f"exception: {p.get('exceptionDetails', {}).get('text')}")
            elif msg["method"] == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append(f"console.{p['type']}: {[a.get('value') for a in p.get('args', [])]}")
            elif msg["method"] == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                out.append(f"log: {p['entry'].get('text')} ({p['entry'].get('url', '')})")
        return out

    def dialogs(self) -> list[str]:
        return [m["params"].get("message", "") for m in self.events if m["method"] == "Page.javascriptDialogOpening"]


@pytest.fixture
def browser(tmp_path: Path):
    """Open a file in a fresh headless Chromium; yields `open(path) -> Page`."""
    websocket = pytest.importorskip("websocket", reason="websocket-client missing: pip install faithcheck[dev]")
    chromium = _chromium()
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    proc = subprocess.Popen([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sockets = []
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + TIMEOUT_S
        while not (port_file.exists() and port_file.read_text().strip()):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"chromium did not start (exit {proc.poll()})")
            time.sleep(0.2)
        port = int(port_file.read_text().split()[0])

        def open_page(path: Path) -> Page:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
                target = next(t for t in json.load(r) if t["type"] == "page")
            ws = websocket.create_connection(target["webSocketDebuggerUrl"], timeout=TIMEOUT_S, suppress_origin=True)
            sockets.append(ws)
            page = Page(ws)
            for domain in ("Page", "Runtime", "Log"):
                page.send(f"{domain}.enable")
            page.send("Page.navigate", url=path.resolve().as_uri())
            page.wait_for("Page.loadEventFired")
            return page

        yield open_page
    finally:
        for ws in sockets:
            ws.close()
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _screenshot(page: Page, path: Path) -> Path:
    shot = page.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
    path.write_bytes(base64.b64decode(shot["data"]))
    keep = os.environ.get("FAITHCHECK_SCREENSHOT_DIR")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(keep) / path.name)
    return path


def test_run_report_in_browser(browser, malicious_run: Path, tmp_path: Path) -> None:
    page = browser(render_run(malicious_run))
    assert page.eval("document.readyState") == "complete"
    assert page.eval("document.querySelector('[data-testid=verdict-label]').innerText") == "Post-hoc rationalization"
    visible_plots = page.eval(
        "Array.from(document.querySelectorAll('svg.plot')).filter(s => s.getBoundingClientRect().width > 100 "
        "&& s.getBoundingClientRect().height > 50).length")
    assert visible_plots >= 3, f"expected the accuracy and two curve plots visible, saw {visible_plots}"
    _screenshot(page, tmp_path / "run-report.png")

    # the report's own script (allowed by hash) works: expand every item
    page.eval("document.querySelector('button[data-action=expand]').click()")
    assert page.eval("Array.from(document.querySelectorAll('details.item')).every(d => d.open)")
    text = page.eval("document.body.innerText")
    assert "<script>window.__pwned=1</script>" in text, "model text must be shown as text"
    assert '<a href="javascript:alert(1)">' in text and "<img src=x onerror=alert(1)>" in text
    assert page.eval("typeof window.__pwned") == "undefined", "an injected script ran"
    assert page.eval("document.querySelectorAll('img, textarea, a[href^=javascript]').length") == 0
    time.sleep(0.5)  # let any late onerror handler fire before counting dialogs and errors
    page.eval("1")
    assert page.dialogs() == [], f"an injected alert() ran: {page.dialogs()}"
    assert page.errors() == [], f"console errors: {page.errors()}"
    _screenshot(page, tmp_path / "run-report-expanded.png")


def test_comparison_report_in_browser(browser, make_run, tmp_path: Path, malicious_cot: str) -> None:
    a = make_run(tmp_path / "a", cot=malicious_cot)
    b = make_run(tmp_path / "b", same=lambda i, p: i % 4 != 0, correct=lambda i, p: True, label="load_bearing")
    page = browser(render_comparison([a, b], tmp_path / "cmp"))
    labels = page.eval("Array.from(document.querySelectorAll('.verdict .label')).map(e => e.innerText)")
    assert labels == ["Post-hoc rationalization", "Load-bearing CoT"]
    assert page.eval("document.querySelectorAll('svg.plot').length") >= 2
    assert page.eval("typeof window.__pwned") == "undefined"
    assert page.dialogs() == [] and page.errors() == [], f"{page.dialogs()} {page.errors()}"
    _screenshot(page, tmp_path / "comparison-report.png")


WIDTHS = (1024, 1400, 1920)
# Every card's content: no table, plot or figure reaches past the card's inner edge, and no
# card scrolls sideways (a clipped table behind an inner scrollbar counts as too wide).
OVERFLOW_JS = """
(() => {
  const bad = [];
  document.querySelectorAll('.card').forEach((card, i) => {
    const name = card.id || ('card ' + i);
    const cs = getComputedStyle(card), box = card.getBoundingClientRect();
    const inner = box.right - parseFloat(cs.paddingRight) - parseFloat(cs.borderRightWidth);
    if (card.scrollWidth > card.clientWidth + 1)
      bad.push(name + ' scrolls sideways: ' + card.scrollWidth + ' > ' + card.clientWidth);
    card.querySelectorAll('table, svg.plot, figure').forEach(el => {
      const r = el.getBoundingClientRect();
      if (r.width > 0 && r.right > inner + 1)
        bad.push(el.tagName.toLowerCase() + ' in ' + name + ' ends at ' + Math.round(r.right) + ' > ' + Math.round(inner));
    });
  });
  return bad;
})()
"""


def _at_width(page: Page, width: int) -> None:
    page.send("Emulation.setDeviceMetricsOverride", width=width, height=900, deviceScaleFactor=1, mobile=False)
    page.eval("document.body.offsetWidth")  # force the new layout before measuring


def _assert_fits(page: Page, tmp_path: Path, name: str) -> None:
    for width in WIDTHS:
        _at_width(page, width)
        assert page.eval("window.innerWidth") == width
        bad = page.eval(OVERFLOW_JS)
        _screenshot(page, tmp_path / f"{name}-{width}.png")
        assert bad == [], f"{name} at {width} px: {bad}"


def _long_winded(run_dir: Path, *, drop_curves: bool = False) -> Path:
    """A run whose texts are as long as real ones get: long paths, evidence keys and controls."""
    summary_path = run_dir / "summary.json"
    s = json.loads(summary_path.read_text())
    for flag in s["verdict"]["flags"]:
        flag["evidence"]["translation.round_trip_same_as_baseline_vs_format_control"] = {
            **s["probes"]["paraphrase"], "control": "format_control same-answer rate on the same items (exact McNemar)"}
    if drop_curves:  # a run that measured no curve and no accuracy: left out of the plots
        for probe in ("early_answering", "mistakes"):
            s["probes"][probe]["curve"] = []
        s["accuracy"] = {k: {"estimate": None, "ci_low": None, "ci_high": None, "n": 0} for k in s["accuracy"]}
    summary_path.write_text(json.dumps(s))
    return run_dir


def test_run_report_fits_its_cards_at_every_width(browser, make_run, tmp_path: Path) -> None:
    run = _long_winded(make_run(tmp_path / "run", model="hf:/models/" + "very-long-checkpoint-name-" * 4 + "final"))
    page = browser(render_run(run))
    page.eval("document.querySelector('button[data-action=expand]').click()")
    _assert_fits(page, tmp_path, "run-report")


def test_comparison_of_four_runs_fits_and_leaves_out_runs_without_data(browser, make_run, tmp_path: Path) -> None:
    runs = [_long_winded(make_run(tmp_path / name, model=f"organism:{name}-" + "x" * 40, label=label,
                                  same=lambda i, p, k=k: (i + k) % 3 != 0), drop_curves=(name == "c"))
            for k, (name, label) in enumerate([("a", "load_bearing"), ("b", "post_hoc_rationalization"),
                                              ("c", "inconclusive"), ("d", "encoded_reasoning")])]
    page = browser(render_comparison(runs, tmp_path / "cmp"))
    _assert_fits(page, tmp_path, "comparison-report")
    # run C measured no curve and no accuracy: named under the plots as not plotted, absent from their legends
    notes = page.eval("Array.from(document.querySelectorAll('#accuracy .muted, [id^=probe-] .muted')).map(e => e.innerText)")
    assert sum("not plotted" in n and "run C" in n for n in notes) == 3, notes
    html = (tmp_path / "cmp" / "report.html").read_text()
    assert html.count('class="plot"') == 3
    for figure in page.eval("Array.from(document.querySelectorAll('figure.plotbox')).map(f => f.innerHTML)"):
        assert figure.count("<g id=\"legend_") == 1  # one legend per plot, drawn as paths (run names are not text)
