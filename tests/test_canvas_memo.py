"""The canvas memo replays stored canvases bit-identically, respects its budget, and keeps fused paths fused."""

from __future__ import annotations

import torch

from xinc.canvas import Collect, HeatMap, NeuronTotals, layer_info, stream_canvas
from xinc.canvas.memo import CanvasMemo
from xinc.models import NeRV, NeRVConfig


def tiny_video() -> NeRV:
    cfg = NeRVConfig(height=8, width=12, num_frames=3, embed="pe_1.25_8", fc_hw=[2, 3], fc_dim=6, strides=[2, 2],
                     kernel_sizes=[3, 3], widths=[5, 4], head_ks=3)
    torch.manual_seed(0)
    return NeRV(cfg).eval()


def test_replay_is_identical_and_computes_once():
    m = tiny_video()
    memo = CanvasMemo(64)
    for mode in ("paper", "linear"):
        ref = Collect()
        res_ref = stream_canvas(m, "block1", [0, 2], ref, mode=mode)
        first, second = Collect(), Collect()
        res1 = memo.stream(m, "block1", [0, 2], [first], mode=mode, chunk_neurons=7)
        res2 = memo.stream(m, "block1", [0, 2], [second], mode=mode)  # replayed in other chunks
        for f in (0, 2):
            torch.testing.assert_close(first.results[f], ref.results[f])  # other chunks: round-off
            assert torch.equal(second.results[f], first.results[f])
        assert res1 == res2 and set(res1) == {0, 2}
        assert res1[0].keys() == res_ref[0].keys()
    assert memo.misses == 4 and memo.hits == 4


def test_budget_evicts_other_layers_and_streams_what_does_not_fit():
    m = tiny_video()
    one = CanvasMemo.nbytes(layer_info(m, "block1"))
    memo = CanvasMemo((2 * one + 1) / 2**20)  # two frames of block1
    memo.stream(m, "block1", [0, 1], [Collect()])
    assert memo.used == 2 * one
    memo.stream(m, "block1", [2], [Collect()])  # does not fit and never evicts its own group: streamed
    assert memo.used == 2 * one
    memo.stream(m, "head", [0], [Collect()])  # another layer: stored only by evicting cheaper canvases
    assert memo.used <= memo.budget
    # eviction order is the compute cost per byte: a costly canvas displaces cheap ones, never the reverse
    info = layer_info(m, "block1")
    memo = CanvasMemo((2 * one + 1) / 2**20)
    cheap, costly = torch.zeros(info.num_neurons, 8, 12), torch.ones(info.num_neurons, 8, 12)
    assert memo._admit(("m", "block1", "paper", 0), cheap, info, {}, 0.001)
    assert memo._admit(("m", "block1", "paper", 1), cheap.clone(), info, {}, 0.001)
    assert not memo._admit(("m", "block2", "paper", 0), cheap.clone(), info, {}, 0.0001)  # cheaper: not stored
    assert memo._admit(("m", "block1", "linear", 0), costly, info, {}, 1.0)  # costlier: evicts a cheap one
    assert ("m", "block1", "linear", 0) in memo._store and memo.used == 2 * one
    off = CanvasMemo(0)
    h = Collect()
    off.stream(m, "head", [1], [h])
    ref = Collect()
    stream_canvas(m, "head", [1], ref)
    torch.testing.assert_close(h.results[1], ref.results[1])
    assert off.used == 0


def test_fusable_reducers_stay_fused_and_store_nothing():
    m = tiny_video()
    memo = CanvasMemo(64)
    h, t = HeatMap(), NeuronTotals()
    memo.stream(m, "head", [0], [h, t])
    assert memo.used == 0
    ref = HeatMap()
    stream_canvas(m, "head", [0], ref)
    torch.testing.assert_close(h.results[0], ref.results[0])


def test_chunks_replay_in_the_engine_chunks_and_feed_a4():
    from xinc.analysis.motion import change_map
    from xinc.canvas import iter_canvas

    m = tiny_video()
    memo = CanvasMemo(64)
    for mode in ("paper", "linear"):
        first = list(memo.chunks(m, "block2", 1, mode=mode))
        again = list(memo.chunks(m, "block2", 1, mode=mode))
        ref = list(iter_canvas(m, "block2", 1, mode=mode))
        assert [s for s, _ in first] == [s for s, _ in again] == [s for s, _ in ref]
        for (_, a), (_, b) in zip(first, again):
            assert torch.equal(a, b)
        assert memo.hits >= 1
        from xinc.analysis.motion import accumulate_change

        got = accumulate_change(memo.chunks(m, "block2", 0, mode=mode), memo.chunks(m, "block2", 1, mode=mode))
        torch.testing.assert_close(got, change_map(m, "block2", 0, 1, mode=mode))
    half = CanvasMemo(0)  # nothing fits: streamed, nothing reserved
    list(half.chunks(m, "head", 0))
    assert half.used == 0


class _Passive(Collect.__mro__[1]):  # a Reducer that takes no map data (like the analyses' residual log)
    passive = True

    def __init__(self) -> None:
        self.frames = []

    def begin_frame(self, info, frame):
        super().begin_frame(info, frame)
        self.frames.append(frame)

    def update(self, start, maps):
        pass


