"""`xinc demo --quick` end to end, then the report in headless Chromium (every image loads, no JS errors)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from xinc.cli.main import main

CHROMIUM = Path("/usr/bin/chromium")


def _chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess:
    base = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={profile}"]
    return subprocess.run(base + args, capture_output=True, text=True, timeout=120)


def test_quick_demo_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--quick", "--no-progress"]) == 0
    assert "report:" in capsys.readouterr().out
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["demo"]["quick"] and cfg["commands"]
    for kind in ("ffn", "nerv"):
        res = json.loads((out / kind / "results.json").read_text())
        assert (out / kind / "config.json").is_file()
        assert {"a1", "a2", "a3", "a5", "a6"} <= set(res)
        for v in ("paper", "linear"):  # the demo opts in to A2's neurons-needed (shows every statistic)
            for sec in (res["a2"].get(v) or {}).values():
                assert sec.get("empty") or sec["neurons_needed"]["0.5"]["median_bounds"][0] >= 1
    nerv = json.loads((out / "nerv" / "results.json").read_text())
    assert nerv["a4"]["flow_method"].startswith("file")  # the synthetic clip's exact flow
    assert all(v["auroc"] is not None for v in nerv["a4"]["layers"].values())
    html = (out / "report.html").read_text()
    assert "A4 — " in html and "A6 — " in html and "http://" not in html.split("<body>")[1]
    assert main(["demo", "--out", str(out), "--quick", "--no-progress"]) == 0  # re-run: every step skipped
    assert json.loads((out / "config.json").read_text())["steps_run"] == []
    if not CHROMIUM.is_file():
        pytest.skip("headless Chromium not installed at /usr/bin/chromium (apt-get install chromium)")
    dom = _chromium(["--virtual-time-budget=5000", "--dump-dom", (out / "report.html").as_uri()], tmp_path / "p1")
    m = re.search(r'<div id="xinc-status"[^>]*>', dom.stdout)
    assert m, dom.stderr[-2000:]
    attrs = dict(re.findall(r'data-([a-z]+)="([^"]*)"', m.group(0)))
    assert int(attrs["images"]) > 5 and attrs["loaded"] == attrs["images"]
    assert attrs["broken"] == "[]" and attrs["errors"] == "[]"
    shot = tmp_path / "shot.png"
    _chromium(["--window-size=1280,2000", f"--screenshot={shot}", (out / "report.html").as_uri()], tmp_path / "p2")
    assert shot.is_file() and shot.stat().st_size > 10_000
    shutil.rmtree(tmp_path / "p1", ignore_errors=True)
    _fits_1280(out / "report.html", tmp_path)


def _fits_1280(page: Path, tmp_path: Path) -> None:
    """At a 1280 px window, with every <details> open, nothing is wider than the page: no horizontal scrolling
    of the page, and no table, figure or text block cut off or scrolling inside itself."""
    from browser import chrome

    driver = chrome(tmp_path)
    try:
        driver.set_window_size(1280, 1000)
        driver.get(page.as_uri())
        driver.execute_script("document.querySelectorAll('details').forEach(d => d.open = true)")
        doc = driver.execute_script("const e=document.documentElement; return [e.scrollWidth, e.clientWidth]")
        assert doc[0] <= doc[1], doc
        wide = driver.execute_script(
            "const W=document.querySelector('main').getBoundingClientRect().right;"
            "return [...document.querySelectorAll('main table, main pre, main figure, main img, main video, main p')]"
            ".filter(e => e.getBoundingClientRect().right > W + 1 || e.scrollWidth > e.clientWidth + 1)"
            ".map(e => e.tagName + '.' + e.className + ' ' + (e.id || e.textContent.slice(0, 40)))")
        assert wide == []
        n = driver.execute_script("return document.querySelectorAll('main table').length")
        assert n >= 5  # the check saw the run tables, completeness tables and key numbers
    finally:
        driver.quit()
