"""The library is the whole API: canvas -> analysis -> report from Python on a tiny model (no CLI), the config
dataclasses the commands parse, and tyro refusing unknown or mistyped options with one line (exit 2)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import xinc
from test_canvas import tiny_ffn
from xinc.cli.main import COMMANDS, main
from xinc.errors import XincError


@pytest.fixture(scope="module")
def ffn_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("lib")
    xinc.save_model(tiny_ffn("relu", 3), root / "ffn")
    return root / "ffn"


def test_canvas_analysis_report_from_python(ffn_dir, tmp_path):
    store = xinc.run_canvas(xinc.CanvasConfig(out=tmp_path / "canvas", model_dir=ffn_dir, layers="layer2", top=2,
                                              progress=False), verbose=False)
    rec = json.loads((store / "config.json").read_text())
    assert rec["config"]["layers"] == "layer2" and rec["command"].startswith(f"xinc canvas {ffn_dir}")
    assert (store / "canvas.zarr").is_dir() and (store / "figures" / "layer2_top.png").is_file()
    cfg = xinc.AnalyzeConfig(out=tmp_path / "run", model_dir=ffn_dir, analyses="a1,a2", mode="linear",
                             progress=False)
    results = xinc.analyze(cfg, options={"a2": {"topk": 4}})
    assert {"a1", "a2"} <= set(results) and results["canvas"]["layer1"]["modes"]["linear"]["exact"]
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["options"]["a2"]["topk"] == 4 and saved["analyses"] == ["a1", "a2"]
    assert results["a1"]["figures"]  # the registered plots drew them (xinc.report.plots.draw by default)
    html = xinc.write_report(xinc.ReportConfig(run_dir=tmp_path / "run"))
    assert html == tmp_path / "run" / "report.html" and "A1" in html.read_text()


def test_analyze_without_figures_writes_data_only(ffn_dir, tmp_path):
    res = xinc.analyze(xinc.AnalyzeConfig(out=tmp_path / "run", model_dir=ffn_dir, analyses="a1", mode="paper",
                                          progress=False), draw=None)
    assert res["a1"]["figures"] == [] and not (tmp_path / "run" / "figures" / "a1").exists()
    assert (tmp_path / "run" / "data" / "a1.npz").is_file()


def test_configs_check_their_values_when_made(tmp_path):
    with pytest.raises(XincError, match="--top 0"):
        xinc.CanvasConfig(out=tmp_path / "o", top=0)
    with pytest.raises(XincError, match="--memo-mb"):
        xinc.AnalyzeConfig(out=tmp_path / "o", memo_mb=-1.0)
    with pytest.raises(XincError, match="--frames 1"):
        xinc.SynthDatasetConfig(out=tmp_path / "o", frames=1)


def test_with_options_types_and_refuses_unknown_keys(tmp_path):
    from xinc.config import with_options

    base = xinc.CanvasConfig(out=tmp_path / "o")
    assert with_options(base, {"top": "3", "per_channel": "true"}, "canvas").top == 3
    with pytest.raises(XincError, match="unknown option 'topp'"):
        with_options(base, {"topp": 3}, "canvas")
    with pytest.raises(XincError, match="unknown option 'out'"):
        with_options(base, {"out": "x"}, "canvas", fixed={"out"})
    with pytest.raises(XincError, match="expected int"):
        with_options(base, {"top": 2.5}, "canvas")


def _one_error_line(capsys) -> str:
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1, err
    assert err[0].startswith("xinc: error: ")
    return err[0]


def _commands() -> list[list[str]]:
    return [[name, *([sub] if sub else [])] for name, (target, _) in COMMANDS.items()
            for sub in (list(target) if isinstance(target, dict) else [None])]


@pytest.mark.parametrize("cmd", _commands(), ids=" ".join)
def test_unknown_option_is_one_line_exit_2(cmd, capsys, tmp_path):
    assert main([*cmd, "--no-such-option", "1"]) == 2
    line = _one_error_line(capsys)
    assert ("--no-such-option" in line or "Missing" in line) and f"xinc {' '.join(cmd)} --help" in line
    assert "---" not in line
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("argv", [["canvas", "m", "--out", "o", "--top", "x"],
                                  ["analyze", "m", "--out", "o", "--mode", "fast"],
                                  ["report", "run", "--title"]])
def test_mistyped_option_is_one_line_exit_2(argv, capsys):
    assert main(argv) == 2
    _one_error_line(capsys)


def test_booleans_are_flags_and_old_spelling_is_deprecated(capsys):
    from xinc.cli.common import parse

    cfg = parse(xinc.CanvasConfig, ["m", "--out", "o", "--per-channel", "--no-progress"], "xinc canvas")
    assert cfg.per_channel and not cfg.progress and cfg.maps
    old = parse(xinc.CanvasConfig, ["m", "--out", "o", "--maps", "False", "--overwrite", "True"], "xinc canvas")
    assert not old.maps and old.overwrite
    assert capsys.readouterr().err.count("deprecated") == 2


def test_import_xinc_is_cheap_and_exports_the_entry_points():
    code = "import sys, xinc; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == "False"  # no torch at `import xinc`: the entry points load on first use
    for name in ("run_canvas", "analyze", "write_report", "run_pipeline", "train_ffn", "write_videos"):
        assert callable(getattr(xinc, name)), name
