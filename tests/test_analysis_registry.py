"""The analysis registry's streaming helpers: given canvases driven like the engine, options, variants."""

from __future__ import annotations

import pytest
import torch

from xinc.analysis.registry import AnalysisContext, stream_tensors, variants
from xinc.canvas.reduce import Collect, HeatMap
from xinc.errors import XincError


def test_stream_tensors_chunks_and_frames():
    maps = torch.randn(2, 7, 3, 4)
    col = Collect()
    stream_tensors(maps, [col], frames=[5, 9], chunk=3)
    out = col.result()
    assert sorted(out) == [5, 9] and torch.equal(out[9], maps[1])


def test_ctx_stream_on_given_canvases_logs_layer(tmp_path):
    maps = torch.randn(1, 6, 4, 5)
    ctx = AnalysisContext(model=None, model_dir=tmp_path, layers=["L"], frames=[3], images=torch.rand(1, 3, 4, 5),
                          out=tmp_path, canvases={"linear": {"L": maps[0]}}, chunk_neurons=4,
                          options={"a9": {"x": 1}, "a9_y": 2})
    (hm,) = ctx.stream("L", [HeatMap()], canvas_mode="linear")
    assert torch.allclose(hm.result()[3], maps[0].abs().sum(0), atol=1e-6)
    assert ctx.canvas_log["linear/L"]["num_neurons"] == 6 and "3" in ctx.canvas_log["linear/L"]["residual"]
    with pytest.raises(XincError):
        ctx.stream("M", [HeatMap()], canvas_mode="linear")
    assert ctx.option("a9", "x", 0) == 1 and ctx.option("a9", "y", 0) == 2 and ctx.option("a9", "z", 7) == 7


def test_variants():
    assert variants("both") == [("faithful", "paper"), ("corrected", "linear")]
    with pytest.raises(XincError):
        variants("exact")
