"""Contribution rules, one per layer kind and mode, in a registry (like zennit rules / captum algorithms).

A rule is built once per (model, layer, mode, per_channel); `prepare(trace)` binds one frame's forward
pass; `compute(start, stop)` returns the maps of neurons [start, stop) together with this chunk's part
of the rule's *additive* quantity, whose sum over all chunks the engine compares with `target()` in the
same streaming pass (the identity the rule guarantees, residual keys `identity_*`); the engine also sums the
maps themselves and compares that with `gap_target()`, what the maps claim to decompose (keys `gap_*`).
Fused `reduce()` ranges hand that signed sum over as the value "gap". Extend with:

    @register_rule("conv-block:mymode")
    class MyRule(Rule): ...

Keys are "<kind>:<mode>" with kind in mlp | conv-head | conv-block.
"""

from __future__ import annotations

import functools
import math
import threading
from typing import ClassVar

import torch
import torch.nn.functional as F

from xinc.canvas import adjoint, adjoint_kernels, kernels
from xinc.canvas.reduce import LayerInfo
from xinc.errors import XincError
from xinc.models.trace import Trace

RULES: dict[str, type[Rule]] = {}


def register_rule(key: str):
    """Class decorator: make `cls` the rule for "<kind>:<mode>" (later registrations replace earlier ones)."""

    def deco(cls):
        RULES[key] = cls
        return cls

    return deco


def get_rule(kind: str, mode: str) -> type[Rule]:
    """The registered rule class for a layer kind and mode, or a clear error."""
    key = f"{kind}:{mode}"
    if key not in RULES:
        modes = sorted({k.split(":", 1)[1] for k in RULES if k.startswith(kind + ":")})
        raise XincError(f"mode {mode!r}: no contribution rule for {kind} layers; choose one of {', '.join(modes)}")
    return RULES[key]


def residual_from_blocks(blocks, prefix: str = "") -> dict[str, float]:
    """max |t - g| and that divided by max |g| (float64) over an iterable of (t, g) blocks of the total and
    the target, so a full-resolution layer never needs whole float64 temporaries."""
    diff = scale = 0.0
    for t, g in blocks:
        d = t.to(torch.float64) - g  # g promoted to float64 inside the subtraction, no separate copy
        diff = _nanmax(diff, d.abs_().max().item())
        scale = _nanmax(scale, float(g.abs().max()))  # the max of |g| is exact in g's own dtype
    rel = diff / max(scale, 1e-30) if math.isfinite(scale) else (0.0 if diff == 0 else math.nan)
    return {f"{prefix}max_abs": diff, f"{prefix}rel": rel}


def _nanmax(a: float, b: float) -> float:
    """max that keeps NaN (Python's max drops it depending on the order): a non-finite residual must show."""
    return a if a != a or b <= a else b


def residual_stats(total: torch.Tensor, target: torch.Tensor, prefix: str = "",
                   block_elems: int = 1 << 22) -> dict[str, float]:
    """max |total - target| and that divided by max |target| (float64, in flat blocks of block_elems)."""
    t, g = total.reshape(-1), target.reshape(-1)
    return residual_from_blocks(((t[a:a + block_elems], g[a:a + block_elems])
                                 for a in range(0, t.numel(), block_elems)), prefix)


def activation_slope(fn, z: torch.Tensor) -> torch.Tensor:
    """Elementwise derivative of the activation `fn` at the true pre-activation z (autograd, no graph kept)."""
    with torch.enable_grad():
        x = z.detach().clone().requires_grad_(True)
        (g,) = torch.autograd.grad(fn(x).sum(), x)
    return g.detach()


SMALL_MAP = 1 << 16  # pixels below which per-call overhead dominates a conv on CPU (see kernel_conv)


def _same_conv(u: torch.Tensor, i_a: int, i_b: int, w: torch.Tensor, b: torch.Tensor | None, groups: int,
               rows: tuple[int, int] | None = None) -> torch.Tensor:
    """'Same'-padded conv of input channels [i_a, i_b) of u (C_in, h, w) -> (C, h, w). rows=(r0, r1): only those
    output rows (a band), from the input rows they read plus zero rows beyond the frame, for cache-sized tiles."""
    p = w.shape[-1] // 2
    if rows is None:
        return F.conv2d(u[None, i_a:i_b], w, b, padding=p, groups=groups)[0]
    r0, r1 = rows
    lo, hi = max(0, r0 - p), min(u.shape[-2], r1 + p)
    slab = u[None, i_a:i_b, lo:hi]
    if lo > r0 - p or hi < r1 + p:
        slab = F.pad(slab, (0, 0, lo - (r0 - p), (r1 + p) - hi))
    return F.conv2d(slab, w, b, padding=(0, p), groups=groups)[0]


def depthwise_conv(u: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, i_a: int, i_b: int,
                   o: int, rows: tuple[int, int] | None = None) -> torch.Tensor:
    """z_{i,o} = u_i * W[o, i] + b_o / C_in for input channels [i_a, i_b) and one output channel o: (i_b - i_a,
    h, w) from one depthwise conv, oneDNN's fast path (a grouped conv with C_out filters per group is several
    times slower on CPU when C_out is small, as for the RGB head); rows as in _same_conv."""
    n = i_b - i_a
    b = None if bias is None else (bias / weight.shape[1])[o:o + 1].expand(n).contiguous()
    return _same_conv(u, i_a, i_b, weight[o, i_a:i_b, None], b, n, rows)


def band_conv(u: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, i: int,
              rows: tuple[int, int] | None = None) -> torch.Tensor:
    """z_{i,o} for every output o of one input channel i (C_out, h, w) by one plain 1 -> C_out conv; rows as
    in _same_conv."""
    b = None if bias is None else bias / weight.shape[1]
    return _same_conv(u, i, i + 1, weight[:, i:i + 1], b, 1, rows)


def kernel_conv(u: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, start: int,
                stop: int, by_output: bool = False) -> torch.Tensor:
    """Per-kernel convolutions z_k = u_i * W[o, i] + b_o / C_in for neurons k = i*C_out + o in [start, stop).

    A partial first row of kernels, the whole rows in between, a partial last row; only requested kernels are
    computed. Whole rows: one grouped conv over their input channels (group i yields its C_out kernels), or
    with by_output=True (a few outputs, the RGB head), measured faster on CPU: one depthwise conv per output
    channel, interleaved, for small maps (< 2^16 pixels); one plain 1 -> C_out conv per input channel for
    large ones, where a call costs far more than its overhead. u (C_in, h, w) -> (stop - start, h, w). 'Same'
    zero padding as the layer (odd kernels).
    """
    c_out, c_in, k = weight.shape[0], weight.shape[1], weight.shape[-1]
    b_all = None if bias is None else bias / c_in

    def row_part(i: int, o_a: int, o_b: int) -> torch.Tensor:
        b = None if b_all is None else b_all[o_a:o_b]
        return _same_conv(u, i, i + 1, weight[o_a:o_b, i:i + 1], b, 1)

    def full_rows(i_a: int, i_b: int) -> torch.Tensor:
        ni = i_b - i_a
        if by_output and u.shape[-2] * u.shape[-1] < SMALL_MAP:
            z = torch.stack([depthwise_conv(u, weight, bias, i_a, i_b, o) for o in range(c_out)], 1)
            return z.view(ni * c_out, *z.shape[-2:])
        if by_output:
            return torch.cat([band_conv(u, weight, bias, i) for i in range(i_a, i_b)], 0)
        w = weight[:, i_a:i_b].transpose(0, 1).reshape(ni * c_out, 1, k, k)
        b = None if b_all is None else b_all.repeat(ni)
        return _same_conv(u, i_a, i_b, w, b, ni)

    i_first, o_first = divmod(start, c_out)
    i_last, o_last = divmod(stop, c_out)  # stop is exclusive: rows < i_last whole, then o < o_last of i_last
    if i_first == i_last:
        return row_part(i_first, o_first, o_last)
    parts = []
    i_a = i_first
    if o_first:
        parts.append(row_part(i_first, o_first, c_out))
        i_a += 1
    if i_last > i_a:
        parts.append(full_rows(i_a, i_last))
    if o_last:
        parts.append(row_part(i_last, 0, o_last))
    return parts[0] if len(parts) == 1 else torch.cat(parts, 0)


