"""A4 motion: scores on constructed change maps, camera compensation, lockstep streaming, a fitted NeRV."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xinc.analysis import make_options, motion, run
from xinc.analysis.registry import ANALYSES, AnalysisContext
from xinc.errors import XincError
from xinc.report.plots import draw


def _moving_squares(T: int = 3, H: int = 16, W: int = 32, step: int = 6, size: int = 4):
    """Masks (T, H, W) of a square moving right by `step` px per frame, and its exact forward flow."""
    masks = torch.zeros(T, H, W)
    flow = torch.zeros(T - 1, 2, H, W)
    for t in range(T):
        x = 2 + step * t
        masks[t, 6:6 + size, x:x + size] = 1
        if t < T - 1:
            flow[t, 0, 6:6 + size, x:x + size] = step
    return masks, flow


def _ctx(tmp_path, **kw) -> AnalysisContext:
    base = dict(model=None, model_dir=tmp_path, layers=["given"], frames=[0, 1, 2],
                images=torch.rand(3, 3, 16, 32, generator=torch.Generator().manual_seed(0)), out=tmp_path / "out",
                mode="paper", seed=0)
    base.update(kw)
    return AnalysisContext(**base)


def test_registered():
    assert ANALYSES["a4"].needs_flow and ANALYSES["a4"].fn is motion.run


def test_change_equal_to_moving_mask_scores_one():
    rng = np.random.default_rng(0)
    mask = np.zeros((16, 32), bool)
    mask[3:9, 5:15] = True
    mag = np.where(mask, rng.uniform(1, 3, mask.shape), rng.uniform(0, 0.2, mask.shape))
    s = motion.score_change(mask.astype(float), mag, threshold=0.5)
    assert s["auroc"] == pytest.approx(1.0)
    assert s["moving_fraction"] == pytest.approx(mask.mean())
    assert s["pearson"] > 0.9 and s["spearman"] > 0.5
    assert motion.score_change(np.zeros((4, 4)), np.ones((4, 4)), 0.5)["auroc"] is None  # one class only


def test_constructed_canvas_analysis_gives_auroc_one(tmp_path):
    masks, flow = _moving_squares()
    weights = torch.tensor([0.5, 1.0, 2.0, -1.5])  # signed maps: A_k = |C_k|
    canvases = {"given": weights[None, :, None, None] * masks[:, None]}  # (T, K, H, W)
    ctx = _ctx(tmp_path, flow=flow, canvases=canvases, chunk_neurons=3)
    result = run(ctx, ["a4"])["a4"]
    res = result.numbers
    layer = res["layers"]["given"]
    assert layer["auroc"] == pytest.approx(1.0)
    assert layer["auroc_compensated"] == pytest.approx(1.0)  # static background: the homography is ~identity
    assert res["camera"]["mean_induced_px"] < 1e-3
    assert (tmp_path / "out" / "tables" / "a4_scores.csv").is_file()
    figs = draw("a4", result, tmp_path / "out")
    assert len(figs) == 2 and all(f.path.is_file() for f in figs)
    assert result.summary and "AUROC 1.000" in result.summary[0]


def test_motion_region_marks_destinations():
    masks, flow = _moving_squares(T=2)
    both = motion.motion_magnitude(flow[0].numpy(), "both") > 0.5
    src = motion.motion_magnitude(flow[0].numpy(), "source") > 0.5
    assert np.array_equal(src, masks[0].bool().numpy())
    assert np.array_equal(both, (masks[0] + masks[1]).bool().numpy())


def test_homography_compensation_removes_camera_pan():
    H, W = 24, 48
    flow = np.zeros((2, H, W), np.float32)
    flow[0], flow[1] = 2.0, -1.0  # the camera pans: everything moves by (2, -1)
    obj = np.zeros((H, W), bool)
    obj[8:14, 10:18] = True
    flow[0][obj] += 4.0  # one thing also moves by itself
    induced, hom, inliers = motion.homography_flow(flow, seed=3)
    assert hom is not None and inliers > 0.8
    assert np.allclose(induced[:, ~obj], flow[:, ~obj], atol=1e-2)
    raw = motion.motion_magnitude(flow, "source")
    comp = motion.motion_magnitude(flow - induced, "source")
    assert motion.score_change(obj.astype(float), raw, 0.5)["auroc"] is None  # every pixel "moves"
    assert motion.score_change(obj.astype(float), comp, 0.5)["auroc"] == pytest.approx(1.0)


def _tiny_nerv(T: int = 3):
    from xinc.models import NeRV, NeRVConfig

    torch.manual_seed(0)
    cfg = NeRVConfig(height=16, width=32, num_frames=T, fc_hw=[2, 4], fc_dim=6, strides=[4, 2], kernel_sizes=[3, 3],
                     widths=[6, 4])
    return NeRV(cfg).eval()


@pytest.mark.parametrize("mode", ["paper", "linear"])
def test_lockstep_change_map_matches_whole_canvases(mode):
    from xinc.canvas import compute_canvas

    model = _tiny_nerv()
    for layer in model.layer_names:
        ref = (compute_canvas(model, layer, 2, mode=mode).maps.abs()
               - compute_canvas(model, layer, 1, mode=mode).maps.abs()).abs().sum(0)
        got = motion.change_map(model, layer, 1, 2, mode=mode, chunk_neurons=7)
        assert got.shape == ref.shape[-2:]
        torch.testing.assert_close(got, ref.reshape(-1, *ref.shape[-2:]).sum(0), rtol=1e-4, atol=1e-5)


def test_bad_options_are_one_line_errors(tmp_path):
    with pytest.raises(XincError, match="a4.region"):
        make_options("a4", {"region": "everywhere"})
    with pytest.raises(XincError, match="a4.treshold"):
        make_options("a4", {"treshold": 1.0})
    with pytest.raises(XincError, match="negative"):
        make_options("a4", {"threshold": -1})
    opts = make_options("a4", {"compensate": "false", "threshold": "1.5"})
    assert opts.compensate is False and opts.threshold == 1.5 and opts.ransac_threshold == 0.75


def test_wrong_flow_shape_is_an_error(tmp_path):
    masks, flow = _moving_squares()
    ctx = _ctx(tmp_path, flow=flow[:1], canvases={"given": masks[:, None]})
    with pytest.raises(XincError, match="flow has shape"):
        run(ctx, ["a4"])


def test_briefly_fitted_nerv_on_synthetic_clip_tracks_motion(tmp_path):
    """Static camera + moving things (exact flow known): M_t of a briefly fitted NeRV finds the movers."""
    from xinc.data.synth import SynthConfig, render_video
    from xinc.train import TrainNeRVConfig, train_nerv

    video, _ = render_video(SynthConfig(seed=0, frames=4, size=(48, 96), pan=0.0, things=4), 0, (48, 96))
    frames = torch.from_numpy(video.frames).permute(0, 3, 1, 2).float() / 255
    flow = torch.from_numpy(video.flow)
    cfg = TrainNeRVConfig(out=str(tmp_path / "nerv"), size=(48, 96), epochs=120, batch=2, seed=0, device="cpu",
                          strides=[4, 2, 2], fc_dim=10, lower_width=8, eval_every=120, progress=False)
    model = train_nerv(cfg, frames=frames).model.eval()
    ctx = AnalysisContext(model=model, model_dir=tmp_path / "nerv", layers=model.layer_names[-2:],
                          frames=list(range(frames.shape[0])), images=frames, out=tmp_path / "a4", flow=flow,
                          mode="linear", seed=0)
    res = run(ctx, ["a4"], {"a4": {"figures": False}})["a4"].numbers
    aurocs = [v["auroc"] for v in res["layers"].values()]
    assert all(a is not None and a > 0.7 for a in aurocs), res["layers"]
    assert res["flow_method"] == "given" and res["moving_fraction"] > 0.01


def test_lockstep_streaming_leaves_grad_mode_on():
    model = _tiny_nerv()
    assert torch.is_grad_enabled()
    motion.change_map(model, "head", 0, 1, chunk_neurons=5)
    assert torch.is_grad_enabled()


def test_previous_pairs_use_clip_frames_and_flow_file(tmp_path):
    """Non-consecutive analysed frames (annotated 2 and 4): pairs (1, 2) and (3, 4), flow read from a file."""
    from types import SimpleNamespace

    masks, flow = _moving_squares(T=5, step=5)
    np.save(tmp_path / "flow.npy", flow.numpy())
    canvases = {"given": 2.0 * masks[:, None]}  # rows follow ctx.frames
    clip = SimpleNamespace(frames=torch.rand(5, 3, 16, 32, generator=torch.Generator().manual_seed(1)))
    model = _tiny_nerv(T=5)  # only decides that this is a video model; the maps are given
    ctx = _ctx(tmp_path, model=model, frames=[1, 2, 3, 4], canvases=canvases, panoptic=clip)
    opts = make_options("a4", {"pairs": "previous", "flow_file": str(tmp_path / "flow.npy")})
    pairs, images, fl, method = motion.frame_pairs(ctx, opts)
    assert pairs == [(0, 1), (1, 2), (2, 3), (3, 4)] and method.startswith("file")
    assert torch.equal(images[0], clip.frames[0])
    np.testing.assert_array_equal(fl, flow.numpy()[[0, 1, 2, 3]])
