"""The explorer: per-pixel top-k against a brute-force canvas, safe embedding of untrusted run values, the size
budget, and the page in headless Chromium (loads cleanly; a clicked pixel shows the values Python computed)."""

from __future__ import annotations

import csv
import json
import re

import pytest
import torch

from xinc.canvas import compute_canvas, stream_canvas
from xinc.canvas.sampling import sample_neurons
from xinc.cli.main import main
from xinc.explore.build import build_payload, neuron_numbers
from xinc.explore.data import ExploreLimits, PixelTopK, decode_pixel, pool
from xinc.explore.page import safe_json
from xinc.models import NeRV, nerv_config_for_budget, save_model


def _tiny():
    from xinc.models import NeRVConfig

    cfg = NeRVConfig(height=16, width=32, num_frames=3, fc_hw=[2, 4], fc_dim=6, strides=[4, 2], kernel_sizes=[3, 3],
                     widths=[6, 4])
    return NeRV(cfg, torch.Generator().manual_seed(0)).eval()


@pytest.mark.parametrize("size", [(16, 32), (8, 16)])
def test_pixel_topk_matches_brute_force(size):
    model = _tiny()
    keep = [2, 7]
    red = PixelTopK(5, size, keep)
    stream_canvas(model, "block2", [1], [red], chunk_neurons=7)  # several chunks: the running top-k is merged
    r = red.result()
    maps = compute_canvas(model, "block2", 1).maps
    pooled = torch.nn.functional.adaptive_avg_pool2d(maps[:, None], size)[:, 0]
    top = torch.topk(pooled.abs(), 5, dim=0).indices
    assert torch.equal(r["idx"], top)
    assert torch.allclose(r["val"], pooled.gather(0, top), atol=1e-6)
    assert torch.allclose(r["heat"], pooled.abs().sum(0), rtol=1e-5)
    assert torch.allclose(r["maps"], pooled[keep], atol=1e-6)
    assert torch.allclose(pool(maps, size), pooled)


def test_safe_json_cannot_close_the_script():
    evil = {"name": "</script><script>alert(1)</script><!--", "x": "\u2028&"}
    text = safe_json(evil)
    assert "<" not in text and ">" not in text and "&" not in text and "\u2028" not in text
    assert json.loads(text) == evil


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from xinc.data.synth import generate_synthetic

    d = tmp_path_factory.mktemp("explore")
    cfg = generate_synthetic(d / "data", "cityscapes-vps", seed=0, frames=10, size=(32, 32), things=2)
    nc = nerv_config_for_budget(height=32, width=32, num_frames=10, strides=[2, 2], embed="pe_1.25_8", fc_dim=4)
    save_model(NeRV(nc, torch.Generator().manual_seed(0)), d / "model")
    out = d / "runs" / "nerv"
    assert main(["analyze", str(d / "model"), "--dataset", "cityscapes-vps", "--root", str(d / "data"), "--video",
                 cfg["video_ids"][0], "--out", str(out), "--analyses", "a3,a6", "--layers", "block2,head",
                 "--mode", "linear", "--no-progress", "--seed", "5"]) == 0
    # an untrusted value in the run: a category name that tries to end the page's script
    path = out / "tables" / "a3_sampled_cells.csv"
    rows = list(csv.DictReader(path.open()))
    rows[0]["category"] = "</script><script>window.PWNED=1</script>"
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return d / "runs"


