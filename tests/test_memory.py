"""Worker memory budgets (xinc.memory): the process' RSS readings, what a budget lowers, the canvas memo's RSS
limit, and the Ray backend's memory declaration."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from xinc import memory
from xinc.canvas import Collect, stream_canvas
from xinc.canvas.memo import CanvasMemo
from xinc.cli.main import main
from xinc.models import NeRV, NeRVConfig, save_model


def tiny_video() -> NeRV:
    cfg = NeRVConfig(height=8, width=12, num_frames=3, embed="pe_1.25_8", fc_hw=[2, 3], fc_dim=6, strides=[2, 2],
                     kernel_sizes=[3, 3], widths=[5, 4], head_ks=3)
    torch.manual_seed(0)
    return NeRV(cfg).eval()


@pytest.fixture
def no_budget(monkeypatch):
    monkeypatch.delenv(memory.ENV, raising=False)


def test_rss_readings_and_budget_shares(no_budget, monkeypatch):
    assert 0 < memory.rss_mb() <= memory.peak_rss_mb()
    assert memory.budget_mb() is None and memory.memo_mb_within(1024) == 1024
    assert memory.chunk_mb_within(None) is None and memory.rss_limit_mb() is None
    memory.set_budget_mb(3000)
    try:
        assert memory.budget_mb() == 3000
        assert memory.memo_mb_within(1024) == 0  # the default budget leaves nothing above the step's reserve
        memory.set_budget_mb(memory.MEMO_RESERVE_MB + 800)
        assert memory.memo_mb_within(1024) == 800 * memory.MEMO_SHARE and memory.memo_mb_within(10) == 10
        memory.set_budget_mb(3000)
        assert memory.chunk_mb_within(512) == 3000 * memory.CHUNK_SHARE and memory.chunk_mb_within(8) == 8
        assert memory.rss_limit_mb() == 3000 * memory.RSS_SHARE
    finally:
        memory.set_budget_mb(None)
    assert memory.budget_mb() is None
    monkeypatch.setenv(memory.ENV, "lots")
    assert memory.budget_mb() is None  # unreadable: no budget, never a crash inside a worker


def test_memo_stores_nothing_over_its_rss_limit():
    """Same maps either way; under an RSS limit below the process' RSS the memo keeps nothing."""
    m = tiny_video()
    free, tight = CanvasMemo(64), CanvasMemo(64, rss_limit_mb=1)
    ref, a, b = Collect(), Collect(), Collect()
    stream_canvas(m, "block1", [0, 1], ref)
    free.stream(m, "block1", [0, 1], [a])
    tight.stream(m, "block1", [0, 1], [b])
    assert free.used > 0 and tight.used == 0
    for f in (0, 1):
        assert torch.equal(a.results[f], b.results[f])
        torch.testing.assert_close(a.results[f], ref.results[f])
    assert list(tight.chunks(m, "head", 0)) and tight.used == 0
    roomy = CanvasMemo(64, rss_limit_mb=memory.rss_mb() + 1024)
    roomy.stream(m, "block1", [0], [Collect()])
    assert roomy.used > 0


def test_analyze_under_a_budget_lowers_the_memo(tmp_path, monkeypatch):
    save_model(tiny_video(), tmp_path / "m")
    monkeypatch.setenv(memory.ENV, str(memory.MEMO_RESERVE_MB + 800))
    out = tmp_path / "run"
    assert main(["analyze", str(tmp_path / "m"), "--out", str(out), "--analyses", "a1", "--layers", "head",
                 "--mode", "paper", "--no-progress"]) == 0
    got = json.loads((out / "config.json").read_text())["memory"]
    assert got == {"budget_mb": memory.MEMO_RESERVE_MB + 800, "memo_mb": 800 * memory.MEMO_SHARE,
                   "memory_budget_mb": None}


def test_ray_memory_declaration_fits_the_cluster():
    from xinc.pipeline import _ray_memory

    ray = SimpleNamespace(cluster_resources=lambda: {"memory": 8 * 2**30})
    assert _ray_memory(ray, 3000) == 3000 * 2**20
    assert _ray_memory(ray, 0) is None and _ray_memory(ray, None) is None
    small = SimpleNamespace(cluster_resources=lambda: {"memory": 2**30})
    assert _ray_memory(small, 3000) == 2**30  # never more than the cluster has (the task would never start)
    assert _ray_memory(SimpleNamespace(cluster_resources=lambda: {}), 3000) is None


def test_worker_memory_flag_is_checked(tmp_path, capsys):
    cfg = tmp_path / "c.json"
    cfg.write_text("{}")
    assert main(["run", str(cfg), "--worker-memory-mb", "-1"]) == 2
    assert "--worker-memory-mb" in capsys.readouterr().err