def sum_over_inputs(maps: torch.Tensor, start: int, c_out: int) -> list[tuple[int, torch.Tensor]]:
    """sum_i maps_{i,o} for a chunk of c_in-major neurons starting at `start`, as pieces (o_lo, sums) adding
    into output channels o_lo..: a partial first row of kernels, the whole rows in between reduced with one
    reshape-sum, a partial last row (no padding to whole rows, no scatter; pieces may be views of maps)."""
    off, n = start % c_out, maps.shape[0]
    if off + n <= c_out:
        return [(off, maps)]
    pieces, j = [], 0
    if off:
        pieces.append((off, maps[:c_out - off]))
        j = c_out - off
    rows = (n - j) // c_out
    if rows:
        pieces.append((0, maps[j:j + rows * c_out].reshape(rows, c_out, *maps.shape[1:]).sum(0)))
        j += rows * c_out
    if j < n:
        pieces.append((0, maps[j:]))
    return pieces


def accumulate_part(total: torch.Tensor | None, part, shape: tuple[int, ...]) -> torch.Tensor | None:
    """Add one chunk's additive part into the float64 total (created with `shape` on first use). A part is
    None, a tensor shaped like the total, (row offset, tensor) or a list of those pieces."""
    if part is None:
        return total
    pieces = part if isinstance(part, list) else [part if isinstance(part, tuple) else (0, part)]
    for row, piece in pieces:
        if total is None and row == 0 and tuple(piece.shape) == tuple(shape):
            total = piece.to(torch.float64, copy=True)  # the first piece covers the whole total
            continue
        if total is None:
            total = torch.zeros(shape, dtype=torch.float64, device=piece.device)
        total[row:row + piece.shape[0]] += piece
    return total


