"""The generic canvas rule: any model torch.fx can trace, from layer-local transfers composed along the graph.

A neuron is an (input channel, output channel) slice of a Linear or Conv2d: z_{i,o} = a_i * W[o, i] + b_o / n_in
(n_in = input channels per group), placed in output channel o. Its contribution travels to the output through
each downstream operation's registered transfer (xinc.canvas.kinds), chunk by chunk over neurons.

- linear: every operation linearised at the traced point, its constant term (bias, beta, a constant operand)
  split evenly over the K neurons. The maps sum to the output exactly when every operation is piecewise linear;
  otherwise the gap is the linearisation error.
- paper: the paper's stand-ins (activation per neuron, conv -> mean filter of its kernel size, PixelShuffle ->
  routing then nearest upsampling, upsampling -> the same upsampling); one map per neuron.

Completeness, reported per frame: `identity_*` = sum_k z_k vs the layer's output (the split is exact), and
`gap_*` = sum of the maps vs the output (linear: per output channel; paper: summed over channels).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from xinc.canvas.graph import Plan
from xinc.canvas.reduce import LayerInfo
from xinc.canvas.rules import Rule, residual_stats
from xinc.errors import XincError

LAYOUTS = ("auto", "nchw", "chw", "hwc", "pc")
ROUNDOFF_REL = 1e-4  # relative residual that float32 round-off can reach over a layer's sum
PAPER_EXACT_KINDS = frozenset({"identity", "layout", "upsample", "add", "cat"})  # stand-in = the operation


def resolve_layout(out: torch.Tensor, layout: str, hw: tuple[int, int] | None) -> str:
    """The output layout: nchw (N = 1), chw, hwc (a coordinate grid), or pc (P pixels x C, with hw)."""
    if layout not in LAYOUTS:
        raise XincError(f"layout {layout!r}: choose one of {', '.join(LAYOUTS)}")
    if layout == "auto":
        layout = {4: "nchw", 3: "hwc", 2: "pc"}.get(out.dim(), "")
        if not layout:
            raise XincError(f"model output has shape {tuple(out.shape)} ; expected (1, C, H, W), (H, W, C) or "
                            "(P, C) with hw=(H, W)")
    if layout == "nchw" and (out.dim() != 4 or out.shape[0] != 1):
        raise XincError(f"model output has shape {tuple(out.shape)} ; a canvas explains one sample: give inputs "
                        "with batch size 1")
    if layout == "pc" and (hw is None or out.dim() != 2 or out.shape[0] != hw[0] * hw[1]):
        raise XincError(f"model output has shape {tuple(out.shape)} ; layout 'pc' needs hw=(H, W) with H*W rows")
    return layout


def arrange(t: torch.Tensor, layout: str, hw: tuple[int, int] | None) -> torch.Tensor:
    """Per-neuron outputs (n, *output shape) -> (n, C, H, W)."""
    if layout == "nchw":
        return t[:, 0]
    if layout == "hwc":
        return t.permute(0, 3, 1, 2)
    if layout == "pc":
        return t.transpose(1, 2).reshape(t.shape[0], t.shape[-1], *hw)
    return t


class LayerSlices:
    """The explained layer's neurons: (c_in, c_out) pairs, flat index k = c_in * out_g + (c_out mod out_g)
    with out_g output channels per group (k = c_in * C_out + c_out without groups)."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        self.conv = isinstance(module, nn.Conv2d)
        groups = module.groups if self.conv else 1
        self.c_in = module.in_channels if self.conv else module.in_features
        self.c_out = module.out_channels if self.conv else module.out_features
        self.in_g, self.out_g = self.c_in // groups, self.c_out // groups
        self.K = self.c_in * self.out_g
        self.W = module.weight.detach()
        self.b = None if module.bias is None else module.bias.detach()

    def pairs(self, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """(n, 2) int64 (c_in, c_out) of neurons [start, stop)."""
        k = torch.arange(start, self.K if stop is None else stop)
        i = k // self.out_g
        return torch.stack([i, (i // self.in_g) * self.out_g + k % self.out_g], 1)

    def contributions(self, a: torch.Tensor, y: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        """z_k (n, *y.shape) of neurons [start, stop): one nonzero output channel each."""
        ij = self.pairs(start, stop).to(a.device)
        i, o = ij[:, 0], ij[:, 1]
        n = stop - start
        share = 0.0 if self.b is None else self.b[o] / self.in_g
        if not self.conv:
            vals = a.reshape(-1, a.shape[-1])[:, i] * self.W[o, i] + share  # (P, n)
            z = a.new_zeros(n, y.numel() // self.c_out, self.c_out)
            z[torch.arange(n, device=a.device), :, o] = vals.t()
            return z.reshape(n, *y.shape)
        m = self.module
        x = a if a.dim() == 4 else a[None]
        w = self.W[o, i % self.in_g][:, None]  # (n, 1, kh, kw)
        if m.padding_mode != "zeros":
            ph, pw = m.padding
            src = F.pad(x[:, i], (pw, pw, ph, ph), mode=m.padding_mode)
            v = F.conv2d(src, w, None, m.stride, 0, m.dilation, n)
        else:
            v = F.conv2d(x[:, i], w, None, m.stride, m.padding, m.dilation, n)
        if self.b is not None:
            v = v + share[None, :, None, None]
        z = a.new_zeros(n, x.shape[0], self.c_out, *v.shape[-2:])
        z[torch.arange(n, device=a.device), :, o] = v.transpose(0, 1)
        return z.reshape(n, *y.shape)


class GenericRule(Rule):
    """Rule over a Plan: compute(start, stop) chains the kinds' transfers for a chunk of neurons."""

    kind = "generic"

    def __init__(self, plan: Plan, mode: str, per_channel: bool = False, layout: str = "auto",
                 hw: tuple[int, int] | None = None, use_jvp: bool = False) -> None:
        if mode not in ("paper", "linear"):
            raise XincError(f"mode {mode!r}: choose one of paper, linear")
        if per_channel and mode == "paper":
            raise XincError("per_channel: paper-mode canvases have one map per neuron ; use mode='linear'")
        self.plan, self.mode, self.per_channel, self.use_jvp = plan, mode, per_channel, use_jvp
        self.layer, self.slices = plan.layer, LayerSlices(plan.module)
        self.layout = resolve_layout(plan.out, layout, hw)
        self.hw = hw
        C, H, W = arrange(plan.out[None], self.layout, hw).shape[1:]
        self.C = C
        s = self.slices
        self.info = LayerInfo(
            name=plan.layer, num_neurons=s.K, height=int(H), width=int(W), exact=self.static_exact(),
            rule=f"generic-{mode}", c_in=s.c_in, c_out=s.c_out, mode=mode, kind="generic",
            neuron_index=f"k = c_in*{s.out_g} + (c_out mod {s.out_g})" if s.out_g != s.c_out
            else f"k = c_in*{s.c_out} + c_out",
            channels=int(C) if per_channel else None, notes=self.describe())

    def static_exact(self) -> bool:
        """Whether the maps can sum to the output exactly (before looking at the residual)."""
        if self.mode == "linear":
            return all(k.exact(op) for op, k in zip(self.plan.ops, self.plan.kinds))
        return all(k.name in PAPER_EXACT_KINDS for k in self.plan.kinds)

    def describe(self) -> str:
        """The path and its transfers, in words (the canvas's approximations named)."""
        steps = [f"{op.where}: {k.name}" + ("" if self.mode == "linear" else f" ({k.paper_note})")
                 for op, k in zip(self.plan.ops, self.plan.kinds)]
        head = ("linearised at the traced point, constant terms split over neurons" if self.mode == "linear"
                else "paper stand-ins")
        return f"{head}; path: " + ("; ".join(steps) if steps else "the layer is the output")

    def prepare(self, trace=None) -> None:
        for op in self.plan.ops:
            op.cache.clear()

    def _step(self, op, kind, states: list[torch.Tensor]) -> torch.Tensor:
        if self.mode == "paper":
            return kind.paper(op, states)
        if self.use_jvp:
            from xinc.canvas.kinds.base import jvp_transfer

            out = jvp_transfer(kind.reference(op), [op.values[n] for n in op.inputs], states)
        else:
            out = kind.linear(op, states)
        off = kind.offset(op)
        return out if off is None else out + off / self.slices.K

    def propagate(self, z: torch.Tensor) -> torch.Tensor:
        """Per-neuron states (n, *output shape) from the layer's contributions z (n, *y.shape)."""
        plan = self.plan
        live = {plan.node: z}
        for j, (op, kind) in enumerate(zip(plan.ops, plan.kinds)):
            live[op.node] = self._step(op, kind, [live[a] for a in op.inputs])
            for a in op.inputs:
                if plan.last_use.get(a) == j and a is not plan.out_node:
                    del live[a]
        out = live[plan.out_node]
        want = (out.shape[0], *plan.out.shape)
        if self.mode == "linear" and tuple(out.shape) != want:
            out = out.expand(want)
        return out

    def compute(self, start: int, stop: int):
        plan = self.plan
        z = self.slices.contributions(plan.a, plan.y, start, stop)
        ident = z.sum(0).reshape(-1)
        maps = arrange(self.propagate(z), self.layout, self.hw)  # (n, C or 1, H, W)
        if self.mode == "paper":
            maps = maps.sum(1)
            part = torch.cat([ident, maps.sum(0).reshape(-1)])
            return maps, part
        part = torch.cat([ident, maps.sum(0).reshape(-1)])
        return (maps if self.per_channel else maps.sum(1)), part

    def target(self) -> torch.Tensor:
        out = arrange(self.plan.out[None], self.layout, self.hw)[0]
        gap = out.sum(0) if self.mode == "paper" else out
        return torch.cat([self.plan.y.reshape(-1), gap.reshape(-1)])

    def residual(self, total: torch.Tensor | None) -> dict[str, float]:
        if total is None:
            return {}
        tgt, n = self.target(), self.plan.y.numel()
        res = residual_stats(total[:n], tgt[:n], prefix="identity_")
        res.update(residual_stats(total[n:], tgt[n:], prefix="gap_"))
        return res

    def bytes_per_neuron(self) -> int:
        widest = max([self.plan.y.numel(), self.plan.out.numel()]
                     + [op.out.numel() for op in self.plan.ops if isinstance(op.out, torch.Tensor)])
        return int(widest * 4 * 4)


def within_roundoff(residual: dict[str, float]) -> bool:
    """Both residuals finite and within float32 round-off (relative)."""
    vals = [residual.get(k) for k in ("identity_rel", "gap_rel")]
    return all(v is not None and v == v and v < ROUNDOFF_REL for v in vals)
