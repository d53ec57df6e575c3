"""The generic canvas engine (xinc.explain) on models written here in plain PyTorch, without our classes.

Every registered kind must have an entry in KIND_CASES (a tiny model where it sits downstream of the
explained layer): its fast linear transfer is checked against torch.func jvp of its reference, its paper
stand-in runs, and piecewise-linear kinds must sum to the output to float32 round-off.
"""

from __future__ import annotations

import operator

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import xinc
from xinc.canvas import Collect, HeatMap, NeuronTotals, compute_canvas, explain, explain_stream
from xinc.canvas.explainer import generic_run
from xinc.canvas.kinds import load_kinds
from xinc.errors import XincError
from xinc.models import FFN, FFNConfig, NeRV, NeRVConfig

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                                reason="no CUDA device on this machine"))]
TOL = dict(rtol=1e-4, atol=1e-5)


def seeded(module: nn.Module, seed: int = 0, std: float = 0.5) -> nn.Module:
    """Parameters drawn from a seeded generator (larger than default init, so nonlinearities matter)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std)
    return module.eval()


def grid(h: int, w: int, d: int = 2) -> torch.Tensor:
    """An (h, w, d) coordinate grid in [-1, 1]^2 (extra dims zero)."""
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    g = torch.stack([ys, xs], -1)
    return torch.cat([g, torch.zeros(h, w, d - 2)], -1) if d > 2 else g


class Fn(nn.Module):
    """A conv layer `c` (4 -> 6 channels) followed by `tail(h)` and a 3-channel 3x3 head conv."""

    def __init__(self, tail, mid: int = 6, groups: int = 1) -> None:
        super().__init__()
        self.c = nn.Conv2d(4, 6, 3, padding=1, groups=groups)
        self.tail_fn = tail
        self.head = nn.Conv2d(mid, 3, 3, padding=1)

    def forward(self, x):
        return self.head(self.tail_fn(self, self.c(x)))


class Mlp(nn.Module):
    """A coordinate MLP: (H, W, 2) -> Linear `l1` -> tail(h) -> Linear(->3)."""

    def __init__(self, tail, mid: int = 8) -> None:
        super().__init__()
        self.l1 = nn.Linear(2, 8)
        self.tail_fn = tail
        self.out = nn.Linear(mid, 3)

    def forward(self, x):
        return self.out(self.tail_fn(self, self.l1(x)))


class WithModules(nn.Module):
    def __init__(self, *mods) -> None:
        super().__init__()
        self.mods = nn.ModuleList(mods)


def conv_case(tail, extra: nn.Module | None = None, mid: int = 6):
    m = Fn(tail, mid)
    if extra is not None:
        m.extra = extra
    return seeded(m), torch.randn(1, 4, 5, 6, generator=torch.Generator().manual_seed(1)), "c"


def mlp_case(tail, extra: nn.Module | None = None, mid: int = 8):
    m = Mlp(tail, mid)
    if extra is not None:
        m.extra = extra
    return seeded(m), grid(5, 7), "l1"


# kind name -> () -> (model, inputs, layer); each model has the kind downstream of the layer
KIND_CASES = {
    "relu": lambda: conv_case(lambda s, h: torch.relu(h)),
    "leaky_relu": lambda: conv_case(lambda s, h: F.leaky_relu(h, 0.1)),
    "gelu": lambda: conv_case(lambda s, h: s.extra(h), nn.GELU()),
    "silu": lambda: conv_case(lambda s, h: F.silu(h)),
    "tanh": lambda: mlp_case(lambda s, h: torch.tanh(h)),
    "sigmoid": lambda: mlp_case(lambda s, h: torch.sigmoid(h)),
    "sine": lambda: mlp_case(lambda s, h: torch.sin(30.0 * h)),
    "linear": lambda: mlp_case(lambda s, h: s.extra(torch.relu(h)), nn.Linear(8, 5), mid=5),
    "conv2d": lambda: conv_case(lambda s, h: s.extra(torch.relu(h)), nn.Conv2d(6, 6, 5, padding=2, groups=6)),
    "pixel_shuffle": lambda: conv_case(lambda s, h: F.pixel_shuffle(torch.cat([h, h[:, :2]], 1), 2), mid=2),
    "upsample": lambda: conv_case(lambda s, h: F.interpolate(h, scale_factor=2, mode="bilinear",
                                                             align_corners=False)),
    "add": lambda: conv_case(lambda s, h: torch.relu(h) + h * 0.5 + 1.0),
    "mul": lambda: conv_case(lambda s, h: h * s.extra.weight.view(1, -1, 1, 1), nn.Linear(1, 6)),
    "layer_norm": lambda: conv_case(lambda s, h: s.extra(h.permute(0, 2, 3, 1)).permute(0, 3, 1, 2),
                                    nn.LayerNorm(6)),
    "instance_norm": lambda: conv_case(lambda s, h: s.extra(h), nn.InstanceNorm2d(6, affine=True)),
    "cat": lambda: conv_case(lambda s, h: torch.cat([h, torch.ones_like(h[:, :2])], 1), mid=8),
    "layout": lambda: mlp_case(lambda s, h: h.reshape(5, 7, 2, 4).flatten(2).contiguous()),
    "identity": lambda: conv_case(lambda s, h: s.extra(h), nn.Dropout(0.3)),
}


def test_every_registered_kind_has_a_test_case():
    missing = sorted(set(load_kinds()) - set(KIND_CASES))
    assert not missing, f"kinds without a test entry in KIND_CASES: {missing}"


def _kinds_on_path(model, x, layer) -> set[str]:
    run = generic_run(model, x, layer, "linear")
    return {k.name for k in run.rule.plan.kinds}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", sorted(KIND_CASES))
def test_kind_linear_transfer_matches_jvp(kind, device):
    model, x, layer = KIND_CASES[kind]()
    assert kind in _kinds_on_path(model, x, layer), f"the {kind} case does not exercise {kind}"
    fast = generic_run(model, x, layer, "linear", per_channel=True, device=device)
    ref = generic_run(model, x, layer, "linear", per_channel=True, device=device, use_jvp=True)
    a = torch.cat([m for _, m in fast.chunks()])
    b = torch.cat([m for _, m in ref.chunks()])
    torch.testing.assert_close(a, b, **TOL)
    assert fast.residual["identity_rel"] < 1e-5
    if fast.info.exact:  # piecewise-linear path: the maps sum to the output
        assert fast.residual["gap_rel"] < 1e-5, fast.residual


@pytest.mark.parametrize("kind", sorted(KIND_CASES))
def test_kind_paper_mode_runs(kind):
    model, x, layer = KIND_CASES[kind]()
    cv = explain(model, x, layer=layer, mode="paper")
    assert cv.maps.dim() == 3 and torch.isfinite(cv.maps).all()
    assert cv.residual["identity_rel"] < 1e-5  # sum_k z_k is the layer output


# ------------------------------------------------------------------------- the paper path = today's rules


class NeRVTail(nn.Module):
    """Our NeRV's blocks and head, as a foreign model would write them (input: block1's input)."""

    def __init__(self, nerv: NeRV) -> None:
        super().__init__()
        self.blocks, self.head, self.act = nerv.blocks, nerv.head, nerv.act

    def forward(self, x):
        for blk in self.blocks:
            x = self.act(F.pixel_shuffle(blk.conv(x), blk.stride))
        return self.head(x)


def tiny_nerv(strides, ks, widths, fc_hw, head_ks, act="gelu", seed=0) -> NeRV:
    total = 1
    for s in strides:
        total *= s
    cfg = NeRVConfig(height=fc_hw[0] * total, width=fc_hw[1] * total, num_frames=2, embed="pe_1.25_8",
                     fc_hw=fc_hw, fc_dim=5, strides=strides, kernel_sizes=ks, widths=widths, head_ks=head_ks,
                     act=act)
    return seeded(NeRV(cfg), seed)


NERVS = {"three_blocks": ([2, 1, 3], [3, 5, 1], [4, 3, 3], [2, 1], 3),
         "one_block": ([3], [5], [4], [2, 3], 5)}


@pytest.mark.parametrize("mode", ["paper", "linear"])
@pytest.mark.parametrize("shape", sorted(NERVS))
def test_generic_equals_fast_rules_on_nerv(shape, mode):
    nerv = tiny_nerv(*NERVS[shape])
    x = nerv.trace([1]).inputs["block1"]
    tail = NeRVTail(nerv)
    for i in range(len(nerv.blocks)):
        fast = compute_canvas(nerv, f"block{i + 1}", 1, mode=mode, per_channel=mode == "linear")
        gen = explain(tail, x, layer=f"blocks.{i}.conv", mode=mode, per_channel=mode == "linear")
        torch.testing.assert_close(gen.maps, fast.maps, rtol=1e-4, atol=1e-5)
        assert gen.pairs.shape == (fast.num_neurons, 2)
    fast = compute_canvas(nerv, "head", 1, mode=mode)
    gen = explain(tail, x, layer="head", mode=mode)
    torch.testing.assert_close(gen.maps, fast.maps, rtol=1e-5, atol=1e-6)
    assert gen.exact and fast.exact


def test_generic_mlp_last_layer_matches_fast_rule():
    g = torch.Generator().manual_seed(0)
    ffn = FFN(FFNConfig(height=6, width=10, hidden=7, layers=3, num_features=5), generator=g).eval()
    fast = compute_canvas(ffn, "layer3", mode="paper")
    enc = ffn.encode(ffn.coords())
    tail = nn.Sequential(ffn.layers[0], nn.ReLU(), ffn.layers[1], nn.ReLU(), ffn.layers[2])
    gen = explain(tail, enc.reshape(6, 10, -1), layer="4", mode="paper")
    n, m = ffn.layers[2].in_features, ffn.layers[2].out_features
    torch.testing.assert_close(gen.maps.reshape(n, m, 6, 10).sum(1), fast.maps, rtol=1e-5, atol=1e-5)


def test_explain_on_our_models_dispatches_to_fast_rules():
    nerv = tiny_nerv(*NERVS["one_block"])
    cv = xinc.explain(nerv, layer="block1", mode="paper", frame=1)
    ref = compute_canvas(nerv, "block1", 1, mode="paper")
    assert cv.rule == ref.rule and torch.equal(cv.maps, ref.maps)
    assert cv.pairs[7].tolist() == [7 // ref.c_out, 7 % ref.c_out]


# ----------------------------------------------------------------------- exactness, chunking, streaming


class PWLDecoder(nn.Module):
    """Piecewise-linear decoder: conv, PixelShuffle, ReLU, nearest and bilinear upsampling, residual add."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.c2 = nn.Conv2d(2, 4, 3, padding=1, padding_mode="reflect")
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.c3 = nn.Conv2d(4, 4, 3, padding=1, groups=4)
        self.head = nn.Conv2d(4, 3, 1)

    def forward(self, x):
        h = F.leaky_relu(F.pixel_shuffle(self.c1(x), 2), 0.2)
        h = torch.relu(self.c2(h))
        h = self.up(h)
        h = h + torch.relu(self.c3(h))
        h = F.interpolate(h, scale_factor=1.5, mode="bilinear", align_corners=False)
        return self.head(h)