def test_payload_is_bounded_and_uses_the_shared_sample(run_dir):
    lim = ExploreLimits(width=16, topk=4, frames=2, maps=5, sampled=3)
    p = build_payload(run_dir, lim)
    (m,) = p["models"]
    assert m["frames"] == [4, 9] and p["budget"]["mb"] < 1
    head = next(L for L in m["layers"] if L["name"] == "head")
    assert head["size"] == [16, 16] and head["topk"] == 4 and len(head["neurons"]) == 5
    assert head["sampled"] == sample_neurons(head["num_neurons"], 3, 5)  # the run's seed
    res = json.loads((run_dir / "nerv" / "results.json").read_text())
    a3 = res["a3"]["linear"]["head"]["sampled_neurons"]
    assert set(a3) <= set(sample_neurons(head["num_neurons"], 6, 5))  # the report's A3 sample: same permutation
    nums = neuron_numbers(run_dir / "nerv")
    assert all("a6" in v for v in nums["head"].values())
    with pytest.raises(Exception, match="budget"):
        build_payload(run_dir, lim, max_mb=0.001)


def test_same_seed_same_neurons_in_videos_explorer_and_report(run_dir, tmp_path):
    """One seed, one sample: the neurons video, the explorer's sampled maps, the report's video caption and A3's
    sampled neurons name the same neurons of each layer (the run's seed 5, 6 neurons)."""
    from xinc.models.io import load_model
    from xinc.report.overview import videos_block
    from xinc.video.data import choose_neurons

    vdir = tmp_path / "v"
    assert main(["video", str(run_dir.parent / "model"), "--out", str(vdir), "--neurons", "6", "--frames", "0-1",
                 "--seed", "5", "--layers", "block2,head", "--no-fluctuation", "--no-progress"]) == 0
    shown = {la: e["neurons"] for la, e in json.loads((vdir / "videos.json").read_text())["videos"]["neurons"]
             ["layers"].items()}
    payload = build_payload(run_dir, ExploreLimits(width=16, topk=4, frames=2, maps=8, sampled=6))
    explorer = {L["name"]: L["sampled"] for L in payload["models"][0]["layers"]}
    res = json.loads((run_dir / "nerv" / "results.json").read_text())
    caption = videos_block(vdir, "t")
    model = load_model(run_dir.parent / "model")
    for layer in ("block2", "head"):
        K = choose_neurons(model, layer, n=6, seed=5, given=None, mode="paper").info.num_neurons
        expected = sample_neurons(K, 6, 5)
        a3 = res["a3"]["linear"][layer]
        assert shown[layer] == expected and explorer[layer] == expected
        assert f"{layer}: {', '.join(map(str, expected))} (sampled (seed 5))" in caption  # the report's overview
        maps = torch.stack([compute_canvas(model, layer, f, mode="linear").maps for f in res["a3"]["frames"]])
        alive = [k for k in expected if float(maps[:, k].abs().max()) > 0]
        assert set(alive) <= set(a3["sampled_neurons"])  # A3 skips only neurons without any contribution
        if len(alive) == len(expected):
            assert a3["sampled_neurons"] == expected


