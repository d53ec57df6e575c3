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


def _as_previous_release(out: Path, changed: str | None = None) -> None:
    """Rewrite a finished run as an interrupted run of the previous release left it: markers named
    .steps/<clip>__<name>.json (pipeline-wide: <name>.json), keys hashed the old way over params + "after" stamps
    of upstream markers, no folder marker and no config.json yet (the old run wrote it last). `changed`: one step
    whose recorded parameters differ (as if run with other options)."""
    import hashlib

    marks = {}
    for p in sorted((out / ".steps").rglob("*.json")):
        rec = json.loads(p.read_text())
        marks[rec["step"]] = rec
        p.unlink()
    for d in sorted((out / ".steps").glob("*/")):
        d.rmdir()
    (out / ".xinc-output.json").unlink()
    (out / "config.json").unlink()
    old_keys = {}
    for sid in sorted(marks, key=lambda s: ("/" in s, "train" not in s)):  # synth, then train before the rest
        rec = marks[sid]
        params = dict(rec["params"])
        command = rec["command"]
        if sid == changed:  # other options: other parameters and another command line
            params["changed"] = True
            command += " --seed 1"
        clip, _, name = sid.rpartition("/")
        up = f"{clip}/train-{name.split('-')[1]}" if name.startswith(("canvas-", "analyze-")) else None
        after = [["synth", old_keys["synth"], "2026-01-01T00:00:00Z", 1.0]] if name.startswith("train-") else []
        after += [[up, old_keys[up], "2026-01-01T00:00:00Z", 1.0]] if up in old_keys else []
        if after:
            params["after"] = after
        key = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]
        old_keys[sid] = key
        (out / ".steps" / f"{sid.replace('/', '__')}.json").write_text(json.dumps(
            {"key": key, "step": sid, "output": rec["output"], "params": params, "command": command,
             "seconds": 1.0, "finished": "2026-01-01T00:00:00Z"}))


@pytest.mark.parametrize("changed", [None, "0001/train-ffn"])
def test_rerun_recognises_previous_release_markers(tmp_path, changed):
    """A re-run over an interrupted run of the previous release skips the steps it completed (and writes today's
    markers, keeping the old records); a step recorded with other parameters reruns, and so do its dependants."""
    cfg = {**TINY, "models": ["ffn"], "report": False, "out": str(tmp_path / "out"),
           "synthetic": {"videos": 1, "frames": 5}}
    path = _write(tmp_path / "pipeline.json", cfg)
    assert main(["run", path]) == 0
    out = tmp_path / "out"
    first = json.loads((out / "config.json").read_text())["steps_run"]
    _as_previous_release(out, changed)
    old_files = sorted(p.name for p in (out / ".steps").glob("*.json"))
    assert main(["run", path]) == 0
    again = json.loads((out / "config.json").read_text())
    if changed is None:
        assert again["steps_run"] == [] and sorted(again["steps_skipped"]) == sorted(first)
    else:  # the changed step and what depends on it (canvas, analyze, explore of that model) rerun
        assert changed in again["steps_run"] and "synth" in again["steps_skipped"]
        assert {"0001/canvas-ffn", "0001/analyze-ffn"} <= set(again["steps_run"])
    for sid in again["steps_skipped"]:
        clip, _, name = sid.rpartition("/")
        rec = json.loads((out / ".steps" / (f"{clip}/{name}" if clip else name)).with_suffix(".json").read_text())
        assert rec["format"] == 2 and rec["legacy"]["step"] == sid
    assert set(old_files) <= {p.name for p in (out / ".steps").glob("*.json")}  # old records never removed