@pytest.mark.parametrize("layer", ["c1", "c2", "c3", "head"])
def test_completeness_to_roundoff_on_piecewise_linear_model(layer):
    model = seeded(PWLDecoder())
    x = torch.randn(1, 3, 4, 5, generator=torch.Generator().manual_seed(3))
    cv = explain(model, x, layer=layer, mode="linear", per_channel=True)
    out = model(x)[0]
    torch.testing.assert_close(cv.maps.double().sum(0), out.double(), rtol=1e-5, atol=1e-5)
    assert cv.exact and cv.residual["gap_rel"] < 1e-5


@pytest.mark.parametrize("mode", ["linear", "paper"])
def test_chunking_invariance(mode):
    model = seeded(PWLDecoder())
    x = torch.randn(1, 3, 4, 5, generator=torch.Generator().manual_seed(3))
    full = explain(model, x, layer="c1", mode=mode)
    for chunk in (1, 5, 13):
        cv = explain(model, x, layer="c1", mode=mode, chunk_neurons=chunk)
        torch.testing.assert_close(cv.maps, full.maps, rtol=1e-6, atol=1e-6)
        assert abs(cv.residual["gap_max_abs"] - full.residual["gap_max_abs"]) < 1e-4
    part = explain(model, x, layer="c1", mode=mode, neurons=(3, 9))
    torch.testing.assert_close(part.maps, full.maps[3:9])
    assert part.pairs.tolist() == full.pairs[3:9].tolist()


