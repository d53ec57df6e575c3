"""`xinc run --backend ray` on three tiny synthetic clips (local Ray, 2 CPUs): the same outputs as the serial
backend, a failed task retried, and a re-run after a failed run skipping exactly the completed steps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'xinc[ray]')")

from xinc.pipeline import PipelineConfig, Plan, execute, run_pipeline  # noqa: E402

TINY = {"dataset": "cityscapes-vps", "size": [32, 32], "device": "cpu", "seed": 0, "models": ["ffn"],
        "synthetic": {"videos": 3, "frames": 5}, "ffn": {"steps": 10, "width": 8, "eval_every": 10},
        "canvas": {"mode": "paper", "top": 2}, "analyze": {"analyses": "a1", "mode": "both"},
        "layers": {"ffn": "layer2"}, "compare": False, "report": False, "progress": False}


@pytest.fixture(scope="module")
def local_ray():
    import sys

    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import this test module
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def _outputs(out: Path) -> dict[str, bytes]:
    """Every file a clip step wrote (models, canvas arrays, tables, PNG figures, results with the run folder's path
    taken out), minus records of the run itself (timings, argv, PDF creation dates)."""
    skip = {"config.json", "metrics.json", "zarr.json", ".xinc-output.json"}
    res = {}
    for p in sorted(out.glob("0*/**/*")):
        if p.is_file() and p.name not in skip and p.suffix != ".pdf" and ".steps" not in p.parts:
            data = p.read_bytes()
            text = p.suffix in (".json", ".html")
            res[str(p.relative_to(out))] = data.replace(str(out).encode(), b"OUT") if text else data
    return res


def test_ray_equals_serial_and_skips_on_rerun(tmp_path, local_ray):
    serial = run_pipeline(PipelineConfig(**{**TINY, "out": str(tmp_path / "s")}), backend="serial")
    par = run_pipeline(PipelineConfig(**{**TINY, "out": str(tmp_path / "r")}), backend="ray")
    assert sorted(par["steps_run"]) == sorted(serial["steps_run"])
    assert len(par["steps_run"]) == 1 + 3 * 4  # synth; train, canvas, analyze, explore per clip
    a, b = _outputs(tmp_path / "s"), _outputs(tmp_path / "r")
    assert len(a) > 30 and a.keys() == b.keys()
    assert [k for k in a if a[k] != b[k]] == []
    workers = json.loads((tmp_path / "r" / "ray_workers.json").read_text())
    pids = workers["worker_pid"]
    assert len(pids) == len(par["steps_run"]) - 1 and len(set(pids.values())) == len(pids)  # a process per step
    # each task ran under the default worker budget (its analyze step recorded the lowered memo) and reported
    # its own peak RSS
    assert workers["worker_memory_mb"] == 3000 and workers["max_peak_rss_mb"] == max(workers["worker_peak_rss_mb"]
                                                                                     .values()) > 0
    memo = json.loads((tmp_path / "r" / "0001" / "ffn" / "config.json").read_text())["memory"]
    assert memo["budget_mb"] == 3000 and memo["memo_mb"] == 0
    again = run_pipeline(PipelineConfig(**{**TINY, "out": str(tmp_path / "r")}), backend="ray")
    assert again["steps_run"] == [] and sorted(again["steps_skipped"]) == sorted(par["steps_run"])


def _flaky(flag: Path, out: Path, fails: int) -> None:
    """Fail the first `fails` calls (counted in `flag`), then write `out`."""
    n = int(flag.read_text()) if flag.exists() else 0
    flag.write_text(str(n + 1))
    if n < fails:
        raise RuntimeError(f"injected failure {n + 1}")
    out.write_text("ok")


def _write(out: Path, text: str) -> None:
    out.write_text(text)


def _plan(root: Path, fails: int) -> list:
    import functools

    plan = Plan(root, "cpu")
    for clip in ("a", "b", "c"):
        first = plan.add("one", clip, root / f"{clip}1.txt", {"v": 1}, functools.partial(_write, root / f"{clip}1.txt",
                                                                                           clip))
        fn = (functools.partial(_flaky, root / f"{clip}.flag", root / f"{clip}2.txt", fails) if clip == "b" else
              functools.partial(_write, root / f"{clip}2.txt", clip))
        plan.add("two", clip, root / f"{clip}2.txt", {"v": 2}, fn, deps=[first.id])
    return list(plan.steps.values())


def test_failed_task_is_retried(tmp_path, local_ray):
    ran, skipped = execute(tmp_path, _plan(tmp_path, fails=1), "ray", max_retries=1, progress=False)
    assert len(ran) == 6 and not skipped
    assert (tmp_path / "b.flag").read_text() == "2" and (tmp_path / "b2.txt").read_text() == "ok"


def test_resume_after_a_failed_run(tmp_path, local_ray):
    with pytest.raises(Exception, match="injected failure"):
        execute(tmp_path, _plan(tmp_path, fails=5), "ray", max_retries=0, progress=False)
    assert not (tmp_path / "b2.txt").exists()
    ran, skipped = execute(tmp_path, _plan(tmp_path, fails=1), "ray", max_retries=0, progress=False)
    assert ran == ["b/two"]  # b's step failed once before (flag 1), so it succeeds now; nothing else reruns
    assert sorted(skipped) == ["a/one", "a/two", "b/one", "c/one", "c/two"]
