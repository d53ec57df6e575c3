"""A1 intensity and edges on constructed canvases."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xinc.analysis import run
from xinc.analysis.intensity import a1_correlations, a1_maps, edge_map, intensity_map
from xinc.analysis.registry import AnalysisContext, stream_tensors
from xinc.errors import XincError
from xinc.report.plots import draw


def _image(H=16, W=24):
    g = torch.Generator().manual_seed(0)
    img = torch.zeros(3, H, W)
    img[:, :, W // 2:] = 0.8
    img[0, : H // 2] += 0.1
    return (img + 0.05 * torch.rand(3, H, W, generator=g)).clamp(0, 1)


def test_intensity_is_sum_of_minmax_normalised_channels():
    img = torch.tensor([[[0.2, 0.4]], [[0.6, 0.2]], [[0.2, 0.2]]])  # (3, 1, 2): min 0.2, max 0.6
    assert np.allclose(intensity_map(img), [[0.0 + 1.0 + 0.0, 0.5 + 0.0 + 0.0]])


def test_canvas_equal_to_intensity():
    img = _image()
    inten = intensity_map(img)
    K = 5
    signs = torch.tensor([1.0, -1.0, 1.0, -1.0, 1.0])[:, None, None]
    maps = signs * torch.from_numpy(inten).float()[None] / K  # |C| sums to the intensity
    from xinc.canvas.reduce import HeatMap

    (hm,) = stream_tensors(maps, [HeatMap()], chunk=2)
    heat = hm.result()[0].numpy()
    c = a1_correlations(heat, img)
    assert c["pearson_intensity"] == pytest.approx(1.0, abs=1e-6)
    assert c["spearman_intensity"] == pytest.approx(1.0, abs=1e-6)
    m = a1_maps(heat, img)
    assert np.abs(m["difference"]).max() < 1e-6


def test_canvas_equal_to_edges():
    img = _image()
    e = edge_map(img)
    c = a1_correlations(e * 3.0, img)
    assert c["pearson_edges"] == pytest.approx(1.0, abs=1e-9)
    assert c["spearman_edges"] == pytest.approx(1.0, abs=1e-9)
    assert e[:, 11:13].mean() > 10 * e[:, :8].mean()  # the vertical boundary is an edge


def test_constant_heat_gives_none():
    c = a1_correlations(np.ones((4, 4)), _image(4, 4))
    assert c["pearson_intensity"] is None and c["spearman_edges"] is None


def test_run_on_given_canvases(tmp_path):
    img = _image()[None]
    maps = torch.from_numpy(intensity_map(img[0])).float()[None, None].repeat(1, 3, 1, 1)
    ctx = AnalysisContext(model=None, model_dir=tmp_path, layers=["head"], frames=[0], images=img, out=tmp_path,
                          canvases={"head": maps}, mode="both")
    res = run(ctx, ["a1"])["a1"]
    assert res.numbers["layers"]["paper"]["head"]["pearson_intensity"] == pytest.approx(1.0, abs=1e-6)
    figs = draw("a1", res, tmp_path)
    assert len(figs) == 3 and all(f.path.is_file() for f in figs)
    assert (tmp_path / "figures" / "a1" / "maps_paper.pdf").is_file()
    assert any("head" in s for s in res.summary)
    with pytest.raises(XincError, match="a1.keep"):
        run(ctx, ["a1"], {"a1": {"keep": False}})