def test_stream_reducers_equal_full_canvas():
    model = seeded(PWLDecoder())
    x = torch.randn(1, 3, 4, 5, generator=torch.Generator().manual_seed(3))
    full = explain(model, x, layer="c1", mode="linear")
    heat, tot, col = HeatMap(), NeuronTotals(), Collect()
    res = explain_stream(model, x, "c1", [heat, tot, col], mode="linear", memory_budget_mb=0.01)
    torch.testing.assert_close(heat.result()[0], full.maps.abs().sum(0))
    torch.testing.assert_close(tot.result()[0], full.maps.abs().sum((1, 2)))
    torch.testing.assert_close(col.result()[0], full.maps)
    assert res.keys() == full.residual.keys()
    assert all(abs(res[k] - full.residual[k]) < 1e-5 for k in res)


# --------------------------------------------------------------- field models written here in plain PyTorch


class Siren(nn.Module):
    """SIREN (Sitzmann et al. 2020) on a coordinate grid: sin(w0 * (W x + b)) layers, linear output."""

    def __init__(self, hidden: int = 6, layers: int = 3, w0: float = 30.0) -> None:
        super().__init__()
        dims = [2] + [hidden] * layers
        self.net = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.last = nn.Linear(hidden, 3)
        self.w0 = w0

    def forward(self, x):
        for lin in self.net:
            x = torch.sin(self.w0 * lin(x))
        return self.last(x)


