"""The analysis registry's streaming helpers: given canvases driven like the engine, options, variants."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import pytest
import torch

import xinc.analysis as analysis_pkg
from xinc.analysis import (
    ANALYSES,
    AnalysisContext,
    AnalysisResult,
    discover,
    load_result,
    make_options,
    register_analysis,
    run,
    stream_tensors,
    variants,
)
from xinc.analysis.registry import UNAVAILABLE, normalize_mode
from xinc.canvas.reduce import Collect, HeatMap
from xinc.errors import XincError
from xinc.report import plots


def test_stream_tensors_chunks_and_frames():
    maps = torch.randn(2, 7, 3, 4)
    col = Collect()
    stream_tensors(maps, [col], frames=[5, 9], chunk=3)
    out = col.result()
    assert sorted(out) == [5, 9] and torch.equal(out[9], maps[1])


def test_ctx_stream_on_given_canvases_logs_layer(tmp_path):
    maps = torch.randn(1, 6, 4, 5)
    ctx = AnalysisContext(model=None, model_dir=tmp_path, layers=["L"], frames=[3], images=torch.rand(1, 3, 4, 5),
                          out=tmp_path, canvases={"linear": {"L": maps[0]}}, chunk_neurons=4)
    (hm,) = ctx.stream("L", [HeatMap()], canvas_mode="linear")
    assert torch.allclose(hm.result()[3], maps[0].abs().sum(0), atol=1e-6)
    assert ctx.canvas_log["linear/L"]["num_neurons"] == 6 and "3" in ctx.canvas_log["linear/L"]["residual"]
    with pytest.raises(XincError):
        ctx.stream("M", [HeatMap()], canvas_mode="linear")


def test_variants_and_deprecated_names(capsys):
    assert variants("both") == [("paper", "paper"), ("linear", "linear")]
    assert normalize_mode("paper") == "paper" and capsys.readouterr().err == ""
    assert normalize_mode("corrected") == "linear"
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "deprecated" in err[0] and "--mode linear" in err[0]
    with pytest.raises(XincError):
        variants("exact")
    with pytest.raises(XincError):
        normalize_mode("exact")


def test_every_analysis_module_is_discovered_without_a_list():
    found = discover()
    assert set(found) >= {"a1", "a2", "a3", "a4", "a5", "a6"}
    for aid, a in found.items():
        assert a.title and a.module.startswith("xinc.analysis.") and dataclasses.is_dataclass(a.options)
        assert isinstance(make_options(aid, {}), a.options)  # defaults are valid
    assert set(plots.discover()) >= set(found) - set(UNAVAILABLE)


def test_no_matplotlib_under_analysis():
    root = Path(analysis_pkg.__file__).parent
    for f in root.glob("*.py"):
        assert "matplotlib" not in f.read_text(), f


@dataclasses.dataclass
class _Opts:
    renamed: ClassVar[dict[str, str]] = {"old": "n"}
    n: int = 3
    rate: float = 0.5
    flag: bool = False
    name: str = "x"
    cap: int | None = None
    kind: Literal["a", "b"] = "a"


def test_typed_options_and_a_new_plugin(tmp_path, capsys):
    """A plug-in registered at run time: typed options, unknown/mistyped ones fail, its result is saved."""

    @register_analysis("zz_test", "Test plug-in", options=_Opts)
    def _run(ctx, opts):
        return AnalysisResult({"n": opts.n, "cap": opts.cap}, {"m": np.arange(opts.n)}, {"t": [{"a": 1, "b": 2}]},
                          [f"n={opts.n}"])

    try:
        o = make_options("zz_test", {"n": "4", "rate": 1, "flag": "yes", "cap": "none", "kind": "b"})
        assert (o.n, o.rate, o.flag, o.cap, o.kind) == (4, 1.0, True, None, "b")
        assert make_options("zz_test", {"old": 5}).n == 5 and "deprecated" in capsys.readouterr().err
        for bad, what in (({"m": 1}, "zz_test.m"), ({"n": "four"}, "zz_test.n"), ({"n": 1.5}, "zz_test.n"),
                          ({"flag": "maybe"}, "zz_test.flag"), ({"name": 3}, "zz_test.name"),
                          ({"kind": "c"}, "zz_test.kind")):
            with pytest.raises(XincError, match=what):
                make_options("zz_test", bad)
        ctx = AnalysisContext(model=None, model_dir=None, layers=[], frames=[0], images=torch.rand(1, 3, 2, 2),
                              out=tmp_path)
        res = run(ctx, ["zz_test"], {"zz_test": {"n": 2}})["zz_test"]
        assert res.numbers == {"n": 2, "cap": None}
        back = load_result(tmp_path, "zz_test")
        assert back.numbers == {"n": 2, "cap": None, } and back.summary == ["n=2"]
        assert back.arrays["m"].tolist() == [0, 1] and back.tables["t"] == [{"a": "1", "b": "2"}]
        with pytest.raises(XincError, match="unknown"):
            run(ctx, ["nope"])
    finally:
        ANALYSES.pop("zz_test", None)
