"""`xinc run CONFIG` on two tiny synthetic Cityscapes-VPS clips: every step once, nothing on re-run, bad configs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from xinc.cli.main import main
from xinc.data.synth import generate_synthetic

TINY = {"dataset": "cityscapes-vps", "size": [32, 64], "device": "cpu", "seed": 0,
        "ffn": {"steps": 10, "width": 16, "eval_every": 10},
        "nerv": {"epochs": 2, "strides": [2, 2, 2], "fc_dim": 8, "lower_width": 6, "eval_every": 2},
        "canvas": {"mode": "paper", "top": 4},
        "analyze": {"analyses": "a1,a2", "mode": "linear", "sample_neurons": 3},
        "layers": {"ffn": "layer2", "nerv": "head"}, "compare": False, "progress": False}


def _write(path: Path, cfg: dict) -> str:
    path.write_text(json.dumps(cfg))
    return str(path)


def _stamps(out: Path) -> dict[str, int]:
    """mtime of every completion marker and of every step output it names."""
    marks = sorted((out / ".steps").rglob("*.json"))
    res = {str(m): m.stat().st_mtime_ns for m in marks}
    res.update({json.loads(m.read_text())["output"]: Path(json.loads(m.read_text())["output"]).stat().st_mtime_ns
                for m in marks})
    return res


def test_run_two_clips_then_skip(tmp_path, capsys):
    data = tmp_path / "data"
    generate_synthetic(data, "cityscapes-vps", seed=0, frames=5, size=(32, 64), videos=2, flo=False)
    out = tmp_path / "out"
    cfg = _write(tmp_path / "pipeline.json", {**TINY, "out": str(out), "root": str(data), "videos": "all"})
    assert main(["run", cfg]) == 0
    assert "pipeline finished: 2 clip(s)" in capsys.readouterr().out
    for clip in ("0001", "0002"):
        for kind in ("ffn", "nerv"):
            assert (out / clip / "models" / kind / "config.json").is_file()
            assert (out / clip / "canvas" / kind).is_dir()
            res = json.loads((out / clip / kind / "results.json").read_text())
            assert {"a1", "a2"} <= set(res)
        assert "<html" in (out / clip / "report.html").read_text()[:500].lower()
        assert (out / clip / "explorer.html").is_file() and (out / clip / "videos" / "nerv" / "neurons.mp4").is_file()
    assert (out / "report.html").is_file()
    for step, folder in (("canvas-ffn", "canvas/ffn"), ("analyze-nerv", "nerv"), ("train-ffn", "models/ffn")):
        mark = json.loads((out / ".steps" / "0001" / f"{step}.json").read_text())
        recorded = json.loads((out / "0001" / folder / "config.json").read_text())
        assert mark["params"]["config"]["out"] == str(out / "0001" / folder)  # the resolved config of the step
        assert mark["command"].startswith("xinc ") and "--progress" not in mark["command"]
        if step == "canvas-ffn":  # the output holds the same resolved config and the equivalent command line
            assert recorded["config"] == mark["params"]["config"] and recorded["command"] == mark["command"]
            assert recorded["config"]["top"] == 4 and recorded["config"]["frames"] == "0"
        if step == "analyze-nerv":
            assert recorded["layers"] == ["head"] and recorded["options"]["a3"]["sample_neurons"] == 3
    first = json.loads((out / "config.json").read_text())
    assert len(first["steps_run"]) == 2 * 9 + 1 and first["steps_skipped"] == []  # 9 per clip: + video, explore
    before = _stamps(out)
    assert main(["run", cfg]) == 0  # re-run: nothing executes, nothing is rewritten
    second = json.loads((out / "config.json").read_text())
    assert second["steps_run"] == [] and len(second["steps_skipped"]) == len(first["steps_run"])
    assert _stamps(out) == before


@pytest.mark.parametrize("case", ["missing", "unknown-key", "unknown-dataset", "unknown-option", "bad-json"])
def test_bad_config_one_line_exit_2(tmp_path, capsys, case):
    path = tmp_path / "pipeline.json"
    base = {"out": str(tmp_path / "out"), "root": str(tmp_path)}
    if case == "unknown-key":
        _write(path, {**base, "epochs": 3})
    elif case == "unknown-dataset":
        _write(path, {**base, "dataset": "kitti"})
    elif case == "unknown-option":
        _write(path, {**base, "ffn": {"stepz": 3}})
    elif case == "bad-json":
        path.write_text("{not json")
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("xinc: error:") and len(err.splitlines()) == 1, err
    assert not (tmp_path / "out").exists()