def siren_tail(model: Siren, params: dict, h: torch.Tensor) -> torch.Tensor:
    """Siren downstream of net.1 as a function of its output and the (bias) parameters, for the jvp reference."""
    x = torch.sin(model.w0 * h)
    x = torch.sin(model.w0 * F.linear(x, model.net[2].weight, params["net.2.bias"]))
    return F.linear(x, model.last.weight, params["last.bias"])


def test_siren_linear_maps_equal_jvp_of_tangent_network():
    model = seeded(Siren(), std=0.3)
    x = grid(6, 8)
    cv = explain(model, x, layer="net.1", mode="linear", per_channel=True)
    lin = model.net[1]
    with torch.no_grad():
        a = torch.sin(model.w0 * model.net[0](x))
        y = lin(a)
    biases = {"net.2.bias": model.net[2].bias.detach(), "last.bias": model.last.bias.detach()}
    K = lin.in_features * lin.out_features
    ref = []
    for i in range(lin.in_features):
        for o in range(lin.out_features):
            z = torch.zeros_like(y)
            z[..., o] = a[..., i] * lin.weight[o, i] + lin.bias[o] / lin.in_features
            _, t = torch.func.jvp(lambda h, p: siren_tail(model, p, h), (y, biases),
                                  (z.detach(), {k: v / K for k, v in biases.items()}))
            ref.append(t.permute(2, 0, 1))
    torch.testing.assert_close(cv.maps, torch.stack(ref), rtol=1e-4, atol=1e-5)
    assert not cv.exact and cv.residual["identity_rel"] < 1e-5
    paper = explain(model, x, layer="net.1", mode="paper")
    assert paper.maps.shape == (K, 6, 8)


