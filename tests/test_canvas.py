"""Canvas rules vs independent slow references (explicit loops over channels, autograd/jvp) on tiny models."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from xinc.canvas import (
    Collect,
    GroupSums,
    HeatMap,
    NeuronTotals,
    compute_canvas,
    grad_x_activation,
    iter_canvas,
    layer_info,
    stream_canvas,
)
from xinc.errors import XincError
from xinc.models import FFN, FFNConfig, NeRV, NeRVConfig

TOL = dict(rtol=1e-5, atol=1e-6)


def tiny_ffn(act: str = "relu", layers: int = 3, seed: int = 0) -> FFN:
    g = torch.Generator().manual_seed(seed)
    m = FFN(FFNConfig(height=6, width=10, hidden=7, layers=layers, activation=act, num_features=5), generator=g)
    return m.eval()


NERV_SHAPES = {
    # name: (strides, kernels, widths, fc_hw, head_ks, embed)
    "one_block_s3_k5": ([3], [5], [4], [2, 3], 3, "pe_1.25_8"),
    "two_blocks_s2s1_table": ([2, 1], [3, 1], [5, 4], [3, 4], 1, "table"),
    "three_blocks_s1s2s3": ([1, 2, 3], [5, 3, 1], [5, 4, 3], [1, 2], 5, "pe_1.25_8"),
}


def tiny_nerv(name: str, seed: int = 0, act: str = "gelu") -> NeRV:
    strides, ks, widths, fc_hw, head_ks, embed = NERV_SHAPES[name]
    total = 1
    for s in strides:
        total *= s
    cfg = NeRVConfig(height=fc_hw[0] * total, width=fc_hw[1] * total, num_frames=3, embed=embed,
                     embed_shape=[6, *fc_hw] if embed == "table" else None, fc_hw=fc_hw, fc_dim=6,
                     strides=strides, kernel_sizes=ks, widths=widths, head_ks=head_ks, act=act)
    torch.manual_seed(seed)
    m = NeRV(cfg)
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.5)  # larger than the default init so the nonlinearities matter
        if embed == "table":
            m.embeddings.normal_()
    return m.eval()


# ---------------------------------------------------------------- independent references (explicit loops)


def ref_mlp(model: FFN, layer: str, per_channel: bool = False) -> torch.Tensor:
    """c_ij = a_i W[j,i] + b_j/n by explicit loops over i and j; C_i = phi(sum_j c_ij) (or phi(c_ij))."""
    idx = int(layer[5:]) - 1
    with torch.no_grad():
        h = model.encode(model.coords())
        for q in range(idx):
            h = model.activation(q, model.layers[q](h))
        W, b = model.layers[idx].weight, model.layers[idx].bias
        m, n = W.shape
        H, Wd = model.config.height, model.config.width
        out = []
        for i in range(n):
            cs = [h[:, i] * W[j, i] + b[j] / n for j in range(m)]
            if per_channel:
                out.append(torch.stack([model.activation(idx, c) for c in cs]).reshape(m, H, Wd))
            else:
                out.append(model.activation(idx, sum(cs)).reshape(H, Wd))
    return torch.stack(out)


def ref_head(model: NeRV, frame: int) -> torch.Tensor:
    with torch.no_grad():
        x = model.trace([frame]).inputs["head"][0]
        W, b = model.head.weight, model.head.bias
        cin, k = W.shape[1], W.shape[-1]
        maps = [F.conv2d(x[i][None, None], W[o, i][None, None], b[o:o + 1] / cin, padding=k // 2)[0, 0]
                for i in range(cin) for o in range(W.shape[0])]
    return torch.stack(maps)


def ref_box(x: torch.Tensor, k: int) -> torch.Tensor:
    w = torch.ones(1, 1, k, k) / (k * k)
    return F.conv2d(x[None, None], w, padding=k // 2)[0, 0]


def ref_routed(model: NeRV, bi: int, tr) -> list[torch.Tensor]:
    """R_{i,o} for every neuron, by loops: per-kernel conv then explicit sub-pixel placement."""
    blk = model.blocks[bi]
    u = tr.inputs[f"block{bi + 1}"][0]
    W, b, r = blk.conv.weight, blk.conv.bias, blk.stride
    cout, cin, k, _ = W.shape
    out = []
    for i in range(cin):
        for o in range(cout):
            z = F.conv2d(u[i][None, None], W[o, i][None, None], b[o:o + 1] / cin, padding=k // 2)[0, 0]
            R = torch.zeros(z.shape[0] * r, z.shape[1] * r)
            s = o % (r * r)
            R[s // r::r, s % r::r] = z
            out.append(R)
    return out


def ref_block_paper(model: NeRV, bi: int, frame: int) -> tuple[torch.Tensor, list[torch.Tensor], object]:
    with torch.no_grad():
        tr = model.trace([frame])
        routed = ref_routed(model, bi, tr)
        maps = []
        for R in routed:
            A = F.gelu(R)
            for blk in model.blocks[bi + 1:]:
                A = ref_box(A, blk.conv.kernel_size[0])
                A = F.gelu(F.interpolate(A[None, None], scale_factor=blk.stride, mode="nearest")[0, 0])
            maps.append(ref_box(A, model.head.kernel_size[0]))
    return torch.stack(maps), routed, tr


def ref_linear_jvp(model, layer: str, frame: int = 0) -> torch.Tensor:
    """Linear-mode maps by forward-mode AD (torch.func.jvp) of the downstream network, per neuron."""
    from torch.func import jvp

    if isinstance(model, FFN):
        idx = int(layer[5:]) - 1
        tr = model.trace()
        a, lin = tr.inputs[layer], model.layers[idx]
        n = lin.in_features
        downs = model.layers[idx + 1:]
        biases = tuple(lay.bias.detach() for lay in downs)

        def f(v, bs):
            x = v
            for q, (lay, bb) in enumerate(zip(downs, bs)):
                x = F.linear(model.activation(idx + q, x), lay.weight, bb)
            return x

        z = tr.pre[layer].detach()
        beta = jvp(lambda bs: f(z, bs), (biases,), (biases,))[1] if biases else 0.0
        maps = []
        for i in range(n):
            c = a[:, i:i + 1] * lin.weight[:, i][None] + lin.bias[None] / n
            _, jc = jvp(lambda v: f(v, biases), (z,), (c,))
            maps.append((jc + beta / n).sum(1).reshape(model.config.height, model.config.width))
        return torch.stack(maps).detach()
    bi = int(layer[5:]) - 1
    with torch.no_grad():
        tr = model.trace([frame])
    routed = ref_routed(model, bi, tr)
    r = model.blocks[bi].stride
    convs = [blk.conv for blk in model.blocks[bi + 1:]] + [model.head]
    biases = tuple(c.bias.detach() for c in convs)

    def g(v, bs):
        x = F.gelu(v)
        for blk, bb in zip(model.blocks[bi + 1:], bs):
            x = F.gelu(F.pixel_shuffle(F.conv2d(x, blk.conv.weight, bb, padding=blk.conv.kernel_size[0] // 2),
                                       blk.stride))
        return F.conv2d(x, model.head.weight, bs[-1], padding=model.head.kernel_size[0] // 2)

    v = tr.post[layer].detach()
    K = len(routed)
    _, beta = jvp(lambda bs: g(v, bs), (biases,), (biases,))
    maps = []
    for k, R in enumerate(routed):
        d = torch.zeros_like(v)
        d[0, (k % model.blocks[bi].conv.out_channels) // (r * r)] = R
        _, jd = jvp(lambda x: g(x, biases), (v,), (d,))
        maps.append((jd + beta / K)[0].sum(0))
    return torch.stack(maps).detach()


# ---------------------------------------------------------------- phase-plane filters


@pytest.mark.parametrize("r,k", [(1, 1), (1, 3), (2, 1), (2, 3), (2, 5), (3, 3), (4, 3), (4, 7), (5, 1)])
@pytest.mark.parametrize("h,w", [(1, 1), (2, 5), (4, 3)])
def test_phase_plane_filters_match_upsample_route_and_box(r, k, h, w):
    """box_k o up_r and box_k o route_s as phase planes equal nearest upsampling / explicit sub-pixel placement
    followed by a zero-padded k x k mean (avg_pool2d with count_include_pad), for any sub-pixel mix."""
    from xinc.canvas.rules import box_route_planes, box_up_planes, interleave_planes

    g = torch.Generator().manual_seed(r * 100 + k * 10 + h)
    y = torch.randn(7, h, w, generator=g)

    def box(x):
        return F.avg_pool2d(x[:, None], k, stride=1, padding=k // 2, count_include_pad=True)[:, 0]

    up = F.interpolate(y[:, None], scale_factor=r, mode="nearest")[:, 0]
    torch.testing.assert_close(interleave_planes(box_up_planes(y, r, k)), box(up), **TOL)
    sub = torch.randint(0, r * r, (7,), generator=g)
    routed = torch.zeros(7, h * r, w * r)
    for j in range(7):
        s1, s2 = divmod(int(sub[j]), r)
        routed[j, s1::r, s2::r] = y[j]
    torch.testing.assert_close(interleave_planes(box_route_planes(y, r, k, sub)), box(routed), **TOL)


# ---------------------------------------------------------------- MLP


@pytest.mark.parametrize("act,layers", [("relu", 2), ("relu", 3), ("sine", 3), ("sine", 4), ("gelu", 2)])
def test_mlp_paper_rule_matches_loops(act, layers):
    m = tiny_ffn(act, layers)
    for layer in m.layer_names:
        cv = compute_canvas(m, layer)
        torch.testing.assert_close(cv.maps, ref_mlp(m, layer), **TOL)
        assert cv.residual["identity_rel"] < 1e-5 and cv.residual["identity_max_abs"] < 1e-5
        assert cv.exact == (layer == m.layer_names[-1])
        assert cv.neuron_index == "k = c_in" and cv.maps.shape[0] == m.layers[int(layer[5:]) - 1].in_features


def test_mlp_per_channel_last_layer_sums_to_output():
    m = tiny_ffn("relu", 3)
    cv = compute_canvas(m, "layer3", per_channel=True)
    assert cv.maps.shape == (7, 3, 6, 10)
    torch.testing.assert_close(cv.maps, ref_mlp(m, "layer3", per_channel=True), **TOL)
    out = m.render()
    torch.testing.assert_close(cv.maps.sum(0), out, **TOL)
    torch.testing.assert_close(cv.maps.sum(1), compute_canvas(m, "layer3").maps, **TOL)


@pytest.mark.parametrize("act", ["relu", "gelu", "sine"])
def test_mlp_linear_mode_matches_jvp_and_gradxact(act):
    m = tiny_ffn(act, 3, seed=1)
    for layer in m.layer_names:
        cv = compute_canvas(m, layer, mode="linear")
        torch.testing.assert_close(cv.maps, ref_linear_jvp(m, layer), rtol=1e-4, atol=1e-5)
        gx = grad_x_activation(m, layer, crop=(1, 4, 2, 6))
        torch.testing.assert_close(cv.maps[:, 1:4, 2:6], gx, rtol=1e-4, atol=1e-5)
        if act == "relu":  # relu(z) = relu'(z) z: the tangent network is the network
            assert cv.exact and cv.residual["gap_rel"] < 1e-5 and cv.residual["identity_rel"] < 1e-5


# ---------------------------------------------------------------- NeRV


@pytest.mark.parametrize("shape", list(NERV_SHAPES))
def test_head_rule_exact(shape):
    m = tiny_nerv(shape)
    cv = compute_canvas(m, "head", 1)
    torch.testing.assert_close(cv.maps, ref_head(m, 1), **TOL)
    assert cv.exact and cv.residual["gap_rel"] < 1e-5 and cv.residual["identity_rel"] < 1e-5
    z = m.trace([1]).pre["head"][0]
    torch.testing.assert_close(cv.maps.reshape(-1, 3, *z.shape[-2:]).sum(0), z, **TOL)
    pc = compute_canvas(m, "head", 1, per_channel=True)
    torch.testing.assert_close(pc.maps.reshape(cv.maps.shape), cv.maps, rtol=0, atol=0)


@pytest.mark.parametrize("shape", list(NERV_SHAPES))
def test_block_paper_rule_matches_loops_and_shuffle_identity(shape):
    m = tiny_nerv(shape)
    for bi in range(len(m.blocks)):
        layer = f"block{bi + 1}"
        cv = compute_canvas(m, layer, 2)
        ref, routed, tr = ref_block_paper(m, bi, 2)
        torch.testing.assert_close(cv.maps, ref, **TOL)
        assert not cv.exact and cv.residual["identity_rel"] < 1e-5
        # the PixelShuffle identity on the reference: GELU(sum_i sum_s R_{i, c r^2 + s}) = block output c
        cout, r = m.blocks[bi].conv.out_channels, m.blocks[bi].stride
        R = torch.stack(routed).reshape(-1, cout // (r * r), r * r, *routed[0].shape).sum(dim=(0, 2))
        nxt = tr.inputs[f"block{bi + 2}" if bi + 1 < len(m.blocks) else "head"][0]
        torch.testing.assert_close(F.gelu(R), nxt, **TOL)
        info = layer_info(m, layer)
        assert info.num_neurons == m.blocks[bi].conv.in_channels * cout == cv.maps.shape[0]


@pytest.mark.parametrize("shape", list(NERV_SHAPES))
def test_block_linear_mode_matches_jvp_and_gradxact(shape):
    m = tiny_nerv(shape, seed=3)
    for bi in range(len(m.blocks)):
        layer = f"block{bi + 1}"
        cv = compute_canvas(m, layer, 0, mode="linear")
        torch.testing.assert_close(cv.maps, ref_linear_jvp(m, layer, 0), rtol=1e-4, atol=1e-5)
        gx = grad_x_activation(m, layer, 0, crop=(0, 2, 1, 3))
        torch.testing.assert_close(cv.maps[:, 0:2, 1:3], gx, rtol=1e-4, atol=1e-5)
        # the residual is the tangent network's sum vs the true logits, computed in the same pass
        z = m.trace([0]).pre["head"][0]
        pc = compute_canvas(m, layer, 0, mode="linear", per_channel=True)
        torch.testing.assert_close(pc.maps.sum(1), cv.maps, rtol=1e-5, atol=1e-6)
        expect = (cv.maps.double().sum(0) - z.double().sum(0)).abs().max().item()
        assert cv.residual["gap_max_abs"] == pytest.approx(expect, rel=1e-3, abs=1e-6)


def test_paper_sizes_neuron_counts():
    m = NeRV(NeRVConfig())
    counts = {name: layer_info(m, name).num_neurons for name in m.layer_names}
    assert counts == {"block1": 18352, "block2": 3224, "block3": 2288, "head": 66}
    f = FFN(FFNConfig())
    assert [layer_info(f, n).num_neurons for n in f.layer_names] == [208, 104, 104]


def test_table_embedding_external_equals_stored():
    m = tiny_nerv("two_blocks_s2s1_table")
    emb = m.embeddings[1]
    for layer in m.layer_names:
        a = compute_canvas(m, layer, 1).maps
        b = compute_canvas(m, layer, 0, embedding=emb).maps
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    red = HeatMap()
    stream_canvas(m, "block1", [5, 6], red, embedding=m.embeddings[[1, 2]])
    torch.testing.assert_close(red.result()[5], compute_canvas(m, "block1", 1).heat(), **TOL)


# ---------------------------------------------------------------- chunking and reducers


@pytest.mark.parametrize("mode", ["paper", "linear"])
def test_chunking_invariance(mode):
    m = tiny_nerv("three_blocks_s1s2s3")
    f = tiny_ffn("relu", 3)
    for model, frame in ((m, 1), (f, 0)):
        for layer in model.layer_names:
            full = compute_canvas(model, layer, frame, mode=mode)
            for kw in ({"chunk_neurons": 1}, {"chunk_neurons": 7}, {"memory_budget_mb": 1e-3}):
                part = compute_canvas(model, layer, frame, mode=mode, **kw)
                scale = full.maps.abs().max().item()
                torch.testing.assert_close(part.maps, full.maps, rtol=1e-5, atol=1e-6 * scale)
                for key, val in full.residual.items():
                    assert part.residual[key] == pytest.approx(val, rel=1e-3, abs=1e-6)


def test_iter_canvas_chunks_cover_all_neurons_and_return_residual():
    m = tiny_nerv("one_block_s3_k5")
    gen = iter_canvas(m, "block1", 0, chunk_neurons=5)
    starts, total = [], 0
    try:
        while True:
            s, maps = next(gen)
            starts.append(s)
            total += maps.shape[0]
            assert maps.dtype == torch.float32 and maps.shape[1:] == (6, 9)
    except StopIteration as stop:
        residual = stop.value
    assert starts == list(range(0, total, 5)) and total == layer_info(m, "block1").num_neurons
    assert residual["identity_rel"] < 1e-5 and residual["gap_rel"] > 1e-3  # paper stand-ins: a real gap


def test_reducers_equal_reductions_of_full_canvas():
    m = tiny_nerv("three_blocks_s1s2s3")
    H, W = m.config.height, m.config.width
    labels = torch.randint(0, 4, (H, W), generator=torch.Generator().manual_seed(0))
    per_frame = {0: labels, 2: (labels + 1) % 4}
    for layer in ("block2", "head"):
        reds = [HeatMap(), NeuronTotals(), GroupSums(labels, 4), GroupSums(per_frame, 4), Collect()]
        res = stream_canvas(m, layer, [0, 2], reds, chunk_neurons=6)
        for fr in (0, 2):
            cv = compute_canvas(m, layer, fr)
            A = cv.maps.abs()
            torch.testing.assert_close(reds[0].result()[fr], A.sum(0), **TOL)
            torch.testing.assert_close(reds[1].result()[fr], A.sum(dim=(1, 2)), **TOL)
            for red, lab in ((reds[2], labels), (reds[3], per_frame[fr])):
                expect = torch.stack([A[:, lab == g].sum(1) for g in range(4)], 1)
                torch.testing.assert_close(red.result()[fr], expect, **TOL)
            torch.testing.assert_close(reds[4].result()[fr], cv.maps, **TOL)
            assert reds[0].residuals[fr] == res[fr]
            for key, val in cv.residual.items():
                assert res[fr][key] == pytest.approx(val, rel=1e-3, abs=1e-6)


@pytest.mark.parametrize("compiled", [True, False])
@pytest.mark.parametrize("act", ["relu", "sine", "gelu", "tanh"])
def test_fused_mlp_reductions_equal_reference_maps(act, compiled, monkeypatch):
    """The fused HeatMap/NeuronTotals path (no maps: the compiled CPU kernel for identity/relu, else pixel
    tiles) equals reductions of the loop reference, for any tile size (tiles of 7 pixels do not divide the
    60 pixels), with the same residual."""
    from xinc.canvas import kernels
    from xinc.canvas.rules import MLPRule

    if compiled:
        pytest.importorskip("numba", reason="numba not installed: the compiled kernel path cannot run")
    monkeypatch.setattr(kernels, "ENABLED", compiled)
    m = tiny_ffn(act, 3)
    calls = []
    real_reduce = MLPRule.reduce
    monkeypatch.setattr(MLPRule, "reduce", lambda self, *a: calls.append(a) or real_reduce(self, *a))
    for tile in (7 * 5, 1 << 17):
        monkeypatch.setattr(MLPRule, "tile_elems", {"cpu": tile, "cuda": tile})
        for layer in m.layer_names:
            A = ref_mlp(m, layer).abs().double()
            heat, tot = HeatMap(), NeuronTotals()
            res = stream_canvas(m, layer, [0], [heat, tot])
            torch.testing.assert_close(heat.result()[0], A.sum(0).float(), **TOL)
            torch.testing.assert_close(tot.result()[0], A.sum(dim=(1, 2)).float(), **TOL)
            streamed = stream_canvas(m, layer, [0], HeatMap(), fused=False)
            assert res[0]["identity_rel"] < 1e-5
            assert res[0].keys() == streamed[0].keys() == {"identity_max_abs", "identity_rel", "gap_max_abs", "gap_rel"}
            for key, val in streamed[0].items():  # the fused path reports the same identity and gap
                assert res[0][key] == pytest.approx(val, rel=1e-4, abs=1e-6), key
            part = HeatMap()  # a neuron sub-range goes through the fused path too
            stream_canvas(m, layer, [0], part, neurons=(1, 4))
            torch.testing.assert_close(part.result()[0], A[1:4].sum(0).float(), **TOL)
    assert len(calls) == 2 * 3 * 2  # tiles x layers x (whole, sub-range): the fused path was taken


def test_compiled_mlp_kernel_matches_torch_tiles(monkeypatch):
    """The numba kernel (identity / relu, heat, totals, the additive part) gives the PyTorch tiles' numbers
    on the paper-sized layer (up to float32 summation order), for the whole layer and a neuron sub-range,
    and is what the fused path runs when it applies."""
    pytest.importorskip("numba", reason="numba not installed: the compiled kernel path cannot run")
    from xinc.canvas import kernels

    g = torch.Generator().manual_seed(3)
    a = torch.relu(torch.randn(4096, 40, generator=g))
    s = torch.randn(40, generator=g)
    for phi, beta in (("identity", 0.01), ("relu", -0.02)):
        for lo, hi in ((0, 40), (5, 33)):
            heat, part, tot = kernels.mlp_reduce(a, lo, hi, s[lo:hi], beta, phi, totals=True)
            x = (a[:, lo:hi] * s[lo:hi] + beta).double()
            y = x.relu() if phi == "relu" else x.abs()
            torch.testing.assert_close(heat.double(), y.sum(1), rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(part.double(), x.sum(1), rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(tot, y.sum(0), rtol=1e-5, atol=1e-4)
            only_heat = kernels.mlp_reduce(a, lo, hi, s[lo:hi], beta, phi)
            assert only_heat[2] is None and torch.equal(only_heat[1], part)
    assert kernels.mlp_reduce(a, 0, 40, s, 0.0, "sine") is None  # not the kernel's: PyTorch tiles
    assert kernels.mlp_reduce(a.double(), 0, 40, s, 0.0, "relu") is None
    monkeypatch.setattr(kernels, "ENABLED", False)
    assert kernels.mlp_reduce(a, 0, 40, s, 0.0, "relu") is None
    monkeypatch.setattr(kernels, "ENABLED", True)
    used = []
    real = kernels.mlp_reduce
    monkeypatch.setattr(kernels, "mlp_reduce", lambda *a, **k: used.append(1) or real(*a, **k))
    stream_canvas(tiny_ffn("relu", 3), "layer3", [0], HeatMap())
    assert used


def test_compiled_gelu_is_as_accurate_as_torch():
    """The block kernel's GELU (a rational erf fit, vectorised) is within float32 round-off of the exact GELU, no
    further from it than PyTorch's float32 gelu, on a dense grid and on a real block's activations; relu/silu
    equal PyTorch's."""
    from xinc.canvas import kernels

    if not kernels.available():
        pytest.skip("numba is not installed: no compiled kernels to test")
    x = torch.cat([torch.linspace(-12, 12, 400_001), torch.randn(200_000, generator=torch.Generator().manual_seed(0))
                   * 3, torch.tensor([0.0, -0.0, 1e-30, -1e-30, 1e-8, 3.9, 5.66, 5.7, -5.7, 40.0, -40.0])])
    m = tiny_nerv("three_blocks_s1s2s3")
    with torch.no_grad():
        tr = m.trace_embedding(m.embed([0]))
    x = torch.cat([x, tr.inputs["block2"][0].reshape(-1) * 4, tr.inputs["head"][0].reshape(-1)])
    xd = x.double()
    exact = 0.5 * xd * (1 + torch.erf(xd / 2 ** 0.5))
    scale = xd.abs().clamp_min(1e-30)
    ours = (kernels.activation(x, "gelu").double() - exact).abs() / scale
    theirs = (F.gelu(x).double() - exact).abs() / scale
    assert ours.max() <= 2.5e-7 and ours.max() <= 1.5 * theirs.max()  # float32 round-off of x (1 + erf) / 2
    pos = x > 0  # for positive x within 2.5e-7 of the result itself
    assert ((kernels.activation(x, "gelu").double() - exact).abs()[pos] / exact[pos]).max() <= 2.5e-7
    torch.testing.assert_close(kernels.activation(x, "relu"), F.relu(x), rtol=0, atol=0)
    torch.testing.assert_close(kernels.activation(x, "silu"), F.silu(x), rtol=2e-6, atol=1e-30)
    assert torch.isnan(kernels.activation(torch.tensor([float("nan")]), "gelu")).all()


