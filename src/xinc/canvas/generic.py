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
from xinc.canvas.kinds.base import OneHot, jvp_transfer
from xinc.canvas.reduce import LayerInfo
from xinc.canvas.rules import Rule
from xinc.errors import XincError

LAYOUTS = ("auto", "nchw", "chw", "hwc", "pc")
PAPER_EXACT_KINDS = frozenset({"identity", "layout", "upsample", "add", "cat"})  # stand-in = the operation
# kinds that act on each position separately (channels last): a Linear layer's downstream made of these is
# the same per-position Jacobian for every neuron of an output channel (the factored fast path)
PIXELWISE_KINDS = frozenset({"linear", "relu", "leaky_relu", "gelu", "silu", "tanh", "sigmoid", "sine", "mul",
                             "add", "identity", "layer_norm"})


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

    def contributions(self, a: torch.Tensor, y: torch.Tensor, start: int, stop: int) -> OneHot:
        """z_k of neurons [start, stop): one nonzero output channel each (a OneHot state shaped like y)."""
        ij = self.pairs(start, stop).to(a.device)
        i, o = ij[:, 0], ij[:, 1]
        n = stop - start
        share = 0.0 if self.b is None else self.b[o] / self.in_g
        if not self.conv:
            vals = a.reshape(-1, a.shape[-1])[:, i] * self.W[o, i] + share  # (P, n)
            return OneHot(vals.t().reshape(n, *y.shape[:-1]), o, -1, self.c_out)
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
        v = v.transpose(0, 1)  # (n, N, h', w')
        return OneHot(v if a.dim() == 4 else v[:, 0], o, -3, self.c_out)


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
        self._widest: int | None = None  # set while probing one neuron's working set
        self._probed: int | None = None
        self._offsets = 1.0 / self.slices.K  # share of each constant term per neuron
        self.pixelwise = self._is_pixelwise()
        self._factors: tuple[torch.Tensor, torch.Tensor] | None = None
        C, H, W = arrange(plan.out[None], self.layout, hw).shape[1:]
        self.C = C
        s = self.slices
        self.info = LayerInfo(
            name=plan.layer, num_neurons=s.K, height=int(H), width=int(W), exact=self.static_exact(),
            rule=f"generic-{mode}", c_in=s.c_in, c_out=s.c_out, mode=mode, kind="generic",
            neuron_index=f"k = c_in*{s.out_g} + (c_out mod {s.out_g})" if s.out_g != s.c_out
            else f"k = c_in*{s.c_out} + c_out",
            channels=int(C) if per_channel else None, notes=self.describe())
        names = {"identity": "sum over neurons of the layer slices = the layer's output",
                 "gap_of": "the model output" + (" per channel" if per_channel else " (channels summed)")}
        for key, text in names.items():  # LayerInfo's completeness names (docs/SEAMS.md section 5)
            if hasattr(self.info, key):
                setattr(self.info, key, text)

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

    def _step(self, op, kind, states: list):
        if self.use_jvp or not kind.onehot:
            states = [s.dense() if isinstance(s, OneHot) else s for s in states]
        out = self._transfer(op, kind, states)
        if self._widest is not None:  # probing one neuron's working set (bytes_per_neuron)
            self._widest = max([self._widest] + [_numel(s) for s in (*states, out)])
        return out

    def _transfer(self, op, kind, states: list):
        if self.mode == "paper":
            return kind.paper(op, states)
        if self.use_jvp:
            out = jvp_transfer(kind.reference(op), [op.values[n] for n in op.inputs], states)
        else:
            out = kind.linear(op, states)
        off = kind.offset(op)
        if off is None or self._offsets == 0.0:
            return out
        return (out.dense() if isinstance(out, OneHot) else out) + off * self._offsets

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
        out = out.dense() if isinstance(out, OneHot) else out
        want = (out.shape[0], *plan.out.shape)
        if self.mode == "linear" and tuple(out.shape) != want:
            out = out.expand(want)
        return out

    def _is_pixelwise(self) -> bool:
        """Linear mode, a Linear layer and only per-position operations (same leading dims) downstream."""
        plan = self.plan
        if self.mode != "linear" or self.use_jvp or self.slices.conv or not plan.ops:
            return False
        lead = tuple(plan.y.shape[:-1])
        return all(k.name in PIXELWISE_KINDS and isinstance(op.out, torch.Tensor) and tuple(op.out.shape[:-1]) == lead
                   for op, k in zip(plan.ops, plan.kinds)) and tuple(plan.out.shape[:-1]) == lead

    def factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(J (C_out, *lead, C): the output's per-position response to a unit in each layer channel, beta (*lead,
        C): every constant term propagated), so that neuron k's map is z_k * J[c_out(k)] + beta / K."""
        if self._factors is None:
            y, m = self.plan.y, self.slices.c_out
            lead = y.shape[:-1]
            try:
                self._offsets = 0.0
                J = self.propagate(OneHot(y.new_ones(m, *lead), torch.arange(m, device=y.device), -1, m))
                self._offsets = 1.0
                beta = self.propagate(OneHot(y.new_zeros(1, *lead), torch.zeros(1, dtype=torch.long,
                                                                                   device=y.device), -1, m))[0]
            finally:
                self._offsets = 1.0 / self.slices.K
            self._factors = (J, beta)
        return self._factors

    def compute(self, start: int, stop: int):
        plan = self.plan
        z = self.slices.contributions(plan.a, plan.y, start, stop)
        acc = z.vals.new_zeros(z.channels, *z.vals.shape[1:]).index_add_(0, z.chan, z.vals)
        ident = acc.movedim(0, z.cdim).reshape(-1)  # sum_k z_k, shaped like y
        if self.pixelwise and self._widest is None:
            J, beta = self.factors()
            out = torch.addcmul(beta / self.slices.K, z.vals.unsqueeze(-1), J.index_select(0, z.chan))
        else:
            out = self.propagate(z)
        maps = arrange(out, self.layout, self.hw)  # (n, C or 1, H, W)
        return (maps if self.per_channel else maps.sum(1)), ident

    def target(self) -> torch.Tensor:
        """The identity: the neurons' slices sum to the layer's output (flattened)."""
        return self.plan.y.reshape(-1)

    def gap_target(self) -> torch.Tensor:
        """What the maps sum to when nothing on the path is approximated: the output (per channel, or summed)."""
        out = arrange(self.plan.out[None], self.layout, self.hw)[0]
        return out if self.per_channel else out.sum(0)

    def bytes_per_neuron(self) -> int:
        """Peak bytes per neuron of a chunk: the largest state one neuron's probe forms (one-hot states are
        C times smaller than the values), x4 for an op's input, output and temporaries, plus its map (measured
        on a 640x1280 decoder: 2.16 GB for a 2 GB budget at x3)."""
        if self.pixelwise:  # z_k, its gathered response J[c_out] and its map
            return int(self.plan.out.numel() * 3 * 4)
        if self._probed is None:
            self._widest = 0
            try:
                self.compute(0, 1)
                self._probed = self._widest
            finally:
                self._widest = None
        return int((self._probed * 4 + self.plan.out.numel()) * 4)


def _numel(state) -> int:
    return state.vals.numel() if isinstance(state, OneHot) else state.numel()


