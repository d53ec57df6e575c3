"""Streaming reductions over canvas chunks, so no caller ever needs a whole layer in memory.

A reducer sees, for each frame, the signed maps of consecutive neuron ranges (chunks), in order:
    begin_frame(info, frame) -> update(start, maps) ... -> end_frame()
and finally result(). `maps` is a (n, H, W) float tensor of neurons [start, start+n) (or
(n, C, H, W) for per-output-channel canvases). Analyses write their own reducers on this protocol.

When end_frame() runs, `self.info.residual` already holds the completeness residual of the frame
(computed by the engine in the same streaming pass), so reducers can record it: `identity_max_abs`,
`identity_rel` (the identity the rule guarantees, named by `info.identity`) and `gap_max_abs`, `gap_rel`
(sum of the maps vs what they claim to decompose, named by `info.gap_of`); `info.exact` then says whether
both are finite and within float32 round-off (and the rule claims exactness).
Standard reducers return {frame: tensor} on the CPU from result(); they accumulate in float64 so
their results do not depend on the chunking beyond float32 round-off of the maps themselves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from xinc.errors import XincError


@dataclass
class LayerInfo:
    """What a reducer needs to know about the layer being streamed."""

    name: str
    num_neurons: int
    height: int
    width: int
    exact: bool
    rule: str
    c_in: int | None = None
    c_out: int | None = None
    mode: str = "paper"
    kind: str = ""  # "mlp" | "conv-head" | "conv-block"
    neuron_index: str = ""  # how the flat neuron index k maps to (c_in, c_out)
    channels: int | None = None  # C of (n, C, H, W) per-output-channel maps; None for (n, H, W)
    residual: dict[str, float] = field(default_factory=dict)  # filled per frame by the engine
    notes: str = ""  # the approximations of the rule, in words
    identity: str = ""  # what the residual's identity_* keys check (the identity the rule guarantees)
    gap_of: str = ""  # what the gap_* keys compare the sum of the maps with (what the maps claim to decompose)

    @property
    def map_shape(self) -> tuple[int, ...]:
        """Shape of one neuron's map."""
        return (self.height, self.width) if self.channels is None else (self.channels, self.height, self.width)


ROUNDOFF_REL = 1e-4  # relative residuals at or below this are float32 round-off (as xinc.canvas.generic)


def residual_exact(residual: dict[str, float]) -> bool:
    """True when a residual has both identity_ and gap_ parts, all finite and within float32 round-off."""
    rels = [residual.get("identity_rel"), residual.get("gap_rel")]
    if any(v is None for v in rels) or not all(math.isfinite(float(v)) for v in residual.values()):
        return False
    return all(float(v) <= ROUNDOFF_REL for v in rels)


def worst_residual(per_frame) -> dict[str, float]:
    """The worst value of every residual key over frames ({frame: residual} or a list of residuals); NaN wins."""
    frames = list(per_frame.values()) if isinstance(per_frame, dict) else list(per_frame)
    out: dict[str, float] = {}
    for r in frames:
        for k, v in r.items():
            v, old = float(v), out.get(k)
            if old is None or not math.isfinite(v) or (math.isfinite(old) and v > old):
                out[k] = v
    return out


def completeness_line(info: LayerInfo, per_frame) -> str:
    """One line naming what the residual checks: the rule's identity and the output-side gap (worst frame)."""
    w = worst_residual(per_frame)
    claims = " (the rule claims exactness)" if info.exact else ""
    ok = bool(w) and all(residual_exact(r) for r in (per_frame.values() if isinstance(per_frame, dict)
                                                     else per_frame))
    ident = f"identity [{info.identity}] rel {w.get('identity_rel', float('nan')):.2e}"
    gap = f"gap [sum of maps vs {info.gap_of}] rel {w.get('gap_rel', float('nan')):.2e}"
    return f"exact={info.exact and ok}{claims if not ok else ''}; {ident}; {gap}"


class Reducer:
    """Base class: override update(); begin_frame/end_frame/result are optional.

    A reducer that is one of the standard reductions sets `fuses` ("heat" | "totals") and implements
    update_reduced(start, stop, value): when every reducer of a stream fuses and the rule can compute those
    reductions directly (Rule.fusable), the engine hands over the reduced values and never forms the maps.
    """

    fuses: str | None = None
    passive = False  # True: takes no map data (only begin/end_frame), so it never stops the others from fusing

    def update_reduced(self, start: int, stop: int, value: torch.Tensor) -> None:
        raise NotImplementedError

    def begin_frame(self, info: LayerInfo, frame: int) -> None:
        self.info, self.frame = info, frame

    def update(self, start: int, maps: torch.Tensor) -> None:
        raise NotImplementedError

    def end_frame(self) -> None:
        pass

    def result(self) -> Any:
        raise NotImplementedError


def fused_kinds(reducers: list[Reducer]) -> list[str | None]:
    """fused_kind of each reducer that takes map data (passive reducers left out)."""
    return [fused_kind(r) for r in reducers if not r.passive]


def fused_kind(red: Reducer) -> str | None:
    """The standard reduction `red` stands for, or None when it is not one (or a subclass overrides update()
    without also overriding update_reduced(), so its maps must be streamed)."""
    if red.fuses is None:
        return None
    mro = type(red).__mro__
    own_update = next(k for k in mro if "update" in k.__dict__)
    own_reduced = next(k for k in mro if "update_reduced" in k.__dict__)
    return red.fuses if own_update is own_reduced else None