def _chain_reference(z: torch.Tensor, subs: torch.Tensor, stages, act) -> torch.Tensor:
    """The paper block rule's stand-in chain written out directly, one map at a time: act, place at the sub-pixel
    (route) or repeat (nearest upsampling), then a k x k zero-padded mean as k^2 shifted copies; act between
    stages. Shares nothing with the kernels' phase taps or merged composites."""
    out = []
    for zj, sj in zip(z, subs.tolist()):
        A = act(zj.double())
        for q, (r, k, route) in enumerate(stages):
            if route:
                R = A.new_zeros(A.shape[0] * r, A.shape[1] * r)
                R[sj // r::r, sj % r::r] = A
            else:
                R = A.repeat_interleave(r, 0).repeat_interleave(r, 1)
            P = F.pad(R, (k // 2,) * 4)
            A = sum(P[dy:dy + R.shape[0], dx:dx + R.shape[1]] for dy in range(k) for dx in range(k)) / (k * k)
            A = act(A) if q < len(stages) - 1 else A
        out.append(A)
    return torch.stack(out)


@pytest.mark.parametrize("act", ["gelu", "identity"])
@pytest.mark.parametrize("stages", [((4, 3, True), (2, 3, False), (2, 3, False)),  # the paper NeRV's block1: merged
                                    ((3, 5, True), (2, 3, False), (1, 3, False)),  # route into 5x5: not single
                                    ((2, 3, True), (3, 1, False), (2, 5, False), (2, 3, False))],
                         ids=["paper-block1", "no-merge", "four-stages"])
def test_block_kernel_stages_equal_explicit_chain(stages, act):
    """The compiled block kernel (first two stages run as one composite linear map where the activation moves
    before the first; the gap summed inside the last activation; heat/totals straight from the last stage) equals
    the chain written out directly, on a 2x3 grid where nearly every output pixel sees a map edge, for every
    sub-pixel: the maps, and the heat map, totals and signed sum of the reduce path."""
    from xinc.canvas import kernels
    from xinc.canvas.rules import chain_taps

    if not kernels.available():
        pytest.skip("numba is not installed: no compiled kernels to test")
    r0 = stages[0][0]
    n = 2 * r0 * r0 + 1  # every sub-pixel twice (pairs share the last stage's taps) and an odd map out
    z = torch.randn(n, 2, 3, generator=torch.Generator().manual_seed(1)) * 2
    sub = torch.arange(n) % (r0 * r0)
    zeros = torch.zeros_like(sub)
    sel = [(sub % r, sub // r) if route else (zeros, zeros) for r, _, route in stages]
    hsel, vsel = torch.stack([h for h, _ in sel]), torch.stack([v for _, v in sel])
    rs, taps = chain_taps(tuple(stages))
    fn = {"gelu": lambda v: F.gelu(v), "identity": lambda v: v}[act]
    ref = _chain_reference(z, sub, stages, fn)
    single = kernels._single_taps(rs, taps[1], taps[2])
    ok = kernels.merge_tables(rs, taps, single, kernels.ACTS[act], hsel.numpy(), vsel.numpy(), 2, 3)[0]
    assert ok.all() if stages[0][:2] == (4, 3) or act == "identity" else not ok.any()  # the merged path is taken
    for threads in (1, 2):
        maps = kernels.block_chain(z, act, True, rs, taps, hsel, vsel, threads=threads)
        torch.testing.assert_close(maps.double(), ref, rtol=1e-5, atol=1e-6)
        heat, gap, tot = kernels.block_chain(z, act, True, rs, taps, hsel, vsel, reduce=True, threads=threads)
        torch.testing.assert_close(heat.double(), ref.abs().sum(0), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(gap.double(), ref.sum(0), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(tot, ref.abs().sum((1, 2)), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("act", ["relu", "silu"])
def test_compiled_block_kernel_other_activations(act, monkeypatch):
    """ReLU/SiLU decoders: the compiled block kernel's heat map, totals and residuals equal the eager path's."""
    from xinc.canvas import kernels

    if not kernels.available():
        pytest.skip("numba is not installed: no compiled kernels to test")
    m = tiny_nerv("two_blocks_s2s1_table", act=act)
    for layer in ("block1", "block2"):
        got = {}
        for compiled in (True, False):
            monkeypatch.setattr(kernels, "ENABLED", compiled)
            heat, tot = HeatMap(), NeuronTotals()
            res = stream_canvas(m, layer, [1], [heat, tot])
            got[compiled] = heat.result()[1], tot.result()[1], res[1]
        (h1, t1, r1), (h0, t0, r0) = got[True], got[False]
        torch.testing.assert_close(h1, h0, **TOL)
        torch.testing.assert_close(t1, t0, **TOL)
        for key, val in r0.items():
            assert r1[key] == pytest.approx(val, rel=1e-4, abs=1e-6), key


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
@pytest.mark.parametrize("shape", list(NERV_SHAPES))
def test_fused_block_reductions_equal_reference_maps(shape, compiled, monkeypatch):
    """The paper block rule's fused HeatMap/NeuronTotals (phase planes of neuron tiles, or the compiled stage
    kernels; no maps) equal the reductions of the loop reference for tiles of 1, 3 (not dividing K) and all
    neurons, with the residual."""
    from xinc.canvas import kernels
    from xinc.canvas.rules import ConvBlockPaperRule

    if compiled and not kernels.available():
        pytest.skip("numba is not installed: no compiled kernels to test")
    monkeypatch.setattr(kernels, "ENABLED", compiled)
    m = tiny_nerv(shape)
    calls = []
    real_reduce = ConvBlockPaperRule.reduce
    monkeypatch.setattr(ConvBlockPaperRule, "reduce", lambda self, *a: calls.append(a) or real_reduce(self, *a))
    hw = m.config.height * m.config.width
    for tile in (hw, 3 * hw, 1 << 30):
        monkeypatch.setattr(ConvBlockPaperRule, "tile_elems", {"cpu": tile, "cuda": tile})
        # the compiled path sizes tiles by the last stage's input, 1/r^2 of the output
        monkeypatch.setattr(ConvBlockPaperRule, "kernel_tile_elems", tile // m.blocks[-1].stride ** 2)
        for bi in range(len(m.blocks)):
            layer = f"block{bi + 1}"
            A = ref_block_paper(m, bi, 2)[0].abs().double()
            heat, tot, steps = HeatMap(), NeuronTotals(), []
            res = stream_canvas(m, layer, [2], [heat, tot], progress=steps.append)
            torch.testing.assert_close(heat.result()[2], A.sum(0).float(), **TOL)
            torch.testing.assert_close(tot.result()[2], A.sum(dim=(1, 2)).float(), **TOL)
            K, per = A.shape[0], max(1, tile // hw)
            assert steps == [min(per, K - a) for a in range(0, K, per)]  # progress reported tile by tile
            streamed = stream_canvas(m, layer, [2], HeatMap(), fused=False)
            assert res[2]["identity_rel"] < 1e-5 and res[2].keys() == streamed[2].keys()
            for key, val in streamed[2].items():  # identity and output-side gap, fused or from the maps
                assert res[2][key] == pytest.approx(val, rel=1e-4, abs=1e-6), key
            part = NeuronTotals()  # a neuron sub-range goes through the fused path too
            stream_canvas(m, layer, [2], part, neurons=(1, 5))
            got = part.result()[2]
            torch.testing.assert_close(got[1:5], A[1:5].sum(dim=(1, 2)).float(), **TOL)
            assert not got[:1].any() and not got[5:].any()
    assert len(calls) == 3 * len(m.blocks) * 2  # tiles x blocks x (whole, sub-range): the fused path was taken
    assert all(c[3] is None for c in calls)  # no caller memory plan: the rule's own tiles
    planned = HeatMap()  # an explicit chunk size caps the fused tiles too
    stream_canvas(m, "block1", [2], planned, chunk_neurons=2)
    assert calls[-1][3] == 2
    torch.testing.assert_close(planned.result()[2], ref_block_paper(m, 0, 2)[0].abs().sum(0), **TOL)


@pytest.mark.parametrize("shape", list(NERV_SHAPES))
def test_fused_head_reductions_equal_reference_maps(shape, monkeypatch):
    """The head's fused HeatMap/NeuronTotals (a depthwise conv per output channel over bands of image rows,
    no maps) equal reductions of the loop reference: bands of one row (halo rows and zero rows at the frame
    edges for 3x3/5x5 kernels) and whole frames, input tiles capped by chunk_neurons, neuron sub-ranges
    starting/ending inside a row of kernels, and the per-channel form."""
    from xinc.canvas.rules import ConvHeadRule

    m = tiny_nerv(shape)
    calls = []
    real_reduce = ConvHeadRule.reduce
    monkeypatch.setattr(ConvHeadRule, "reduce", lambda self, *a: calls.append(a) or real_reduce(self, *a))
    A = ref_head(m, 1).abs().double()
    cin, W = m.head.in_channels, m.config.width
    for tile in (W, 1 << 30):  # one image row per band / everything at once
        monkeypatch.setattr(ConvHeadRule, "tile_elems", {"cpu": tile, "cuda": tile})
        for kw in ({}, {"chunk_neurons": 3}, {"neurons": (1, 3 * cin - 2)}):
            heat, tot = HeatMap(), NeuronTotals()
            res = stream_canvas(m, "head", [1], [heat, tot], **kw)
            a, b = kw.get("neurons", (0, 3 * cin))
            torch.testing.assert_close(heat.result()[1], A[a:b].sum(0).float(), **TOL)
            torch.testing.assert_close(tot.result()[1][a:b], A[a:b].sum(dim=(1, 2)).float(), **TOL)
            if "neurons" not in kw:
                streamed = stream_canvas(m, "head", [1], HeatMap(), fused=False)
                assert res[1]["identity_rel"] < 1e-5 and res[1]["gap_rel"] < 1e-5
                assert res[1].keys() == streamed[1].keys()
                for key, val in streamed[1].items():
                    assert res[1][key] == pytest.approx(val, rel=1e-3, abs=1e-6), key
        pc_heat, pc_tot = HeatMap(), NeuronTotals()
        stream_canvas(m, "head", [1], [pc_heat, pc_tot], per_channel=True)
        Apc = A.view(cin, 3, *A.shape[1:])
        torch.testing.assert_close(pc_heat.result()[1], Apc.sum(0).float(), **TOL)
        torch.testing.assert_close(pc_tot.result()[1], Apc.sum(dim=(2, 3)).float(), **TOL)
    assert len(calls) == 2 * 4  # tiles x (whole, chunked, sub-range, per-channel): the fused path was taken
    assert calls[1][3] == 3  # chunk_neurons caps the input tiles


@pytest.mark.parametrize("small_map", [0, 1 << 30])
def test_head_maps_equal_reference_for_both_conv_paths(small_map, monkeypatch):
    """Head maps are the loop reference's, whether whole rows of kernels come from depthwise convs per output
    (small maps) or one plain conv per input channel (large maps), in any chunking."""
    import xinc.canvas.rules as rules

    monkeypatch.setattr(rules, "SMALL_MAP", small_map)
    for shape in NERV_SHAPES:
        m = tiny_nerv(shape)
        ref = ref_head(m, 1)
        for chunk in (None, 4, 7):
            torch.testing.assert_close(compute_canvas(m, "head", 1, chunk_neurons=chunk).maps, ref, **TOL)


def test_fused_path_only_for_standard_reducers():
    """A HeatMap subclass that overrides update() gets the maps; mixing in a custom reducer streams maps too."""
    m = tiny_ffn("relu", 3)
    seen = []

    class Peek(HeatMap):
        def update(self, start, maps):
            seen.append(maps.shape)
            super().update(start, maps)

    heat = Peek()
    stream_canvas(m, "layer2", [0], heat)
    assert seen and sum(s[0] for s in seen) == 7
    both = [HeatMap(), Collect()]
    stream_canvas(m, "layer2", [0], both)
    torch.testing.assert_close(both[0].result()[0], both[1].result()[0].abs().sum(0), **TOL)
    torch.testing.assert_close(heat.result()[0], both[0].result()[0], **TOL)


def test_per_channel_reducers_keep_channel_axis():
    f = tiny_ffn("relu", 3)
    reds = [HeatMap(), NeuronTotals(), GroupSums(torch.zeros(6, 10, dtype=torch.long), 1)]
    stream_canvas(f, "layer3", None, reds, per_channel=True)
    assert reds[0].result()[0].shape == (3, 6, 10)
    assert reds[1].result()[0].shape == (7, 3)
    assert reds[2].result()[0].shape == (7, 3, 1)


# ---------------------------------------------------------------- errors


def test_errors_are_clear():
    m = tiny_nerv("one_block_s3_k5")
    f = tiny_ffn()
    with pytest.raises(XincError, match="does not exist"):
        compute_canvas(m, "block7")
    with pytest.raises(XincError, match="does not exist"):
        layer_info(f, "head")
    with pytest.raises(XincError, match="outside"):
        compute_canvas(m, "head", 3)
    with pytest.raises(XincError, match="outside"):
        compute_canvas(f, "layer1", 1)
    with pytest.raises(XincError, match="mode"):
        compute_canvas(m, "head", mode="lrp")
    with pytest.raises(XincError, match="per-channel"):
        compute_canvas(m, "block1", per_channel=True)
    with pytest.raises(XincError, match="embedding"):
        compute_canvas(m, "head", embedding=torch.zeros(5, 1, 1))
    with pytest.raises(XincError, match="labels"):
        stream_canvas(m, "head", [0], GroupSums(torch.zeros(2, 2, dtype=torch.long), 2))
    with pytest.raises(XincError, match="outside"):
        stream_canvas(m, "head", [0], GroupSums(torch.full((6, 9), 5), 2))
    with pytest.raises(XincError, match="chunk_neurons"):
        compute_canvas(m, "head", chunk_neurons=0)
    bad = tiny_nerv("one_block_s3_k5")
    bad.head = torch.nn.Conv2d(5, 3, 3, padding=1)  # weights no longer match the config (4 channels)
    with pytest.raises(XincError, match="do not match"):
        compute_canvas(bad, "head")
