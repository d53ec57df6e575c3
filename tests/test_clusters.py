"""A6 neuron clustering: exact streamed vectors, dead neurons, planted clusters, maps, cross-run comparison."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xinc.analysis import clusters, run
from xinc.analysis.registry import ANALYSES, AnalysisContext
from xinc.errors import XincError
from xinc.report.plots import draw

H, W = 16, 32


def _planted(n_per: int = 6, seed: int = 0) -> tuple[torch.Tensor, np.ndarray]:
    """Canvases (1, K, H, W): neurons 0..n-1 paint the left half, n..2n-1 the right half, plus 2 dead ones."""
    g = torch.Generator().manual_seed(seed)
    left = torch.zeros(H, W)
    left[:, : W // 2] = 1
    maps = []
    for k in range(2 * n_per):
        base = left if k < n_per else 1 - left
        maps.append(base * (0.5 + torch.rand(1, generator=g)) + 0.05 * torch.rand(H, W, generator=g))
    maps += [torch.zeros(H, W), torch.full((H, W), 0.3)]  # dead: constant |C|
    sign = torch.where(torch.rand(len(maps), generator=g) > 0.5, 1.0, -1.0)
    truth = np.array([0] * n_per + [1] * n_per)
    return (torch.stack(maps) * sign[:, None, None])[None], truth


def _ctx(tmp_path, canvases, **kw) -> AnalysisContext:
    image = torch.rand(3, H, W, generator=torch.Generator().manual_seed(5))
    base = dict(model=None, model_dir=tmp_path / "model", layers=["given"], frames=[0], images=image[None],
                out=tmp_path / "out", mode="linear", seed=0, canvases=canvases, chunk_neurons=5)
    base.update(kw)
    return AnalysisContext(**base)


def _run(ctx, **options):
    """A6 through the library entry point (results saved under ctx.out), default options of these tests."""
    opts = {"k": 2, "groups": 8, "members": 2, "seed_runs": 2, "figures": False, **options}
    return run(ctx, ["a6"], {"a6": opts})["a6"]


def test_registered():
    assert ANALYSES["a6"].fn is clusters.run and ANALYSES["a6"].options is clusters.ClusterOptions


def test_streamed_vectors_equal_brute_force():
    maps, _ = _planted()
    a = maps[0].abs().numpy().astype(np.float64)
    labels = np.random.default_rng(0).integers(0, 5, size=(H, W))
    gs = clusters.GroupSums(torch.as_tensor(labels), 5)
    mm = clusters.MinMax()
    from xinc.analysis.registry import stream_tensors

    stream_tensors(maps, [gs, mm], chunk=3)
    counts = np.bincount(labels.ravel(), minlength=5)
    alive, vec = clusters.neuron_vectors(gs.result()[0], counts, *mm.result(), dead_tol=1e-7)
    assert alive.tolist() == list(range(12))  # the two constant maps are dead
    for i, k in enumerate(alive):
        norm = (a[k] - a[k].min()) / (a[k].max() - a[k].min())
        ref = [norm[labels == g].mean() for g in range(5)]
        np.testing.assert_allclose(vec[i], ref, rtol=1e-6, atol=1e-7)


def test_planted_clusters_are_recovered_and_seeded(tmp_path):
    from sklearn.metrics import adjusted_rand_score

    maps, truth = _planted()
    res = _run(_ctx(tmp_path, {"given": maps}), figures=True)
    layer = res.numbers["layers"]["given"]
    assert layer["neurons"] == 14 and layer["dead"] == 2 and layer["clusters"] == 2
    with np.load(tmp_path / "out" / "data" / "a6.npz", allow_pickle=False) as z:
        labels, neurons = z["given/labels"], z["given/neurons"]
    assert neurons.tolist() == list(range(12))
    assert adjusted_rand_score(truth, labels) == pytest.approx(1.0)
    assert layer["seed_ari"] == pytest.approx(1.0)
    figs = draw("a6", res, tmp_path / "out")
    assert len(figs) == 2 and all(f.path.is_file() for f in figs)
    again = _run(_ctx(tmp_path / "b", {"given": maps}))
    assert again.numbers["layers"] == res.numbers["layers"]  # seeded: same numbers


def test_finch_option(tmp_path):
    maps, truth = _planted(n_per=8)
    res = _run(_ctx(tmp_path, {"given": maps}), method="finch").numbers
    assert res["method"] == "finch" and res["layers"]["given"]["clusters"] >= 2


def test_cluster_average_maps_match_brute_force():
    maps, truth = _planted()
    a = maps[0].abs()
    from xinc.analysis.registry import stream_tensors

    mm = clusters.MinMax()
    stream_tensors(maps, [mm], chunk=4)
    mins, maxs = mm.result()
    assign = np.array(list(truth) + [-1, -1])
    cm = clusters.ClusterMaps(assign, 2, mins, maxs, np.array([1, 9]))
    stream_tensors(maps, [cm], chunk=4)
    avg, members = cm.result()
    norm = (a - a.amin((1, 2), keepdim=True)) / (a.amax((1, 2), keepdim=True) - a.amin((1, 2), keepdim=True))
    torch.testing.assert_close(avg[0], norm[:6].mean(0), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(avg[1], norm[6:12].mean(0), rtol=1e-5, atol=1e-6)
    assert sorted(members) == [1, 9]
    torch.testing.assert_close(members[9], norm[9], rtol=1e-5, atol=1e-6)


def test_symmetric_nn_distance():
    x = np.random.default_rng(0).random((20, 4))
    assert clusters.symmetric_nn_distance(x, x) == pytest.approx(0.0)
    shift = np.zeros(4)
    shift[0] = 3.0
    assert clusters.symmetric_nn_distance(x, x + shift) > 1.0
    assert clusters.split_half_distance(x, 0) > 0


def test_compare_runs_ari_only_for_same_weights(tmp_path):
    maps, _ = _planted()
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "model.safetensors").write_bytes(b"same weights")
    _run(_ctx(tmp_path, {"given": maps}, out=tmp_path / "r1"), k=6, groups=32, members=6, seed_runs=3)
    _run(_ctx(tmp_path, {"given": maps}, out=tmp_path / "r2"), k=6, groups=32, members=6, seed_runs=3)
    c = clusters.compare_runs(tmp_path / "r1", tmp_path / "r2")
    (row,) = c["pairs"]
    assert row["same_pixel_groups"] and row["nn_distance"] == pytest.approx(0.0) and row["ari"] == pytest.approx(1.0)
    other = _planted(seed=1)[0]
    _run(_ctx(tmp_path, {"given": other}, out=tmp_path / "r3", model_dir=tmp_path / "none"), k=6, groups=32,
         members=6, seed_runs=3)
    (row,) = clusters.compare_runs(tmp_path / "r1", tmp_path / "r3")["pairs"]
    assert row["ari"] is None and row["nn_distance"] > 0


def test_real_model_streaming_is_chunk_independent(tmp_path):
    from xinc.models import NeRV, NeRVConfig

    torch.manual_seed(0)
    model = NeRV(NeRVConfig(height=H, width=W, num_frames=2, fc_hw=[2, 4], fc_dim=6, strides=[4, 2],
                            kernel_sizes=[3, 3], widths=[6, 4])).eval()
    image = model([0]).detach()
    vecs = []
    for chunk in (7, None):
        ctx = AnalysisContext(model=model, model_dir=tmp_path, layers=["block2", "head"], frames=[0], images=image,
                              out=tmp_path / f"o{chunk}", mode="linear", chunk_neurons=chunk)
        res = _run(ctx, groups=6, seed_runs=0, k=6, members=6).numbers
        assert set(res["layers"]) == {"block2", "head"} and "block2~head" in res["layer_distance"]
        with np.load(tmp_path / f"o{chunk}" / "data" / "a6.npz") as z:
            vecs.append(z["block2/vectors"])
    np.testing.assert_allclose(vecs[0], vecs[1], rtol=1e-5, atol=1e-6)


def test_bad_options(tmp_path):
    maps, _ = _planted()
    with pytest.raises(XincError, match="a6.method"):
        _run(_ctx(tmp_path, {"given": maps}), method="dbscan")
    with pytest.raises(XincError, match="a6.k"):
        _run(_ctx(tmp_path, {"given": maps}), k="six")
    with pytest.raises(XincError, match="frame_pos"):
        _run(_ctx(tmp_path, {"given": maps}), frame_pos=3)
    try:
        import umap  # noqa: F401
    except ImportError:
        with pytest.raises(XincError, match="umap"):
            clusters.embed_2d(np.random.default_rng(0).random((10, 4)), "umap", 0)