class ConvNeXtBlock(nn.Module):
    """ConvNeXt block: depthwise 7x7 conv -> LayerNorm (channels last) -> Linear -> GELU -> Linear -> + x."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.dw = nn.Conv2d(c, c, 7, padding=3, groups=c)
        self.norm = nn.LayerNorm(c)
        self.pw1, self.pw2 = nn.Linear(c, 2 * c), nn.Linear(2 * c, c)

    def forward(self, x):
        h = self.norm(self.dw(x).permute(0, 2, 3, 1))
        h = self.pw2(F.gelu(self.pw1(h))).permute(0, 3, 1, 2)
        return x + h


class ConvNeXtDecoder(nn.Module):
    """HNeRV-style decoder: stem conv, bilinear upsampling, ConvNeXt blocks, head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(4, 6, 3, padding=1)
        self.block1 = ConvNeXtBlock(6)
        self.block2 = ConvNeXtBlock(6)
        self.head = nn.Conv2d(6, 3, 3, padding=1)

    def forward(self, x):
        h = F.interpolate(self.stem(x), scale_factor=2, mode="bilinear", align_corners=False)
        return self.head(self.block2(self.block1(h)))


def test_convnext_decoder_both_modes():
    model = seeded(ConvNeXtDecoder(), std=0.3)
    x = torch.randn(1, 4, 3, 4, generator=torch.Generator().manual_seed(2))
    lin = explain(model, x, layer="block1.dw", mode="linear", per_channel=True)
    assert lin.maps.shape == (6, 3, 6, 8) and lin.residual["identity_rel"] < 1e-5
    ref = generic_run(model, x, "block1.dw", "linear", per_channel=True, use_jvp=True)
    torch.testing.assert_close(lin.maps, torch.cat([m for _, m in ref.chunks()]), **TOL)
    assert not lin.exact  # GELU: the gap is the linearisation error, reported
    paper = explain(model, x, layer="stem", mode="paper")
    assert paper.maps.shape == (24, 6, 8) and torch.isfinite(paper.maps).all()