def test_passive_reducers_keep_the_fused_path(monkeypatch):
    from xinc.canvas import engine

    m = tiny_video()
    ref = HeatMap()
    stream_canvas(m, "block1", [0], ref, fused=False)  # from the maps
    calls = []
    real = engine.CanvasRun.chunks
    monkeypatch.setattr(engine.CanvasRun, "chunks", lambda self: calls.append(1) or real(self))
    h, log = HeatMap(), _Passive()
    stream_canvas(m, "block1", [0], [h, log])  # the paper block rule fuses heat: no maps formed
    assert calls == [] and log.frames == [0]
    torch.testing.assert_close(h.results[0], ref.results[0])


def test_side_heat_and_totals_serve_a_later_heat_stream(monkeypatch):
    from xinc.canvas import engine
    from xinc.canvas import memo as memo_mod

    m = tiny_video()
    one = CanvasMemo.nbytes(layer_info(m, "block1", mode="linear"))
    small = CanvasMemo((one - 1) / 2**20)  # no room for a canvas: maps are streamed, only the side entries kept
    first = Collect()
    small.stream(m, "block1", [0, 2], [first], mode="linear")  # the linear rule cannot fuse: maps
    assert small.used == 0 and small.side_used > 0

    def no_engine(*a, **k):
        raise AssertionError("the side entry should have served this")

    import xinc.canvas

    monkeypatch.setattr(xinc.canvas, "stream_canvas", no_engine)
    monkeypatch.setattr(memo_mod, "iter_canvas", no_engine)
    h, t, log = HeatMap(), NeuronTotals(), _Passive()
    res = small.stream(m, "block1", [0, 2], [h, t, log], mode="linear")
    monkeypatch.undo()
    for f in (0, 2):  # bit-identical to streaming the maps into the same reducers
        rh, rt = HeatMap(), NeuronTotals()
        ref = engine.stream_canvas(m, "block1", [f], [rh, rt], mode="linear")
        assert torch.equal(h.results[f], rh.results[f]) and torch.equal(t.results[f], rt.results[f])
        assert res[f] == ref[f]
    assert log.frames == [0, 2] and small.hits == 2
    assert CanvasMemo(0).side_used == 0  # memo off: nothing kept
    off = CanvasMemo(0)
    off.stream(m, "block1", [0], [Collect()], mode="linear")
    assert off.side_used == 0 and not off._side


def test_a_full_memo_streams_without_a_throwaway_copy(monkeypatch):
    m = tiny_video()
    one = CanvasMemo.nbytes(layer_info(m, "block1"))
    memo = CanvasMemo((2 * one + 1) / 2**20)  # two frames of block1
    computed = []
    real = CanvasMemo._compute
    monkeypatch.setattr(CanvasMemo, "_compute", lambda self, *a: computed.append(a[2]) or real(self, *a))
    got = Collect()
    memo.stream(m, "block1", [0, 1, 2], [got])
    assert computed == [0, 1] and memo.used == 2 * one  # frame 2: no room and nothing cheaper to evict
    ref = Collect()
    stream_canvas(m, "block1", [2], ref)
    torch.testing.assert_close(got.results[2], ref.results[2])
    assert not memo._worth_storing((id(m), "block1", "paper"), one)
    assert memo._worth_storing((id(m), "head", "paper"), 1)  # another group: room is made for it if cheaper


def test_trim_after_a_frame_once_rss_grew(monkeypatch):
    from xinc import memory
    from xinc.canvas import memo as memo_mod

    rss = iter([100.0, 100.0, 400.0, 700.0, 300.0, 350.0])  # MB read after each frame (and after each trim)
    trims = []
    monkeypatch.setattr(memory, "rss_mb", lambda: next(rss))
    monkeypatch.setattr(memo_mod, "release_freed_memory", lambda: trims.append(1))
    memo = CanvasMemo(64)
    memo._trim_if_grown(step_mb=512)  # 100 > 0 + 512? no
    memo._rss_mark = 0.0
    memo._trim_if_grown(step_mb=50)  # 100 > 50: trim, mark 400
    assert trims == [1] and memo._rss_mark == 400.0
    memo._trim_if_grown(step_mb=512)  # 700 < 912: none
    assert trims == [1]
    m = tiny_video()
    monkeypatch.setattr(memory, "rss_mb", lambda: 10_000.0)  # grown: every streamed frame trims
    memo = CanvasMemo(64)
    memo.stream(m, "head", [0, 1], [Collect()])
    assert len(trims) == 2


def test_a_frame_stored_by_chunks_replays_in_stream():
    m = tiny_video()
    memo = CanvasMemo(64)
    list(memo.chunks(m, "block1", 0))  # stored by A4's path, which keeps no side entry
    got, ref = Collect(), Collect()
    memo.stream(m, "block1", [0], [got])  # replayed (it raised KeyError looking for the side reductions)
    stream_canvas(m, "block1", [0], ref)
    torch.testing.assert_close(got.results[0], ref.results[0])
    assert memo.hits == 1
