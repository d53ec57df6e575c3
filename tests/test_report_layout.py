"""The report's layout rules without a browser: each figure embedded once (hero in the overview, a link in its
section), figures as WebP no wider than shown, large tables and videos referenced beside the page."""

from __future__ import annotations

import base64
import io
import json
import re

import numpy as np
import pytest
from PIL import Image

from xinc.report import overview
from xinc.report.html import build_report
from xinc.report.images import FIGURE_WIDTH, HERO_WIDTH, encode_figure


def _png(path, w, h, noisy):
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (h, w, 3), dtype=np.uint8) if noisy else np.full((h, w, 3), 200, np.uint8)
    if not noisy:
        a[:, ::7] = (30, 60, 200)  # a plot: a few colours
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a).save(path)


@pytest.fixture
def top(tmp_path):
    top = tmp_path / "demo"
    run = top / "nerv"
    _png(run / "figures" / "a1" / "maps_paper.png", 2000, 300, noisy=True)  # a hero (A1 maps)
    _png(run / "figures" / "a1" / "correlations.png", 600, 200, noisy=False)
    (run / "tables").mkdir(parents=True)
    (run / "tables" / "a1_small.csv").write_text("a,b\n1,2\n")
    (run / "tables" / "a1_big.csv").write_text("a,b\n" + "1.2345,6.789\n" * 30_000)  # ~360 kB
    res = {"model": {"kind": "nerv", "params": 10, "config": {"height": 8, "width": 16, "num_frames": 4}},
           "data": {"frames": [0, 1]},
           "a1": {"title": "Intensity", "summary": ["s"], "figures": [
               {"path": "figures/a1/maps_paper.png", "caption": "maps"},
               {"path": "figures/a1/correlations.png", "caption": "corr"}]}}
    (run / "results.json").write_text(json.dumps(res))
    vids = top / "videos" / "nerv"
    vids.mkdir(parents=True)
    (vids / "neurons.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(2000))
    (vids / "videos.json").write_text(json.dumps({"videos": {"neurons": {"files": ["neurons.mp4"], "layers": {
        "head": {"neurons": [1, 2], "how": "sampled (seed 0)"}}}}}))
    return top


def test_each_figure_once_hero_in_the_overview(top):
    page = build_report(top, top / "report.html").read_text()
    imgs = re.findall(r'<figure id="([^"]+)"[^>]*><img src="data:(image/[a-z]+);base64,([^"]+)" width="(\d+)"', page)
    assert [i[0] for i in imgs] == ["ov0-hero0", "run0-a1-fig1"]  # the hero once, in the overview
    assert 'Figure shown in the overview: <a href="#ov0-hero0">' in page  # its section links back
    (hero_mime, hero, hero_w), (plot_mime, plot, plot_w) = [(m, base64.b64decode(d), int(w)) for _, m, d, w in imgs]
    assert hero_mime == plot_mime == "image/webp" and hero_w == HERO_WIDTH and plot_w == 600 <= FIGURE_WIDTH
    assert Image.open(io.BytesIO(hero)).size == (HERO_WIDTH, 210)
    small = top / "nerv" / "figures" / "a1" / "correlations.png"
    assert encode_figure(small, "image/png", FIGURE_WIDTH).how.startswith("webp lossless")  # a plot stays exact
    assert "lossy" in encode_figure(top / "nerv" / "figures" / "a1" / "maps_paper.png", "image/png", 800).how


def test_large_tables_and_videos_are_referenced_beside_the_page(top, monkeypatch):
    page = build_report(top, top / "report.html").read_text()
    assert 'href="data:text/csv;base64,' in page and 'href="nerv/tables/a1_big.csv"' in page
    assert "data:video/mp4;base64," in page and "head: 1, 2 (sampled (seed 0))" in page
    monkeypatch.setattr(overview, "EMBED_VIDEO_BYTES", 100)
    page = build_report(top, top / "report.html").read_text()
    assert 'src="videos/nerv/neurons.mp4"' in page and "data:video/mp4" not in page
    elsewhere = top.parent / "elsewhere" / "r.html"
    elsewhere.parent.mkdir()
    page = build_report(top, elsewhere).read_text()  # not beside the runs: named, never a broken link
    assert "<video" not in page and "not embedded" in page and "nerv/tables/a1_big.csv" not in page