class FiLMBlock(nn.Module):
    """Conv -> ReLU -> per-channel FiLM scale/shift from a conditioning vector -> head."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 5, 3, padding=1)
        self.film = nn.Linear(4, 10)
        self.head = nn.Conv2d(5, 3, 1)

    def forward(self, x, cond):
        gamma, beta = self.film(cond).chunk(2, -1)
        h = torch.relu(self.conv(x))
        return self.head(h * gamma[:, :, None, None] + beta[:, :, None, None])


def test_film_block_is_exact_and_reports_the_shift():
    model = seeded(FiLMBlock())
    g = torch.Generator().manual_seed(5)
    x, cond = torch.randn(1, 3, 4, 6, generator=g), torch.randn(1, 4, generator=g)
    cv = explain(model, (x, cond), layer="conv", mode="linear", per_channel=True)
    torch.testing.assert_close(cv.maps.sum(0), model(x, cond)[0], rtol=1e-5, atol=1e-5)
    assert cv.exact
    paper = explain(model, (x, cond), layer="conv", mode="paper")
    assert paper.maps.shape == (15, 4, 6)


def test_encoding_concat_input_groups():
    class Enc(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.B = nn.Parameter(torch.randn(2, 3))
            self.table = nn.Parameter(torch.randn(4, 5, 2))
            self.l1, self.l2 = nn.Linear(8, 6), nn.Linear(6, 3)

        def forward(self, x):
            proj = x @ self.B
            feats = torch.cat([torch.sin(proj), torch.cos(proj), self.table], -1)
            return self.l2(torch.relu(self.l1(feats)))

    model = seeded(Enc())
    cv = explain(model, grid(4, 5), layer="l1", mode="linear")
    assert [(a, b) for _, a, b in cv.input_groups] == [(0, 3), (3, 6), (6, 8)]
    assert cv.exact and cv.maps.shape == (48, 4, 5)


# ------------------------------------------------------------------------------------------------ errors


def test_unsupported_op_names_the_op_and_module():
    class Odd(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c = nn.Conv2d(2, 2, 1)
            self.tail = nn.Sequential(nn.Softplus())

        def forward(self, x):
            return torch.cumsum(self.tail(self.c(x)), -1)

    model = seeded(Odd())
    x = torch.randn(1, 2, 3, 3)
    with pytest.raises(XincError) as e:
        explain(model, x, layer="c")
    msg = str(e.value)
    assert "Softplus module 'tail.0'" in msg and "cumsum" in msg and "generic=True" in msg
    cv = explain(model, x, layer="c", generic=True)  # torch.func linearises what has no kind
    assert torch.isfinite(cv.maps).all() and cv.residual["identity_rel"] < 1e-5


@pytest.mark.parametrize("kw, text", [
    (dict(layer="nope"), "choose one of c1"),
    (dict(layer="c1", mode="best"), "mode 'best'"),
    (dict(layer="c1", mode="paper", per_channel=True), "per_channel"),
    (dict(layer="c1", neurons=(5, 2)), "neurons"),
    (dict(layer="c1", output="missing"), "output 'missing'"),
])
def test_bad_arguments_are_one_clear_error(kw, text):
    model = seeded(PWLDecoder())
    with pytest.raises(XincError, match=text):
        explain(model, torch.randn(1, 3, 4, 5), **kw)


def test_ops_of_kinds_are_matched_by_identity():
    assert operator.add in load_kinds()["add"].functions


def test_small_memory_plan_bounds_chunks():
    model = seeded(PWLDecoder())
    x = torch.randn(1, 3, 4, 5, generator=torch.Generator().manual_seed(3))
    budget = 0.2  # MiB: a few neurons per chunk
    run = generic_run(model, x, "c1", "linear", memory_budget_mb=budget)
    per = run.rule.bytes_per_neuron()
    assert run.chunk == max(1, int(budget * 2**20 // per)) and run.chunk * per <= budget * 2**20
    assert max(m.shape[0] for _, m in run.chunks()) <= run.chunk
    # the probe's working set never exceeds dense states of the widest value (one-hot states are smaller)
    widest = max(op.out.numel() for op in run.rule.plan.ops)
    assert per <= (widest * 4 + run.rule.plan.out.numel()) * 4


def test_in_place_activations():
    model = seeded(nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(4, 3, 1)))
    x = torch.randn(1, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    cv = explain(model, x, layer="0", mode="linear", per_channel=True)
    torch.testing.assert_close(cv.maps.sum(0), model(x)[0], rtol=1e-5, atol=1e-5)  # traced values not overwritten
    assert cv.exact

    class Alias(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c = nn.Conv2d(2, 3, 1)

        def forward(self, x):
            h = self.c(x)
            return F.relu(h, inplace=True) + h

    with pytest.raises(XincError, match="in place"):
        explain(seeded(Alias()), x, layer="c")


def test_canvas_neuron_lookup_follows_pairs_for_grouped_convs():
    """Canvas.neuron(c_in, c_out) finds the row whose pairs entry is (c_in, c_out), depthwise convs included."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1, groups=4),
                          nn.ReLU(), nn.Conv2d(4, 3, 1))
    cv = xinc.explain(model, torch.randn(1, 2, 6, 8), layer="2", mode="linear")
    for k in range(cv.num_neurons):
        c_in, c_out = (int(v) for v in cv.pairs[k])
        assert cv.neuron(c_in, c_out) == k
    with pytest.raises(XincError):
        cv.neuron(0, 1)  # a depthwise conv has no (0, 1) slice