@functools.lru_cache(maxsize=256)
def _phase_taps(r: int, k: int, s: int | None) -> tuple[tuple[tuple[int, float], ...], ...]:
    """1-D taps of box_k o up_r (s None) or box_k o route_{r,s} (sub-pixel offset s) on the coarse grid.

    out[r*m + t] = sum_d coef(t, d) * y[m - d]; coef = g[r*d + t] with g the fine-grid response of one coarse
    sample: up_r: g[u] = #{e in [-h, h] : 0 <= u + e < r} / k; route_s: g[u] = [|u - s| <= h] / k.
    The d = 0 tap (which covers the whole range) comes first when present.
    """
    h = k // 2
    taps = []
    for t in range(r):
        row = []
        for d in range(-(h // r) - 2, (h + r) // r + 2):
            u = r * d + t
            if s is None:
                c = sum(1 for e in range(-h, h + 1) if 0 <= u + e < r) / k
            else:
                c = (1.0 if abs(u - s) <= h else 0.0) / k
            if c:
                row.append((d, c))
        row.sort(key=lambda dc: dc[0] != 0)
        taps.append(tuple(row))
    return tuple(taps)


def _planes_pass(x: torch.Tensor, dim: int, taps, out: torch.Tensor) -> torch.Tensor:
    """out[t] = sum_(d, c) in taps[t]  c * x shifted by d along `dim` (zero padding): one output phase per t.

    x (..., h, w), out (r, ...x.shape): every phase is a contiguous plane, so each term is one vectorised pass
    over whole rows; two-term convex pairs (the usual box o up taps) are a single lerp."""
    L = x.shape[dim]
    for t, row in enumerate(taps):
        dst = out[t]
        terms = [(d, c, max(d, 0), L + min(d, 0)) for d, c in row if L + min(d, 0) > max(d, 0)]
        if len(terms) == 2 and terms[0][0] == 0 and abs(terms[0][1] + terms[1][1] - 1.0) < 1e-12:
            (_, c0, _, _), (d1, c1, lo, hi) = terms
            torch.lerp(x.narrow(dim, lo, hi - lo), x.narrow(dim, lo - d1, hi - lo), c1,
                       out=dst.narrow(dim, lo, hi - lo))
            for a, b in ((0, lo), (hi, L)):  # the edge the shifted term does not reach (zero padding)
                if b > a:
                    torch.mul(x.narrow(dim, a, b - a), c0, out=dst.narrow(dim, a, b - a))
            continue
        if not terms or terms[0][0] != 0:
            dst.zero_()
        for j, (d, c, lo, hi) in enumerate(terms):
            src, view = x.narrow(dim, lo - d, hi - lo), dst.narrow(dim, lo, hi - lo)
            if j == 0 and d == 0:
                torch.mul(src, c, out=view)
            else:
                view.add_(src, alpha=c)
    return out


def box_up_planes(y: torch.Tensor, r: int, k: int, out: torch.Tensor | None = None,
                  mid: torch.Tensor | None = None) -> torch.Tensor:
    """box_k(up_r(y)) for maps y (n, h, w) as phase planes P (r, r, n, h, w), P[t1, t2] = result[:, t1::r, t2::r]
    (zero padding, count-include-pad mean). Planes are contiguous: no strided writes; interleave_planes or
    planes_abs turn them into maps or reductions."""
    n, h, w = y.shape
    mid = _planes_pass(y, -1, _phase_taps(r, k, None), y.new_empty(r, n, h, w) if mid is None else mid)
    return _planes_pass(mid, -2, _phase_taps(r, k, None), y.new_empty(r, r, n, h, w) if out is None else out)


@functools.lru_cache(maxsize=64)
def _route_table(r: int, k: int) -> tuple[tuple[int, ...], torch.Tensor]:
    """(shifts d, coef (r_s, r_t, len(d))): 1-D taps of box_k o route_{r,s} for every sub-pixel coordinate s."""
    rows = [_phase_taps(r, k, s) for s in range(r)]
    ds = sorted({d for taps in rows for row in taps for d, _ in row})
    coef = torch.zeros(r, r, len(ds), dtype=torch.float64)
    for s, taps in enumerate(rows):
        for t, row in enumerate(taps):
            for d, c in row:
                coef[s, t, ds.index(d)] = c
    return tuple(ds), coef


def box_route_planes(z: torch.Tensor, r: int, k: int, sub: torch.Tensor, out: torch.Tensor | None = None,
                     mid: torch.Tensor | None = None) -> torch.Tensor:
    """box_k(route_{r, sub_j}(z_j)) for maps z (n, h, w), map j at sub-pixel sub[j] = s1*r + s2, as phase planes
    (r, r, n, h, w). Vectorised over maps with per-map tap weights (a few multiply-adds over all maps at
    once, however the sub-pixels are mixed), never forming the routed maps."""
    n, h, w = z.shape
    ds, coef = _route_table(r, k)
    coef = coef.to(z.device, z.dtype)
    s1, s2 = sub // r, sub % r
    c2 = coef[s2].permute(1, 0, 2)[:, :, None, None]  # (t2, n, 1, 1, d)
    c1 = coef[s1].permute(1, 0, 2)[:, None, :, None, None]  # (t1, 1, n, 1, 1, d)
    mid = _shift_mac(z.unsqueeze(0), -1, ds, c2, z.new_zeros(r, n, h, w) if mid is None else mid.zero_())
    return _shift_mac(mid.unsqueeze(0), -2, ds, c1, z.new_zeros(r, r, n, h, w) if out is None else out.zero_())


@functools.lru_cache(maxsize=64)
def tap_arrays(r: int, k: int, route: bool) -> tuple[tuple, ...]:
    """_phase_taps of box_k o up_r (one table) or of box_k o route_{r,s} (one table per sub-pixel s) as the
    (d (nt, r, T) int64, c (nt, r, T) float32, count (nt, r) int64) arrays
    kernels.pack_taps packs for kernels.block_chain."""
    import numpy as np

    tables = [_phase_taps(r, k, s) for s in range(r)] if route else [_phase_taps(r, k, None)]
    T = max(1, max(len(row) for taps in tables for row in taps))
    d = np.zeros((len(tables), r, T), np.int64)
    c = np.zeros((len(tables), r, T), np.float32)
    cnt = np.zeros((len(tables), r), np.int64)
    for a, taps in enumerate(tables):
        for t, row in enumerate(taps):
            cnt[a, t] = len(row)
            for q, (dd, cc) in enumerate(row):
                d[a, t, q], c[a, t, q] = dd, cc
    return d, c, cnt


@functools.lru_cache(maxsize=32)
def chain_taps(stages: tuple[tuple[int, int, bool], ...]) -> tuple:
    """(upscaling per stage (S,) int64, kernels.pack_taps of their tap tables) for stages (r, k, route?)."""
    import numpy as np

    rs = np.array([r for r, _, _ in stages], np.int64)
    return rs, kernels.pack_taps([tap_arrays(r, k, route) for r, k, route in stages])


def _shift_mac(x: torch.Tensor, dim: int, ds, coef: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """out += sum_d coef[..., d] * (x shifted by d along dim), zero padding; coef broadcasts against out."""
    L = x.shape[dim]
    for j, d in enumerate(ds):
        lo, hi = max(d, 0), L + min(d, 0)
        if hi > lo:
            out.narrow(dim, lo, hi - lo).addcmul_(x.narrow(dim, lo - d, hi - lo), coef[..., j])
    return out


def interleave_planes(P: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """Phase planes (r1, r2, n, h, w) -> maps (n, r1*h, r2*w) (one copy; into `out` when given)."""
    r1, r2, n, h, w = P.shape
    if out is None:
        return P.permute(2, 3, 0, 4, 1).reshape(n, h * r1, w * r2)
    out.view(n, h, r1, w, r2).copy_(P.permute(2, 3, 0, 4, 1))
    return out


def activation_(name: str, fn, x: torch.Tensor) -> torch.Tensor:
    """The model activation `name` applied to x in place (fn(x) copied back for names without an in-place op)."""
    if name == "relu":
        return x.relu_()
    if name == "gelu":
        return torch.ops.aten.gelu_(x)
    if name == "silu":
        return F.silu(x, inplace=True)
    return x.copy_(fn(x))


class Workspace:
    """Scratch buffers reused from chunk to chunk (one per purpose): fresh multi-MiB buffers per chunk would
    page-fault on every chunk. get() returns a contiguous view of at least the requested size."""

    def __init__(self) -> None:
        self._bufs: dict[str, torch.Tensor] = {}

    def get(self, key: str, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        numel = 1
        for d in shape:
            numel *= int(d)
        buf = self._bufs.get(key)
        if buf is None or buf.numel() < numel or buf.dtype != like.dtype or buf.device != like.device:
            buf = self._bufs[key] = like.new_empty(numel)
        return buf[:numel].view(shape)


_SCRATCH = threading.local()


def scratch(key: str, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    """A CPU scratch tensor kept per thread across calls (a fresh multi-MiB buffer page-faults on every
    call, and rules live one frame); elsewhere a fresh tensor (CUDA's caching allocator reuses memory).
    Only for temporaries: nothing returned to a caller may be a view of it."""
    if like.device.type != "cpu":
        return like.new_empty(shape)
    ws = getattr(_SCRATCH, "ws", None)
    if ws is None:
        ws = _SCRATCH.ws = Workspace()
    return ws.get(key, shape, like)


def planes_abs(P: torch.Tensor, wants: frozenset[str]) -> dict[str, torch.Tensor]:
    """Standard reductions of phase planes (r1, r2, n, h, w), |.| taken in place: "heat" sum_n |C| as an
    (r1*h, r2*w) map, "totals" sum_p |C| per map."""
    A = P.abs_()
    out = {}
    if "heat" in wants:
        r1, r2, _, h, w = A.shape
        out["heat"] = A.sum(2).permute(2, 0, 3, 1).reshape(h * r1, w * r2)
    if "totals" in wants:
        out["totals"] = A.sum(dim=(3, 4)).sum(dim=(0, 1))  # float32 like the maps' totals; no float64 copy
    return out


def layer_kind(model, layer: str) -> str:
    """'mlp' | 'conv-head' | 'conv-block' for a canvas layer name, or a clear error naming the valid ones."""
    names = list(model.layer_names)
    if layer not in names:
        raise XincError(f"layer {layer!r} does not exist in this {model.config.kind} model; choose one of "
                        f"{', '.join(names)}")
    if hasattr(model, "blocks"):
        return "conv-head" if layer == "head" else "conv-block"
    return "mlp"


class Rule:
    """Base class of contribution rules; subclasses fill `info` in __init__ and implement compute()."""

    kind: ClassVar[str] = ""
    name: ClassVar[str] = ""
    notes: ClassVar[str] = ""
    maps_per_neuron: ClassVar[float] = 4.0  # working tensors of one neuron's map size held at once (memory plan)
    tile_elems: ClassVar[dict[str, int]] = {"cpu": 1 << 20, "cuda": 1 << 26}  # fused reductions: floats per tile

    def __init__(self, model, layer: str, mode: str, per_channel: bool) -> None:
        self.model, self.layer, self.mode, self.per_channel = model, layer, mode, per_channel
        self.info: LayerInfo

    def prepare(self, trace: Trace) -> None:
        """Bind one frame's forward pass (inputs/pre-activations on the compute device)."""
        raise NotImplementedError

    def compute(self, start: int, stop: int):
        """(maps of neurons [start, stop), this chunk's part of the additive sum or None).

        The part is a tensor shaped like target(), (lo, tensor) adding into rows lo..lo+len of it, or a list of
        such (lo, tensor) pieces (see accumulate_part)."""
        raise NotImplementedError

    def target(self) -> torch.Tensor | None:
        """What the additive sum over all neurons must equal (None: nothing to check)."""
        return None

    def part_shape(self) -> tuple[int, ...]:
        """Shape of the summed additive part (default: the target's)."""
        return tuple(self.target().shape)

    def residual(self, total: torch.Tensor | None) -> dict[str, float]:
        """The identity the rule guarantees: the summed additive part against target() (keys identity_*)."""
        tgt = self.target()
        if total is None or tgt is None:
            return {}
        return residual_stats(total, tgt, prefix="identity_")

    def gap_target(self) -> torch.Tensor | None:
        """What the sum of the maps over all neurons claims to equal, shaped like one neuron's map (None: no claim)."""
        return None

    def gap(self, map_sum: torch.Tensor | None) -> dict[str, float]:
        """The output-side gap: the sum of the maps over all neurons against gap_target() (keys gap_*)."""
        tgt = self.gap_target()
        if map_sum is None or tgt is None:
            return {}
        return residual_stats(map_sum, tgt, prefix="gap_")

    def fusable(self) -> frozenset[str]:
        """Standard reductions ("heat", "totals") this rule computes without materialising maps (none by default)."""
        return frozenset()

    def reduce(self, start: int, stop: int, wants: frozenset[str], max_neurons: int | None = None):
        """Yield (a, b, {name: value}, part) for consecutive neuron ranges [a, b) covering [start, stop): the
        fused reductions `wants` of those neurons and their additive part (as in compute).

        "heat": sum_k |C_k| over the range (map-shaped); "totals": sum over pixels of |C_k| per neuron (b-a,).
        `max_neurons` caps the neurons a rule holds at once (the caller's memory plan), where that matters."""
        raise NotImplementedError(f"{type(self).__name__} has no fused reductions")

    def bytes_per_neuron(self) -> int:
        """Rough peak bytes per neuron of a chunk (the memory budget divides by this)."""
        per = self.info.height * self.info.width * (self.info.channels or 1) * 4
        return int(per * self.maps_per_neuron)


# --------------------------------------------------------------------------------------------- MLP


@register_rule("mlp:paper")
class MLPRule(Rule):
    """Paper rule (SPEC 2.1): c_ij = a_i W[j,i] + b_j/n; C_i = phi(sum_j c_ij) in closed form a_i sum_j W[j,i].

    phi is the model's own activation after this linear layer (ReLU for the paper's FFN, sin(w0 x) for
    SIREN, ...) and identity for the last layer. Per-channel form: C_ij = phi(c_ij), (n, m, H, W).
    The additive part (before phi) is exact: sum_i = sum_j z_j (or z_j per channel).
    """

    kind = "mlp"
    name = "mlp-paper"
    maps_per_neuron = 3.0

    def __init__(self, model, layer: str, mode: str, per_channel: bool) -> None:
        super().__init__(model, layer, mode, per_channel)
        self.index = int(layer[len("layer"):]) - 1
        lin = model.layers[self.index]
        self.W, self.b = lin.weight.detach(), lin.bias.detach()
        self.n, self.m = lin.in_features, lin.out_features
        self.last = self.index == len(model.layers) - 1
        cfg = model.config
        phi = "identity" if self.last else f"{cfg.activation} (the model's activation after this layer)"
        self.info = LayerInfo(
            name=layer, num_neurons=self.n, height=cfg.height, width=cfg.width,
            exact=self.last, rule=self.name, c_in=self.n, c_out=self.m, mode=mode, kind=self.kind,
            neuron_index="k = c_in", channels=self.m if per_channel else None,
            notes=f"C_i = phi(a_i sum_j W[j,i] + sum_j b_j/n), phi = {phi}",
            identity="pre-activation sum" + (" per unit" if per_channel else " (sum_j z_j)"),
            gap_of=("output logits" if self.last else f"activated layer output phi(z_j) ({cfg.activation})")
            + (" per channel" if per_channel else " summed over channels"),
        )

    def phi(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.activation(self.index, x)

    def prepare(self, trace: Trace) -> None:
        self.a = trace.inputs[self.layer]  # (P, n)
        self.z = trace.pre[self.layer]  # (P, m)
        self._zsum = None
        # column sums in float64, rounded once: near-cancelling columns lose up to 1e-4 relative in float32
        self.wsum = self.W.sum(0, dtype=torch.float64).to(self.W.dtype)
        self.bshare = self.b.sum() / self.n

    def compute(self, start: int, stop: int):
        H, W = self.info.height, self.info.width
        a = self.a[:, start:stop]  # (P, c)
        count = stop - start
        if self.per_channel:
            c = a.t()[:, None, :] * self.W[:, start:stop].t()[:, :, None] + (self.b / self.n)[None, :, None]
            part = (a @ self.W[:, start:stop].t()).t() + count * (self.b / self.n)[:, None]  # sum_i c_ij, closed form
            return self.phi(c).reshape(-1, self.m, H, W), part
        s = a.t() * self.wsum[start:stop, None] + self.bshare
        part = a @ self.wsum[start:stop] + count * self.bshare  # sum_i s_i without another pass over the maps
        return self.phi(s).reshape(-1, H, W), part

    def target(self) -> torch.Tensor:
        if self.per_channel:
            return self.z.t()
        if self._zsum is None:  # sum_j z_j once per frame (mv: the (P, m) rows may be short)
            self._zsum = torch.mv(self.z, torch.ones(self.m, dtype=self.z.dtype, device=self.z.device))
        return self._zsum

    def gap_target(self) -> torch.Tensor:
        y = self.z if self.last else self.phi(self.z)  # (P, m): the layer's activated output
        H, W = self.info.height, self.info.width
        return y.t().reshape(self.m, H, W) if self.per_channel else y.sum(1).reshape(H, W)

    def fusable(self) -> frozenset[str]:
        return frozenset() if self.per_channel else frozenset({"heat", "totals"})

    def reduce(self, start: int, stop: int, wants: frozenset[str], max_neurons: int | None = None):
        """Heat map and per-neuron totals of neurons [start, stop) without a (c, P) canvas: on CPU (float32,
        identity/relu) one compiled pass over a (xinc.canvas.kernels); otherwise in cache-sized pixel tiles,
        each (t, c) tile of C_i(p) = phi(a_i(p) s_i + beta) formed, summed (the additive part), activated,
        |.|-ed and reduced in place. Same numbers as the maps, in a different summation order.
        Tiles hold tile_elems values whatever the neuron count, so max_neurons is not needed here."""
        a = self.a
        P, c = a.shape[0], stop - start
        phi = "identity" if self.last else self.model.config.activation
        done = kernels.mlp_reduce(a, start, stop, self.wsum[start:stop], float(self.bshare), phi,
                                  totals="totals" in wants)
        if done is not None:  # one compiled pass over a (CPU float32, identity/relu)
            heat, part, tot = done
            out = {"heat": heat.view(self.info.height, self.info.width)} if "heat" in wants else {}
            if tot is not None:
                out["totals"] = tot
            # signed sum of the maps: phi = identity sums to the part, relu maps are their own |.|
            out["gap"] = (part if self.last else heat).view(self.info.height, self.info.width)
            yield start, stop, out, part
            return
        T = max(1, min(P, self.tile_elems.get(a.device.type, 1 << 20) // c))
        s = self.wsum[start:stop][None]
        buf = scratch("mlp-tile", (T, c), a)
        part = a.new_empty(P)
        heat = a.new_empty(P) if "heat" in wants else None
        tot = torch.zeros(c, dtype=torch.float64, device=a.device) if "totals" in wants else None
        relu = not self.last and self.model.config.activation == "relu"  # in place, and |relu| = relu
        gap = a.new_empty(P)  # signed sum of the maps (the output-side gap); = part after the last layer
        for p0 in range(0, P, T):
            t = min(P, p0 + T) - p0
            x = torch.addcmul(self.bshare, a[p0:p0 + t, start:stop], s, out=buf[:t])  # 0-dim beta
            torch.sum(x, 1, out=part[p0:p0 + t])
            y = x.relu_() if relu else (x if self.last else self.phi(x))  # identity after the last layer
            torch.sum(y, 1, out=gap[p0:p0 + t])
            if not relu:
                y.abs_()
            if heat is not None:
                torch.sum(y, 1, out=heat[p0:p0 + t])
            if tot is not None:
                tot += y.sum(0)
        out = {"gap": gap.view(self.info.height, self.info.width)}
        if heat is not None:
            out["heat"] = heat.view(self.info.height, self.info.width)
        if tot is not None:
            out["totals"] = tot
        yield start, stop, out, part  # one range: the tiles run over pixels, every neuron at once


def _rows_mm(J: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    """(P, o, m) @ (m, n) as one (P*o, m) x (m, n) GEMM (a batched matmul of tiny matrices is far slower)."""
    P, o, m = J.shape
    return (J.reshape(P * o, m) @ W).view(P, o, W.shape[1])


@register_rule("mlp:linear")
class MLPLinearRule(MLPRule):
    """Corrected rule: propagate each c_i (the m-vector a_i W[:,i] + b/n) to the output logits through the
    downstream layers with the true weights and the activations' local slopes at the real forward pass;
    downstream biases are split evenly over the n neurons. Sum over neurons = the tangent network's output;
    its difference from the true output is the linearisation residual (0 for ReLU: relu(z) = relu'(z) z).
    """

    name = "mlp-linear"

    def __init__(self, model, layer: str, mode: str, per_channel: bool) -> None:
        super().__init__(model, layer, mode, per_channel)
        out = model.layers[-1].out_features
        act = model.config.activation
        self.info.exact = self.last or act == "relu"
        self.info.c_out = self.m
        self.info.channels = out if per_channel else None
        self.info.notes = ("linearised propagation to the output logits (true weights, local activation slopes, "
                           "downstream biases split over the neurons)")
        self.info.identity = "pre-activation sum per unit (sum_i c_ij = z_j)"
        self.info.gap_of = "output logits" + (" per channel" if per_channel else " summed over channels")

    def prepare(self, trace: Trace) -> None:
        super().prepare(trace)
        L = len(self.model.layers)
        self.slopes = [activation_slope(lambda x, q=q: self.model.activation(q, x), trace.pre[f"layer{q + 1}"])
                       for q in range(self.index, L - 1)]  # slope after layer q, (P, m_q)
        self.out_true = trace.pre[f"layer{L}"]  # (P, out)
        self.G, self.gamma = self.tangent_factors()

    def tangent_factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(G (P, out, n), gamma (P, out)) with map_i(p) = a_i(p) G(p)[:, i] + gamma(p): the tangent network is
        linear in c_i = a_i W[:, i] + b/n, so one backward sweep of per-pixel Jacobians J(p) = d out / d z_layer
        (P x out x m, a few matrix products) replaces n forward passes; gamma = J b/n + the downstream biases / n
        carried to the output (the same for every neuron)."""
        layers, P = self.model.layers, self.a.shape[0]
        J = None  # d out / d z_q, walking back to this layer; None = identity (q = the last layer)
        beta = None
        for q in range(len(layers) - 1, self.index, -1):
            bq = layers[q].bias / self.n  # layer q's bias share, carried to the output
            bq = bq.expand(P, -1) if J is None else torch.einsum("pom,m->po", J, bq)
            beta = bq if beta is None else beta + bq
            Jw = layers[q].weight.expand(P, -1, -1) if J is None else _rows_mm(J, layers[q].weight)
            J = Jw * self.slopes[q - 1 - self.index][:, None, :]
        if J is None:
            return self.W.expand(P, -1, -1), (self.b / self.n).expand(P, -1)
        gamma = torch.einsum("pom,m->po", J, self.b / self.n)
        return _rows_mm(J, self.W), (gamma if beta is None else gamma + beta)

    def compute(self, start: int, stop: int):
        H, W = self.info.height, self.info.width
        a = self.a[:, start:stop]  # (P, c)
        c = (a[:, None, :] * self.G[:, :, start:stop]).permute(2, 1, 0) + self.gamma.t()[None]  # (c, out, P)
        part = (a @ self.W[:, start:stop].t()).t() + (stop - start) * (self.b / self.n)[:, None]  # (m, P)
        if self.per_channel:
            return c.reshape(c.shape[0], -1, H, W), part
        return c.sum(1).reshape(-1, H, W), part

    def target(self) -> torch.Tensor:
        return self.z.t()

    def gap_target(self) -> torch.Tensor:
        H, W = self.info.height, self.info.width
        y = self.out_true.t()  # (out, P)
        return y.reshape(-1, H, W) if self.per_channel else y.sum(0).reshape(H, W)

    def fusable(self) -> frozenset[str]:
        return frozenset()

    def bytes_per_neuron(self) -> int:
        return int(self.info.height * self.info.width * max(self.m, self.model.layers[-1].out_features) * 4 * 3)


# --------------------------------------------------------------------------------------------- conv head


@register_rule("conv-head:paper")
@register_rule("conv-head:linear")
class ConvHeadRule(Rule):
    """Exact (SPEC 2.2): C_{i,o} = x_i * W[o,i] + b_o/C_in with the head's 'same' padding; one grouped conv.

    Neurons k = c_in*3 + c_out, maps (K, H, W); per_channel: neurons k = c_in, maps (C_in, 3, H, W).
    Completeness: sum_i C_{i,o} = head logit z_o.
    """

    kind = "conv-head"
    name = "conv-head"
    maps_per_neuron = 3.0
    tile_elems = {"cpu": 1 << 18, "cuda": 1 << 26}  # fused reductions: floats per (input tile x band) conv

    def __init__(self, model, layer: str, mode: str, per_channel: bool) -> None:
        super().__init__(model, layer, mode, per_channel)
        conv = model.head
        self.W, self.b = conv.weight.detach(), conv.bias.detach()
        self.cin, self.cout = conv.in_channels, conv.out_channels
        cfg = model.config
        self.info = LayerInfo(
            name=layer, num_neurons=self.cin if per_channel else self.cin * self.cout,
            height=cfg.height, width=cfg.width, exact=True, rule=self.name, c_in=self.cin, c_out=self.cout,
            mode=mode, kind=self.kind,
            neuron_index="k = c_in" if per_channel else f"k = c_in*{self.cout} + c_out",
            channels=self.cout if per_channel else None,
            notes="exact per-kernel convolution with the bias split over input channels",
            identity="head logits (sum_i C_io = z_o)",
            gap_of="head logits" + (" per channel" if per_channel else " summed over RGB"),
        )

    def prepare(self, trace: Trace) -> None:
        self.x = trace.inputs[self.layer][0]
        self.z = trace.pre[self.layer][0]

    def kernel_range(self, start: int, stop: int) -> tuple[int, int]:
        """Flat (c_in, c_out) kernel range of neurons [start, stop)."""
        return (start * self.cout, stop * self.cout) if self.per_channel else (start, stop)

    def compute(self, start: int, stop: int):
        a, b = self.kernel_range(start, stop)
        maps = kernel_conv(self.x, self.W, self.b, a, b, by_output=True)
        part = sum_over_inputs(maps, a, self.cout)
        if self.per_channel:
            maps = maps.reshape(stop - start, self.cout, *maps.shape[-2:])
        return maps, part

    def fusable(self) -> frozenset[str]:
        return frozenset({"heat", "totals"})

    # complexity accepted: one fused tile loop per output kind; kept together for speed
    def reduce(self, start: int, stop: int, wants: frozenset[str], max_neurons: int | None = None):  # noqa: C901
        """Heat map and totals of neurons [start, stop) without a (K, H, W) canvas: whole rows of kernels (every
        output of a tile of input channels) by one depthwise conv per output channel and band of image rows
        (~tile_elems values, cache-sized), |.|-ed and summed in place; a partial first/last row of kernels
        from its maps."""
        a, b = self.kernel_range(start, stop)
        C, (H, W) = self.cout, self.x.shape[-2:]
        i_first, o_first = divmod(a, C)
        i_last, o_last = divmod(b, C)

        def partial(ka: int, kb: int):  # kernels of one input channel, not the whole row (never per_channel)
            maps = kernel_conv(self.x, self.W, self.b, ka, kb)
            part = (ka % C, maps.clone())  # one input channel: its maps are their own sum over inputs
            out = {"gap": maps.sum(0)}
            maps.abs_()
            if "heat" in wants:
                out["heat"] = maps.sum(0)
            if "totals" in wants:
                out["totals"] = maps.sum(dim=(1, 2))
            return ka, kb, out, part

        if i_first == i_last:
            yield partial(a, b)
            return
        i_a = i_first
        if o_first:
            yield partial(a, (i_first + 1) * C)
            i_a += 1
        tile = self.tile_elems.get(self.x.device.type, 1 << 18)
        rows = max(1, min(i_last - i_a, tile // W))  # input channels per tile (at least one image row each)
        if max_neurons is not None:
            rows = max(1, min(rows, max_neurons if self.per_channel else max_neurons // C))
        for i0 in range(i_a, i_last, rows):
            i1 = min(i_last, i0 + rows)
            band = max(1, min(H, tile // ((i1 - i0) * W)))  # output rows per cache-sized band
            heat = None
            if "heat" in wants:
                heat = self.x.new_zeros((C, H, W) if self.per_channel else (H, W))
            tot = self.x.new_zeros(i1 - i0, C) if "totals" in wants else None
            part = self.x.new_empty(C, H, W)  # sum over this tile's inputs, per output
            for r0 in range(0, H, band):
                r1 = min(H, r0 + band)
                rr = None if band >= H else (r0, r1)
                if i1 - i0 == 1:  # one input channel: a plain 1 -> C conv (a 1 -> 1 depthwise conv is very slow)
                    zs = list(band_conv(self.x, self.W, self.b, i0, rr)[:, None])
                else:
                    zs = (depthwise_conv(self.x, self.W, self.b, i0, i1, o, rr) for o in range(C))
                for o, z in enumerate(zs):
                    torch.sum(z, 0, out=part[o, r0:r1])
                    z.abs_()
                    if heat is not None:
                        (heat[o, r0:r1] if self.per_channel else heat[r0:r1]).add_(z.sum(0))
                    if tot is not None:
                        tot[:, o] += z.sum(dim=(1, 2))
            out = {"gap": part if self.per_channel else part.sum(0)}  # signed sum of the tile's maps
            if heat is not None:
                out["heat"] = heat
            if tot is not None:
                out["totals"] = tot if self.per_channel else tot.view(-1)
            ka, kb = (i0, i1) if self.per_channel else (i0 * C, i1 * C)
            yield ka, kb, out, part
        if o_last:
            yield partial(i_last * C, b)

    def target(self) -> torch.Tensor:
        return self.z

    def gap_target(self) -> torch.Tensor:
        return self.z if self.per_channel else self.z.sum(0)


# --------------------------------------------------------------------------------------------- conv blocks


class _BlockBase(Rule):
    """Shared parts of the PixelShuffle block rules: neuron (i, o) -> routed per-kernel conv R_{i,o}."""

    kind = "conv-block"

    def __init__(self, model, layer: str, mode: str, per_channel: bool) -> None:
        super().__init__(model, layer, mode, per_channel)
        self.index = int(layer[len("block"):]) - 1
        blk = model.blocks[self.index]
        self.conv, self.r = blk.conv, blk.stride
        self.W, self.b = blk.conv.weight.detach(), blk.conv.bias.detach()
        self.cin, self.cout = self.conv.in_channels, self.conv.out_channels
        self.next_name = f"block{self.index + 2}" if self.index + 1 < len(model.blocks) else "head"
        cfg = model.config
        self.info = LayerInfo(
            name=layer, num_neurons=self.cin * self.cout, height=cfg.height, width=cfg.width, exact=False,
            rule=self.name, c_in=self.cin, c_out=self.cout, mode=mode, kind=self.kind,
            neuron_index=f"k = c_in*{self.cout} + c_out (c_out = pre-shuffle conv channel)",
            notes=self.notes, identity="PixelShuffle identity (act(shuffle(sum_i z_io)) = block output)",
        )

    def prepare(self, trace: Trace) -> None:
        self.u = trace.inputs[self.layer][0]
        self.post = trace.post[self.layer][0]
        self.next_in = trace.inputs[self.next_name][0]

    def routed(self, start: int, stop: int, with_part: bool = False) -> tuple:
        """(R (n, r*h, r*w) of neurons [start, stop), their post-shuffle channel c (n,)[, the identity part])."""
        o = torch.arange(start, stop, device=self.u.device) % self.cout
        z = kernel_conv(self.u, self.W, self.b, start, stop)
        rr = self.r * self.r
        R = interleave_planes(box_route_planes(z, self.r, 1, o % rr))
        return (R, o // rr, sum_over_inputs(z, start, self.cout)) if with_part else (R, o // rr)

    def target(self) -> torch.Tensor:
        return self.next_in

    def part_shape(self) -> tuple[int, ...]:
        return (self.cout, *self.u.shape[-2:])  # per pre-shuffle channel, on the coarse grid

    def residual(self, total):
        # summing the routed per-o sums over the r^2 sub-pixels of each post-shuffle channel c is the model's
        # own PixelShuffle of the per-o sums; its activation must equal the next layer's input
        if total is None:
            return {}
        rr, C = self.r * self.r, self.next_in.shape[0]
        step = max(1, (1 << 20) // max(1, self.next_in[0].numel()))  # post-shuffle channels per block

        def blocks():
            for c in range(0, C, step):
                shuffled = F.pixel_shuffle(total[c * rr:(c + step) * rr].unsqueeze(0), self.r)[0]
                yield self.model.act(shuffled), self.next_in[c:c + step]

        return residual_from_blocks(blocks(), prefix="identity_")


@register_rule("conv-block:paper")
class ConvBlockPaperRule(_BlockBase):
    """Paper rule (SPEC 2.3), approximate: routed per-kernel conv -> per-neuron activation -> downstream
    stand-ins (each conv -> k x k zero-padded mean filter, each PixelShuffle(r) -> nearest x r then the
    activation), ending with the head's box filter. Residual = the exact PixelShuffle identity
    act(sum_i sum_s R_{i, c r^2 + s}) = block output channel c (the next layer's input).
    """

    name = "conv-block-paper"
    tile_elems = {"cpu": 1 << 22, "cuda": 1 << 26}  # fused reductions: output floats per neuron tile
    kernel_tile_elems = 1 << 25  # compiled path: floats of the last stage's input per neuron tile (maps never
    # leave the kernel's cache-sized buffers, so a tile only bounds the per-call overhead and the progress steps;
    # each call costs ~1 ms of set-up, so tiles are large: 4096 maps of the paper NeRV's block1)
    kernel_z_elems = 1 << 23  # ... and at most this many floats of per-kernel conv maps (the one tile tensor), 32 MB
    notes = ("approximate: per-neuron activation, downstream convs -> box filters, PixelShuffle -> nearest "
             "upsampling + activation (paper stand-ins)")
    gap_of = "box-filtered block output (each channel through the same stand-ins, summed)"

    def __init__(self, model, layer: str, mode: str, per_channel: bool) -> None:
        if per_channel:
            raise XincError(f"layer {layer}: per-channel maps need mode 'linear' (the paper's block rule has one "
                            "output map per neuron)")
        super().__init__(model, layer, mode, per_channel)
        self.info.gap_of = self.gap_of

    def planes(self, start: int, stop: int) -> tuple[torch.Tensor, list[tuple[int, torch.Tensor]]]:
        """(phase planes (R, R, n, h', w') of the maps of neurons [start, stop), R the last stage's upscaling
        and (R h', R w') the output size; the chunk's completeness part). The planes live in the rule's
        workspace: they are valid until the next call (compute() hands out an interleaved copy)."""
        # act(0) = 0 for gelu/relu/silu, so act(route(z)) = route(act(z)) and act(up(y)) = up(act(y)): the
        # activations run on the coarse grids and each (route|upsample) + box pair is one fused filter whose
        # output phases are separate contiguous planes; planes are interleaved only between stages.
        z = kernel_conv(self.u, self.W, self.b, start, stop)
        # completeness: sum_i z_{i,o} per pre-shuffle channel o on the coarse grid; residual() shuffles it
        part = sum_over_inputs(z, start, self.cout)
        name, fn, ws = self.model.config.act, self.model.act, self.ws
        downstream = self.model.blocks[self.index + 1:]
        ks = [blk.conv.kernel_size[0] for blk in downstream] + [self.model.head.kernel_size[0]]
        n, h, w = z.shape
        r = self.r
        sub = torch.arange(start, stop, device=z.device) % (r * r)  # o mod r^2 (r^2 divides C_out)
        P = box_route_planes(fn(z), r, ks[0], sub, out=ws.get("p0", (r, r, n, h, w), z),  # part may view z
                             mid=ws.get("m0", (r, n, h, w), z))
        for q, (blk, knext) in enumerate(zip(downstream, ks[1:]), 1):
            x = interleave_planes(activation_(name, fn, P), out=ws.get(f"x{q}", (n, h * r, w * r), z))
            h, w, r = h * r, w * r, blk.stride
            P = box_up_planes(x, r, knext, out=ws.get(f"p{q}", (r, r, n, h, w), z),
                              mid=ws.get(f"m{q}", (r, n, h, w), z))
        return P, part

    def stages(self) -> list[tuple[int, int, bool]]:
        """(upscaling r, box kernel k, route?) of each filter stage: the block's routing into the next conv's
        box, then per downstream block nearest x r into the following conv's (or the head's) box."""
        downstream = self.model.blocks[self.index + 1:]
        ks = [blk.conv.kernel_size[0] for blk in downstream] + [self.model.head.kernel_size[0]]
        return [(self.r, ks[0], True)] + [(blk.stride, k, False) for blk, k in zip(downstream, ks[1:])]

    def use_kernel(self) -> bool:
        return (kernels.available() and self.u.device.type == "cpu" and self.u.dtype == torch.float32
                and self.model.config.act in kernels.ACTS)

    def kernel_stages(self, start: int, stop: int, reduce: bool):
        """The compiled path: every stage of each map of the chunk in one kernels.block_chain call, the activations
        compiled in. (maps (n, H, W) or, reduce=True, (heat, gap, totals); the part)."""
        if getattr(self, "u_pad", None) is None:  # the compiled per-kernel convs read a zero-padded copy
            p = self.W.shape[-1] // 2
            self.u_pad = F.pad(self.u, (p, p, p, p)).contiguous()
        z = kernels.kernel_maps(self.u_pad, self.W, self.b, start, stop)
        part = sum_over_inputs(z, start, self.cout)  # may view z: z itself is never modified
        sub = torch.arange(start, stop) % (self.r * self.r)  # o mod r^2 (r^2 divides C_out)
        zeros = torch.zeros_like(sub)
        stages = self.stages()
        sel = [(sub % r, sub // r) if route else (zeros, zeros) for r, _, route in stages]
        res = kernels.block_chain(z, self.model.config.act, True, *chain_taps(tuple(stages)),
                                  torch.stack([h for h, _ in sel]), torch.stack([v for _, v in sel]), reduce=reduce)
        return res, part

    def compute(self, start: int, stop: int):
        if self.use_kernel():
            return self.kernel_stages(start, stop, reduce=False)
        P, part = self.planes(start, stop)
        return interleave_planes(P), part

    def prepare(self, trace: Trace) -> None:
        super().prepare(trace)
        self.ws = Workspace()
        self.u_pad = None

    def fusable(self) -> frozenset[str]:
        return frozenset({"heat", "totals"})

    def reduce(self, start: int, stop: int, wants: frozenset[str], max_neurons: int | None = None):
        """Heat map / per-neuron totals of cache-sized neuron tiles (at most max_neurons) straight from their
        phase planes: the maps are never interleaved or written out; same numbers as the maps' reductions."""
        H, W = self.info.height, self.info.width
        n = max(1, self.tile_elems.get(self.u.device.type, 1 << 22) // (H * W))
        n = n if max_neurons is None else max(1, min(n, int(max_neurons)))
        if self.use_kernel():  # the maps never leave the kernel: tiles bound the last stage's input (cache-sized)
            n = max(1, self.kernel_tile_elems // (H * W // self.stages()[-1][0] ** 2))
            n = min(n, max(1, self.kernel_z_elems // (self.u.shape[-2] * self.u.shape[-1])))
            n = n if max_neurons is None else max(1, min(n, int(max_neurons)))
        for a in range(start, stop, n):
            b = min(stop, a + n)
            if self.use_kernel():
                (heat, gap, tot), part = self.kernel_stages(a, b, reduce=True)
                yield a, b, {**({"heat": heat} if "heat" in wants else {}),
                             **({"totals": tot} if "totals" in wants else {}), "gap": gap}, part
                continue
            P, part = self.planes(a, b)
            gap = interleave_planes(P.sum(2, keepdim=True))[0]  # signed sum of the tile's maps, before |.|
            yield a, b, {**planes_abs(P, wants), "gap": gap}, part

    def gap_target(self) -> torch.Tensor:
        """The block output pushed through the same stand-ins channel by channel, summed over channels."""
        return standin_propagate(self.model, self.index, self.next_in)


@register_rule("conv-block:linear")
class ConvBlockLinearRule(_BlockBase):
    """Corrected rule: propagate each routed R_{i,o} to the head logits with the real downstream convs and
    the activation's local slope at the true forward pass (downstream biases split over the K neurons).
    Sum over neurons = the tangent network's logits; residual vs the true logits = the linearisation error.
    Maps are summed over RGB, or (K, 3, H, W) with per_channel. Computed in adjoint form (xinc.canvas.adjoint):
    one per-pixel Jacobian on the receptive window per frame, then a small product per neuron and cell.
    """

    name = "conv-block-linear"
    notes = "linearised propagation (true downstream weights, local activation slopes)"
    jacobian_budget: ClassVar[dict[str, int]] = {"cpu": 4 << 30, "cuda": 16 << 30}  # bytes of J per frame, else
    # the per-neuron forward form (same numbers, K passes through the downstream convs)

    def __init__(self, model, layer: str, mode: str, per_channel: bool) -> None:
        super().__init__(model, layer, mode, per_channel)
        self.info.exact = model.config.act == "relu"
        self.info.channels = 3 if per_channel else None
        self.info.gap_of = "head logits" + (" per channel" if per_channel else " summed over RGB")

    def bytes_per_neuron(self) -> int:
        # the batched product's output and the maps, per output channel
        return int(self.info.height * self.info.width * (self.info.channels or 1) * 4 * 3)

    def jacobian_bytes(self) -> int:
        """Bytes of the per-frame pixel Jacobian prepare() builds (held while the frame is streamed)."""
        return adjoint.jacobian_bytes(self.model, self.index, self.per_channel)

    def prepare(self, trace: Trace) -> None:
        super().prepare(trace)
        act = self.model.act
        self.slopes = [activation_slope(act, trace.post[f"block{q + 1}"][0])
                       for q in range(self.index, len(self.model.blocks))]
        self.logit = trace.pre["head"][0]
        self.pj = self.cj = None
        if self.jacobian_bytes() <= self.jacobian_budget.get(self.u.device.type, self.jacobian_budget["cpu"]):
            with torch.no_grad():
                if adjoint_kernels.available(self.u):  # compiled CPU path: only the reachable cells of J
                    self.cj = adjoint.compact_jacobian(self.model, self.index, self.slopes, self.per_channel)
                    p = self.W.shape[-1] // 2
                    self.u_pad = F.pad(self.u, (p, p, p, p)).contiguous()
                else:
                    self.pj = adjoint.pixel_jacobian(self.model, self.index, self.slopes, self.per_channel)

    def compute(self, start: int, stop: int):
        if self.pj is None and self.cj is None:  # J does not fit: one pass through the downstream convs per neuron
            _, _, ident = self.routed(start, stop, with_part=True)
            return linear_block_forward(self, start, stop), ident
        if self.cj is not None:  # compiled CPU path (float32, numba): per-kernel convs and the fused product
            z = kernels.kernel_maps(self.u_pad, self.W, self.b, start, stop)
            maps = adjoint_kernels.apply_compact(self.cj, z, start, self.info.num_neurons)
        else:
            z = kernel_conv(self.u, self.W, self.b, start, stop)
            maps = adjoint.apply_jacobian(self.pj, z, start, self.info.num_neurons)
        part = sum_over_inputs(z, start, self.cout)
        return (maps if self.per_channel else maps[:, 0]), part

    def gap_target(self) -> torch.Tensor:
        return self.logit if self.per_channel else self.logit.sum(0)


def linear_block_forward(rule, start: int, stop: int) -> torch.Tensor:
    """Linear-mode maps of block neurons [start, stop) in the direct forward form: each routed R_{i,o} times the
    block's activation slope through the real downstream convs (biases / K at every conv), one batched pass
    per neuron. The adjoint rule's fallback when its pixel Jacobian exceeds the memory budget, and its
    independent slow reference in the tests. `rule`: a prepared conv-block:linear rule. Returns (n, H, W), or
    (n, 3, H, W) when the rule is per-channel."""
    model, K = rule.model, rule.info.num_neurons
    R, c = rule.routed(start, stop)
    x = R * rule.slopes[0].index_select(0, c)  # (n, H', W'): one nonzero channel c per neuron
    downstream = [blk.conv for blk in model.blocks[rule.index + 1:]] + [model.head]
    first = downstream[0]
    n, kk = x.shape[0], first.kernel_size[0]
    w = first.weight[:, c].transpose(0, 1).reshape(n * first.out_channels, 1, kk, kk)
    y = F.conv2d(x.unsqueeze(0), w, None, padding=kk // 2, groups=n)[0]
    y = y.reshape(n, first.out_channels, *x.shape[-2:]) + (first.bias / K)[None, :, None, None]
    for q, conv in enumerate(downstream[1:]):
        blk = model.blocks[rule.index + 1 + q]
        y = F.pixel_shuffle(y, blk.stride) * rule.slopes[q + 1][None]
        y = F.conv2d(y, conv.weight, conv.bias / K, padding=conv.kernel_size[0] // 2)
    return y if rule.per_channel else y.sum(1)


def standin_propagate(model, index: int, y: torch.Tensor, block_elems: int = 1 << 22) -> torch.Tensor:
    """sum_c S(y_c) (H, W): channels y (C, h, w) of block `index`'s output through the paper's downstream
    stand-ins S (each conv -> zero-padded k x k mean, each PixelShuffle(r) -> nearest x r then the activation),
    a few channels at a time; plain pooling ops, independent of the rule's fused phase planes."""
    downstream = model.blocks[index + 1:]
    ks = [blk.conv.kernel_size[0] for blk in downstream] + [model.head.kernel_size[0]]
    H, W = model.config.height, model.config.width
    step = max(1, block_elems // (H * W))
    total = None
    for c0 in range(0, y.shape[0], step):
        x = y[c0:c0 + step].unsqueeze(1)  # (c, 1, h, w)
        x = F.avg_pool2d(x, ks[0], 1, ks[0] // 2, count_include_pad=True)
        for blk, k in zip(downstream, ks[1:]):
            x = model.act(F.interpolate(x, scale_factor=blk.stride, mode="nearest"))
            x = F.avg_pool2d(x, k, 1, k // 2, count_include_pad=True)
        s = x.sum(dim=(0, 1), dtype=torch.float64)
        total = s if total is None else total + s
    return total
