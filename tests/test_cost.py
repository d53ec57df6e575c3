"""Cost estimates before heavy work: the probe covers the linear block rule's per-frame Jacobian, and
`xinc analyze --estimate-only` prints them and writes nothing."""

from __future__ import annotations

import torch

from xinc.canvas.cost import estimate
from xinc.cli.main import main
from xinc.models import NeRV, nerv_config_for_budget, save_model


def tiny_nerv() -> NeRV:
    nc = nerv_config_for_budget(height=32, width=32, num_frames=4, strides=[2, 2], embed="pe_1.25_8", fc_dim=4)
    torch.manual_seed(0)
    return NeRV(nc).eval()


def test_estimate_covers_every_neuron_and_the_frame_setup():
    """Both block modes: the estimate counts every neuron, bytes of the canvas, positive seconds per frame."""
    m = tiny_nerv()
    for mode in ("paper", "linear"):
        c = estimate(m, "block1", mode, frame=1, probe_seconds=0.05)
        K = m.blocks[0].conv.in_channels * m.blocks[0].conv.out_channels
        assert c.neurons == K and c.probe_neurons > 0  # small layers: chunks timed again, cycling
        assert c.bytes_per_frame == K * 32 * 32 * 4
        assert c.seconds_per_frame > 0


def test_estimate_only_prints_and_writes_nothing(tmp_path, capsys):
    save_model(tiny_nerv(), tmp_path / "model")
    out = tmp_path / "run"
    rc = main(["analyze", str(tmp_path / "model"), "--out", str(out), "--analyses", "a1,a2", "--estimate-only",
               "--mode", "both", "--no-progress"])
    assert rc == 0
    err = capsys.readouterr().err
    assert "estimated cost" in err
    assert "block1   linear" in err and "block1   paper" in err and "A2 statistics" in err
    assert not out.exists()
    assert "A2 neurons-needed (opt-in, --option a2.neurons_needed=true): +" in err  # what opting in would add
    rc = main(["analyze", str(tmp_path / "model"), "--out", str(out), "--analyses", "a2", "--estimate-only",
               "--option", "a2.neurons_needed=true", "--no-progress"])
    assert rc == 0 and "A2 neurons-needed (opt-in" not in capsys.readouterr().err  # on: included in the estimate


def test_a2_work_estimate_grows_with_neurons_and_frames():
    from xinc.analysis.distributed import work_seconds

    one = work_seconds(100, 16, 16, 1)
    assert 0 < one < work_seconds(100, 16, 16, 3)
    assert work_seconds(10, 16, 16, 1) < work_seconds(1000, 16, 16, 1)


def test_a2_estimate_follows_the_neurons_needed_option():
    """Off (the default) the estimate covers the paper passes only and reports what opting in would add."""
    from xinc.analysis.distributed import DistributedOptions, work_seconds, work_with_options

    off, more = work_with_options(None, 2000, 32, 32, 2)
    on, none = work_with_options(DistributedOptions(neurons_needed=True), 2000, 32, 32, 2)
    assert none == 0 and more > 0 and 0 < off < on
    assert off == work_seconds(2000, 32, 32, 2) and on == work_seconds(2000, 32, 32, 2, neurons_needed=True)


class SlowFirstCall:
    """Wraps a rule so that its first compute() sleeps (a stand-in for numba's compile on first use)."""

    def __init__(self, rule, sleep: float) -> None:
        self.rule, self.sleep, self.calls = rule, sleep, 0

    def __getattr__(self, name):
        return getattr(self.rule, name)

    def compute(self, a, b):
        self.calls += 1
        if self.calls == 1:
            import time

            time.sleep(self.sleep)
        return self.rule.compute(a, b)


def test_probe_leaves_the_first_calls_warm_up_out(monkeypatch):
    """A first compute() that sleeps 1 s is the untimed warm-up: the estimate stays far below it, and several
    chunks are timed (a robust median, not one chunk)."""
    import xinc.canvas.cost as cost
    from xinc.canvas.engine import make_rule

    m = tiny_nerv()
    wrapped = []

    def slow_rule(model, layer, mode):
        wrapped.append(SlowFirstCall(make_rule(model, layer, mode), 1.0))
        return wrapped[-1]

    monkeypatch.setattr(cost, "make_rule", slow_rule)
    c = cost.estimate(m, "block1", "paper", probe_seconds=0.0)
    assert c.warmup_seconds >= 1.0
    assert c.seconds_per_frame < 0.5
    assert wrapped[0].calls >= 6 and c.probe_neurons > 0


def test_probe_takes_the_median_chunk_rate():
    """One slow chunk among the timed ones does not move the estimate (median over chunks)."""
    import time
    from types import SimpleNamespace

    from xinc.canvas.cost import probe_rate

    class Rule:
        info = SimpleNamespace(num_neurons=10)
        calls = 0

        def compute(self, a, b):
            Rule.calls += 1
            time.sleep(0.5 if Rule.calls == 3 else 0.001 * (b - a))
            return torch.zeros(b - a, 2, 2), None

        def part_shape(self):
            return (2, 2)

    rate, done, warm = probe_rate(Rule(), 2, torch.device("cpu"), probe_seconds=0.0, min_chunks=5)
    assert done == 10 and 0.0009 < rate < 0.01


def test_a7_estimate_follows_rank_modes_and_frames(monkeypatch, tmp_path, capsys):
    """A7 alone: the ranking modes cost their whole canvas, the others only a7.neurons sampled maps, over
    a7.frames frames (seconds from a fixed stand-in probe: 1 s set-up + 0.01 s per map of 96)."""
    import xinc.canvas.cost as cost

    def fixed(model, layer, mode, frame=0, probe_seconds=0.2, trace=None):
        return cost.CanvasCost(layer, mode, 96, 96 * 32 * 32 * 4, 1.0 + 0.96, 96, 1.0, 0.0)

    monkeypatch.setattr(cost, "estimate", fixed)
    save_model(tiny_nerv(), tmp_path / "model")
    base = ["analyze", str(tmp_path / "model"), "--out", str(tmp_path / "run"), "--analyses", "a7", "--layers",
            "block1", "--estimate-only", "--no-progress", "--frames", "0-3"]

    def printed(*options):
        capsys.readouterr()
        assert main([*base, "--option", *options]) == 0
        return capsys.readouterr().err

    both = printed("a7.frames=2")
    assert "estimated cost 7.8 s" in both  # 2 modes x 2 frames x (1 + 0.96)
    paper = printed("a7.frames=2", "a7.rank_modes=paper", "a7.neurons=4")
    assert "A7 4 sampled maps x 2 frame(s)" in paper
    assert "estimated cost 6.0 s" in paper  # 2 x 1.96 (paper) + 2 x (1 + 0.04) (linear sample)