def test_explorer_in_chromium(run_dir, tmp_path):
    from browser import chrome, severe_logs

    out = tmp_path / "explorer.html"
    assert main(["explore", str(run_dir), "--out", str(out), "--width", "32", "--frames", "2", "--no-progress"]) == 0
    text = out.read_text()
    assert "<script>window.PWNED" not in text and "http://" not in text and "https://" not in text
    data = json.loads(re.search(r'<script type="application/json" id="xinc-data">(.*?)</script>', text, re.S)[1])
    driver = chrome(tmp_path)
    try:
        driver.get(out.as_uri())
        from selenium.webdriver.common.action_chains import ActionChains
        from selenium.webdriver.support.ui import Select, WebDriverWait

        status = driver.find_element("id", "xinc-explorer-status")
        WebDriverWait(driver, 20).until(lambda d: status.get_attribute("data-ready") == "1")
        Select(driver.find_element("id", "layer")).select_by_visible_text("head")
        layer = next(L for L in data["models"][0]["layers"] if L["name"] == "head")
        h, w = layer["size"]
        canvas = driver.find_element("id", "heat")
        rect = driver.execute_script("arguments[0].scrollIntoView({block: 'center'});"
                                     "return arguments[0].getBoundingClientRect().toJSON()", canvas)
        y, x = 5, 20
        ActionChains(driver).move_to_element_with_offset(
            canvas, (x + 0.5) / w * rect["width"] - rect["width"] / 2,
            (y + 0.5) / h * rect["height"] - rect["height"] / 2).click().perform()
        bars = driver.find_element("id", "bars")
        assert bars.get_attribute("data-pixel") == f"{y},{x}"
        shown = json.loads(bars.get_attribute("data-values"))
        want = decode_pixel(layer, data["models"][0]["frames"][0], y, x)
        assert [k for k, _ in shown] == [k for k, _ in want]
        assert [v for _, v in shown] == pytest.approx([v for _, v in want], rel=1e-9, abs=1e-12)
        driver.find_elements("css selector", "#bars .row")[0].click()
        assert driver.find_element("id", "ntitle").text.startswith("head neuron k=")
        driver.find_element("css selector", "#neuronlist button").click()
        assert int(driver.find_element("id", "nmap").get_attribute("width")) == w
        driver.execute_script("const f=document.getElementById('frame');f.value=1;f.dispatchEvent(new Event('input'))")
        assert "frame 9" in driver.find_element("id", "framelabel").text
        assert driver.execute_script("return window.PWNED") is None
        assert status.get_attribute("data-errors") == "[]" and severe_logs(driver) == []
        driver.save_screenshot(str(tmp_path / "explorer.png"))
    finally:
        driver.quit()


def test_report_overview_embeds_videos_that_play(run_dir, tmp_path):
    from browser import chrome, severe_logs
    from xinc.report.html import build_report

    vids = run_dir / "videos" / "nerv"
    if not vids.is_dir():
        assert main(["video", str(run_dir.parent / "model"), "--out", str(vids), "--neurons", "2", "--frames", "0-3",
                     "--seed", "5", "--no-progress"]) == 0
    html = build_report(run_dir, tmp_path / "report.html")
    text = html.read_text()
    assert text.count("<video ") == 2 and 'id="overview"' in text and "data:video/mp4;base64," in text
    meta = json.loads((vids / "videos.json").read_text())
    res = json.loads((run_dir / "nerv" / "results.json").read_text())
    a3 = res["a3"]["linear"]["head"]["sampled_neurons"]
    assert set(meta["videos"]["neurons"]["layers"]["head"]["neurons"]) <= set(a3)  # same seed: A3's neurons
    driver = chrome(tmp_path)
    try:
        driver.get(html.as_uri())
        from selenium.webdriver.support.ui import WebDriverWait

        states = WebDriverWait(driver, 60).until(lambda d: d.execute_script(
            "const v=[...document.querySelectorAll('video')];"
            "return v.length && v.every(x=>x.readyState>=2) ? v.map(x=>[x.readyState,x.duration,x.videoWidth]) : null"))
        assert all(s[0] >= 2 and s[1] > 0 and s[2] > 0 for s in states)
        status = driver.find_element("id", "xinc-status")
        assert status.get_attribute("data-errors") == "[]" and severe_logs(driver) == []
        assert status.get_attribute("data-loaded") == status.get_attribute("data-images")
    finally:
        driver.quit()


def test_explore_refuses_bad_input(tmp_path, capsys, run_dir):
    assert main(["explore", str(tmp_path / "nope"), "--out", str(tmp_path / "e.html")]) == 2
    assert main(["explore", str(tmp_path), "--out", str(tmp_path / "e.html")]) == 2  # no results.json
    assert main(["explore", str(run_dir), "--topk", "0"]) == 2
    mine = tmp_path / "notes.html"
    mine.write_text("<html>my own notes</html>")
    assert main(["explore", str(run_dir), "--out", str(mine), "--no-progress"]) == 2
    assert mine.read_text() == "<html>my own notes</html>"  # never replaced: xinc did not write it
    errs = [line for line in capsys.readouterr().err.splitlines() if line]
    assert len(errs) == 4 and all(e.startswith("xinc: error: ") for e in errs)