class _PerFrame(Reducer):
    """Shared plumbing: one float64 accumulator per frame, returned as float32 CPU tensors."""

    def __init__(self) -> None:
        self.results: dict[int, torch.Tensor] = {}
        self.residuals: dict[int, dict[str, float]] = {}
        self._acc: torch.Tensor | None = None

    def end_frame(self) -> None:
        self.results[self.frame] = self._acc.to("cpu", torch.float32)
        self.residuals[self.frame] = dict(self.info.residual)
        self._acc = None

    def result(self) -> dict[int, torch.Tensor]:
        return dict(self.results)


class HeatMap(_PerFrame):
    """Per-pixel total |C| over all neurons: H(p) = sum_k |C_k(p)|; (H, W) (or (C, H, W)) per frame."""

    fuses = "heat"

    def begin_frame(self, info: LayerInfo, frame: int) -> None:
        super().begin_frame(info, frame)
        self._acc = None

    def update(self, start: int, maps: torch.Tensor) -> None:
        self.update_reduced(start, start + maps.shape[0], maps.abs().sum(0))

    def update_reduced(self, start: int, stop: int, value: torch.Tensor) -> None:
        if self._acc is None:  # float32 within a chunk, float64 across chunks (own copy, added in place)
            self._acc = value.to(torch.float64, copy=True)
        else:
            self._acc += value


class NeuronTotals(_PerFrame):
    """Per-neuron total |C| over all pixels: T_k = sum_p |C_k(p)|; (K,) (or (K, C)) per frame."""

    fuses = "totals"

    def begin_frame(self, info: LayerInfo, frame: int) -> None:
        super().begin_frame(info, frame)
        extra = () if info.channels is None else (info.channels,)
        self._acc = torch.zeros(info.num_neurons, *extra, dtype=torch.float64)

    def update(self, start: int, maps: torch.Tensor) -> None:
        self.update_reduced(start, start + maps.shape[0], torch.linalg.vector_norm(maps.flatten(-2), 1, dim=-1))

    def update_reduced(self, start: int, stop: int, value: torch.Tensor) -> None:
        self._acc[start:stop] = value.to("cpu", torch.float64)


class GroupSums(_PerFrame):
    """Per-neuron sum of |C| inside each pixel group: (K, G) (or (K, C, G)) per frame.

    `labels` is an (H, W) int64 map of group ids in [0, num_groups) used for every frame, or a
    dict {frame: (H, W)} / a callable frame -> (H, W) when the groups change per frame (segments).
    """

    def __init__(self, labels, num_groups: int) -> None:
        super().__init__()
        if num_groups < 1:
            raise XincError(f"GroupSums: num_groups {num_groups} must be positive")
        self.labels, self.num_groups = labels, int(num_groups)
        self._flat: torch.Tensor | None = None

    def _labels_for(self, frame: int) -> torch.Tensor:
        lab = self.labels
        if callable(lab):
            lab = lab(frame)
        elif isinstance(lab, dict):
            if frame not in lab:
                raise XincError(f"GroupSums: no labels for frame {frame}; give labels for every streamed frame")
            lab = lab[frame]
        return torch.as_tensor(lab)

    def begin_frame(self, info: LayerInfo, frame: int) -> None:
        super().begin_frame(info, frame)
        lab = self._labels_for(frame)
        if tuple(lab.shape) != (info.height, info.width):
            raise XincError(
                f"GroupSums: labels have shape {tuple(lab.shape)} but layer {info.name} maps are "
                f"{info.height}x{info.width}; resample the labels to the canvas size"
            )
        if lab.is_floating_point() or lab.dtype == torch.bool:
            raise XincError("GroupSums: labels must be an integer map of group ids")
        lab = lab.to(torch.int64)
        if lab.numel() and (int(lab.min()) < 0 or int(lab.max()) >= self.num_groups):
            raise XincError(
                f"GroupSums: label values span {int(lab.min())}..{int(lab.max())}, outside 0..{self.num_groups - 1}"
            )
        self._flat = lab.reshape(-1)
        extra = () if info.channels is None else (info.channels,)
        self._acc = torch.zeros(info.num_neurons, *extra, self.num_groups, dtype=torch.float64)

    def update(self, start: int, maps: torch.Tensor) -> None:
        a = maps.abs().flatten(-2).to(torch.float64)  # (n, [C,] P)
        flat = self._flat.to(a.device)
        out = torch.zeros(*a.shape[:-1], self.num_groups, dtype=torch.float64, device=a.device)
        out.index_add_(out.dim() - 1, flat, a)
        self._acc[start:start + maps.shape[0]] = out.cpu()


class Collect(Reducer):
    """Keep the whole signed canvas of every frame: {frame: (K, H, W)} (small layers / tests only)."""

    def __init__(self, dtype: torch.dtype = torch.float32) -> None:
        self.dtype = dtype
        self.results: dict[int, torch.Tensor] = {}
        self.residuals: dict[int, dict[str, float]] = {}
        self._parts: list[torch.Tensor] = []

    def begin_frame(self, info: LayerInfo, frame: int) -> None:
        super().begin_frame(info, frame)
        self._parts = []

    def update(self, start: int, maps: torch.Tensor) -> None:
        self._parts.append(maps.to("cpu", self.dtype))

    def end_frame(self) -> None:
        self.results[self.frame] = torch.cat(self._parts, 0)
        self.residuals[self.frame] = dict(self.info.residual)
        self._parts = []

    def result(self) -> dict[int, torch.Tensor]:
        return dict(self.results)
