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
        assert c.neurons == K and 0 < c.probe_neurons <= K
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


def test_a2_work_estimate_grows_with_neurons_and_frames():
    from xinc.analysis.distributed import work_seconds

    one = work_seconds(100, 16, 16, 1)
    assert 0 < one < work_seconds(100, 16, 16, 3)
    assert work_seconds(10, 16, 16, 1) < work_seconds(1000, 16, 16, 1)
