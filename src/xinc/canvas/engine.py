"""Chunked canvas computation: pick the rule, trace one frame, yield neuron chunks, track the residual.

Chunks run over neurons (a contiguous range [start, stop) of the flat c_in-major index) and frames
(one traced forward pass per frame). The completeness residual of a frame is accumulated in float64
over the chunks of the same pass, so nothing ever holds a whole layer: the rule's additive part (keys
identity_*) and the signed sum of the maps (keys gap_*, against what the maps claim to decompose).
"""

from __future__ import annotations

import copy
import weakref
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import torch

from xinc.canvas.reduce import LayerInfo, Reducer, fused_kinds, residual_exact
from xinc.canvas.rules import Rule, accumulate_part, get_rule, layer_kind
from xinc.errors import XincError
from xinc.models import protocol
from xinc.models.trace import Trace
from xinc.utils import resolve_device

DEFAULT_BUDGET_MB = {"cpu": 32.0, "cuda": 1024.0}  # CPU: chunks that stay in cache between the rule's steps
MODES = ("paper", "linear")


def model_device(model) -> torch.device:
    return next(model.parameters()).device


_CHECKED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _signature(model) -> tuple:
    return (repr(model.config),) + tuple((k, tuple(v.shape)) for k, v in model.state_dict().items())


def check_model(model) -> None:
    """Raise XincError when the module's tensors do not match what its config describes (cached per module
    while its config and tensor shapes stay the same)."""
    from xinc.models.io import build_model, check_state_dict

    sig = _signature(model)
    if _CHECKED.get(model) == sig:
        return
    with torch.random.fork_rng(devices=[]):  # building the reference must not move the global RNG
        ref = build_model(model.config)
    check_state_dict(ref, {k: v for k, v in model.state_dict().items()}, f"{type(model).__name__} weights")
    _CHECKED[model] = sig


def make_rule(model, layer: str, mode: str = "paper", per_channel: bool = False) -> Rule:
    """Instantiate the registered rule for a layer (validates the layer name and mode)."""
    if not isinstance(mode, str):
        raise XincError(f"mode {mode!r}: choose one of {', '.join(MODES)}")
    kind = layer_kind(model, layer)
    return get_rule(kind, mode)(model, layer, mode, per_channel)


def layer_info(model, layer: str, mode: str = "paper", per_channel: bool = False) -> LayerInfo:
    """Static description of a canvas layer (neuron count, map size, rule, exactness, index convention)."""
    return make_rule(model, layer, mode, per_channel).info


def num_frames(model) -> int:
    """Frames a model can be queried at: the FFN is one image (frame 0)."""
    return protocol.frames(model)


def check_frame(model, frame: int) -> int:
    n = num_frames(model)
    if not isinstance(frame, int | torch.Tensor) or isinstance(frame, bool):
        raise XincError(f"frame {frame!r}: must be an integer index")
    frame = int(frame)
    if frame < 0 or frame >= n:
        what = "an FFN is one image (frame 0 only)" if n == 1 else f"the video has frames 0..{n - 1}"
        raise XincError(f"frame {frame} is outside the model's frames; {what}")
    return frame


def _trace(model, frame: int, embedding: torch.Tensor | None, device: torch.device) -> Trace:
    """One forward pass with every layer's input kept (no autograd graph)."""
    with torch.no_grad():
        if not protocol.takes_frames(model):
            if embedding is not None:
                raise XincError("embedding= is only for NeRV/HNeRV models; an FFN takes pixel coordinates")
            return model.trace()
        if embedding is None:
            return model.trace([check_frame(model, frame)])
        emb = torch.as_tensor(embedding, dtype=torch.float32).to(device)
        if emb.dim() == 3:
            emb = emb.unsqueeze(0)
        want = model.stem.in_channels
        if emb.dim() != 4 or emb.shape[0] != 1 or emb.shape[1] != want:
            raise XincError(f"embedding has shape {tuple(emb.shape)}; expected ({want}, h, w) or (1, {want}, h, w) "
                            "for this decoder")
        base = list(model.config.fc_hw) if not model.config.is_pe else [1, 1]
        if list(emb.shape[2:]) != base:
            raise XincError(f"embedding grid {tuple(emb.shape[2:])} does not match the decoder's {tuple(base)}")
        return model.trace_embedding(emb)


def trace_frame(model, frame: int = 0) -> Trace:
    """One frame's forward pass with every layer's input kept, to reuse across canvas calls (trace=)."""
    return _trace(model, check_frame(model, frame), None, model_device(model))


def plan_chunk(rule: Rule, chunk_neurons: int | None, memory_budget_mb: float | None,
               device: torch.device | None = None) -> int:
    """Neurons per chunk: chunk_neurons, capped by the memory budget (default budget when neither is set:
    32 MiB on CPU, where cache-sized chunks are fastest, 1 GiB on CUDA)."""
    K = rule.info.num_neurons
    if chunk_neurons is not None and int(chunk_neurons) < 1:
        raise XincError(f"chunk_neurons {chunk_neurons}: must be a positive integer")
    if memory_budget_mb is not None and float(memory_budget_mb) <= 0:
        raise XincError(f"memory_budget_mb {memory_budget_mb}: must be positive")
    by_budget = None
    if memory_budget_mb is not None or chunk_neurons is None:
        default = DEFAULT_BUDGET_MB["cuda" if device is not None and device.type == "cuda" else "cpu"]
        budget = float(memory_budget_mb if memory_budget_mb is not None else default) * 2**20
        by_budget = max(1, int(budget // max(rule.bytes_per_neuron(), 1)))
    n = min(x for x in (chunk_neurons, by_budget) if x is not None)
    return max(1, min(int(n), K))


@dataclass
class CanvasRun:
    """One layer x one frame: iterate `chunks()`; after exhaustion `residual` holds the completeness residual."""

    rule: Rule
    frame: int
    chunk: int
    neurons: tuple[int, int] | None = None  # a sub-range [a, b) of neurons (no residual: it needs all of them)
    planned: bool = False  # chunk comes from the caller's chunk_neurons / memory_budget_mb (fused tiles obey it)
    residual: dict[str, float] = field(default_factory=dict)
    claims_exact: bool | None = None  # the rule's own claim, before any frame's residual is measured

    @property
    def info(self) -> LayerInfo:
        return self.rule.info

    @staticmethod
    def _add(total: torch.Tensor | None, value: torch.Tensor) -> torch.Tensor:
        """Float64 running sum of the maps' signed sums (one map-shaped tensor)."""
        if total is None:
            return value.to(torch.float64, copy=True)
        return total.add_(value)

    def _accumulate(self, total: torch.Tensor | None, part) -> torch.Tensor | None:
        """Add one chunk's additive part (see Rule.compute) into the float64 total."""
        return accumulate_part(total, part, self.rule.part_shape() if total is None else total.shape)

    def _finish(self, total: torch.Tensor | None, map_sum: torch.Tensor | None) -> None:
        """Record the frame's residual; `exact` holds only when the rule claims it and it is measured true."""
        if self.claims_exact is None:
            self.claims_exact = bool(self.info.exact)
        if self.neurons is None:
            self.residual = {**self.rule.residual(total), **self.rule.gap(map_sum)}
            self.info.exact = self.claims_exact and residual_exact(self.residual)
        else:
            self.residual = {}
        self.info.residual = dict(self.residual)

    def chunks(self) -> Iterator[tuple[int, torch.Tensor]]:
        lo, hi = self.neurons or (0, self.info.num_neurons)
        total = map_sum = None
        with torch.no_grad():
            for start in range(lo, hi, self.chunk):
                stop = min(hi, start + self.chunk)
                maps, part = self.rule.compute(start, stop)
                total = self._accumulate(total, part)
                if self.neurons is None:
                    map_sum = self._add(map_sum, maps.sum(0))
                yield start, maps.float()
            self._finish(total, map_sum)

    def reduced(self, wants: frozenset[str]) -> Iterator[tuple[int, int, dict[str, torch.Tensor]]]:
        """Like chunks(), for fused standard reductions: yield (start, stop, {name: value}) per neuron range
        the rule reduces in one go (its own tiles; an explicit chunk plan caps them), without maps."""
        lo, hi = self.neurons or (0, self.info.num_neurons)
        total = map_sum = None
        with torch.no_grad():
            for a, b, values, part in self.rule.reduce(lo, hi, wants, self.chunk if self.planned else None):
                total = self._accumulate(total, part)
                gap = values.pop("gap", None)  # a rule that cannot give the maps' signed sum: no gap, never exact
                map_sum = None if gap is None or (a > lo and map_sum is None) else self._add(map_sum, gap)
                yield a, b, values
            self._finish(total, map_sum)


def _resolve(device) -> torch.device:
    if device is None:
        return None
    if isinstance(device, torch.device):
        return device
    return resolve_device(str(device))


def on_device(model, device):
    """The model on `device` ('auto' | 'cpu' | 'cuda' | torch.device | None = where it is); the caller's
    module is never moved (a copy is made when the device differs)."""
    dev = _resolve(device)
    if dev is None or dev == model_device(model) or (dev.type == model_device(model).type and dev.index is None):
        return model
    return copy.deepcopy(model).to(dev).eval()


def _check_range(neurons, K: int) -> tuple[int, int] | None:
    if neurons is None:
        return None
    a, b = (int(v) for v in neurons)
    if not 0 <= a < b <= K:
        raise XincError(f"neurons {tuple(neurons)}: need 0 <= start < stop <= {K}")
    return (a, b)


def _setup(model, layer, frame, mode, per_channel, chunk_neurons, memory_budget_mb, device, embedding,
           check=True, neurons=None, trace: Trace | None = None) -> CanvasRun:
    if check:
        check_model(model)
    model = on_device(model, device)
    dev = model_device(model)
    if embedding is None:
        frame = check_frame(model, frame)
    rule = make_rule(model, layer, mode, per_channel)
    if trace is None:
        trace = _trace(model, frame, embedding, dev)
    elif layer not in trace.inputs:
        raise XincError(f"trace= has no input for layer {layer!r}; pass the model's own trace of this frame")
    rule.prepare(trace)
    return CanvasRun(rule, int(frame), plan_chunk(rule, chunk_neurons, memory_budget_mb, dev),
                     _check_range(neurons, rule.info.num_neurons),
                     planned=chunk_neurons is not None or memory_budget_mb is not None)


def iter_canvas(model, layer: str, frame: int = 0, *, mode: str = "paper", per_channel: bool = False,
                chunk_neurons: int | None = None, memory_budget_mb: float | None = None, device=None,
                embedding: torch.Tensor | None = None, neurons: tuple[int, int] | None = None,
                trace: Trace | None = None) -> Iterator[tuple[int, torch.Tensor]]:
    """Yield (start, maps) chunks of one frame's canvas: maps (n, H, W) (or (n, C, H, W)) signed float32.

    Neurons are flattened c_in-major (k = c_in*C_out + c_out for conv layers, k = c_in for MLP layers).
    The generator's return value (StopIteration.value) is the residual dict; stream_canvas reports it too.
    `neurons=(a, b)` restricts to a sub-range (sampling huge layers; no residual then). `trace=` reuses a
    forward pass of this frame (model.trace / trace_embedding under no_grad) instead of running one.
    """
    run = _setup(model, layer, frame, mode, per_channel, chunk_neurons, memory_budget_mb, device, embedding,
                 neurons=neurons, trace=trace)
    yield from run.chunks()
    return run.residual


# complexity accepted: argument resolution of the public call; issue 15 owns this file
def stream_canvas(model, layer: str, frames: int | Sequence[int] | None, reducers: Reducer | Iterable[Reducer],  # noqa: C901
                  *, mode: str = "paper", per_channel: bool = False, chunk_neurons: int | None = None,
                  memory_budget_mb: float | None = None, device=None, embedding: torch.Tensor | None = None,
                  progress=None, neurons: tuple[int, int] | None = None,
                  trace: Trace | dict[int, Trace] | None = None, fused: bool = True) -> dict[int, dict[str, float]]:
    """Drive reducers (begin_frame/update/end_frame) over every chunk of every frame; return {frame: residual}.

    `frames` None means every frame. `embedding` (len(frames), C, h, w) gives the decoder input per frame
    (HNeRV encoders, external embeddings). `progress` is an optional callable(n_neurons_done) (e.g. tqdm.update).
    `trace` reuses forward passes: a Trace (one frame) or {frame: Trace}; `neurons=(a, b)` samples a range.
    `fused` (default) lets rules that can (the MLP paper rule) compute HeatMap/NeuronTotals directly in
    cache-sized pixel tiles when those are the only reducers; False always streams the maps.
    """
    reducers = [reducers] if isinstance(reducers, Reducer) else list(reducers)
    check_model(model)
    model = on_device(model, device)
    if frames is None:
        frames = list(range(num_frames(model)))
    elif isinstance(frames, int):
        frames = [frames]
    frames = [int(f) for f in frames]
    if embedding is not None:
        emb = torch.as_tensor(embedding)
        if emb.dim() == 3:
            emb = emb.unsqueeze(0)
        if emb.shape[0] != len(frames):
            raise XincError(f"embedding has {emb.shape[0]} entries for {len(frames)} frames; give one per frame")
    if isinstance(trace, Trace):
        if len(frames) != 1:
            raise XincError("trace= as one Trace needs exactly one frame; give {frame: Trace} for several")
        trace = {frames[0]: trace}
    active = [red for red in reducers if not red.passive]  # passive ones (logs) take no data and never block fusion
    kinds = fused_kinds(reducers)  # standard reductions the rule may compute without maps
    wants = frozenset(kinds)
    residuals: dict[int, dict[str, float]] = {}
    for j, f in enumerate(frames):
        run = _setup(model, layer, f, mode, per_channel, chunk_neurons, memory_budget_mb, None,
                     None if embedding is None else emb[j], check=False, neurons=neurons,
                     trace=None if trace is None else trace.get(f))
        for red in reducers:
            red.begin_frame(run.info, run.frame)
        if fused and active and None not in wants and wants <= run.rule.fusable():
            for start, stop, values in run.reduced(wants):
                for red, kind in zip(active, kinds):
                    red.update_reduced(start, stop, values[kind])
                if progress is not None:
                    progress(stop - start)
        else:
            feed_chunks(run.chunks(), reducers, progress)
        for red in reducers:
            red.end_frame()
        residuals[run.frame] = dict(run.residual)
    return residuals


def feed_chunks(chunks: Iterable[tuple[int, torch.Tensor]], reducers: list[Reducer], progress=None) -> None:
    """Hand every (start, maps) chunk to every reducer in order, counting the maps on `progress`."""
    for start, maps in chunks:
        for red in reducers:
            red.update(start, maps)
        if progress is not None:
            progress(maps.shape[0])


@dataclass
class Canvas:
    """A whole layer's canvas for one frame, in memory: maps (K, H, W) (or (K, C, H, W)) float32 on the CPU."""

    maps: torch.Tensor
    layer: str
    frame: int
    mode: str
    exact: bool
    residual: dict[str, float]
    neuron_index: str
    c_in: int | None
    c_out: int | None
    rule: str
    info: LayerInfo
    pairs: torch.Tensor | None = None  # (K, 2) int64 (c_in, c_out) per neuron (c_out -1: spans all outputs)
    input_groups: list[tuple[str, int, int]] | None = None  # (source, first c_in, stop) when the input is a concat

    @property
    def num_neurons(self) -> int:
        return int(self.maps.shape[0])

    def neuron(self, c_in: int, c_out: int = 0) -> int:
        """Flat neuron index of (c_in, c_out): looked up in `pairs` where the canvas has them (grouped convs
        of the generic engine), else under the rule's flat convention."""
        if self.pairs is not None and bool((self.pairs[:, 1] >= 0).any()):
            hit = ((self.pairs[:, 0] == int(c_in)) & (self.pairs[:, 1] == int(c_out))).nonzero()
            if hit.numel() == 0:
                raise XincError(f"neuron ({c_in}, {c_out}): not a neuron of layer {self.layer!r}; see canvas.pairs")
            return int(hit[0, 0])
        if self.info.neuron_index.startswith("k = c_in*"):
            return int(c_in) * int(self.c_out) + int(c_out)
        return int(c_in)

    def heat(self) -> torch.Tensor:
        """Per-pixel sum of |C| over neurons."""
        return self.maps.abs().sum(0)

    def totals(self) -> torch.Tensor:
        """Per-neuron sum of |C| over pixels."""
        return self.maps.abs().sum(dim=(-2, -1))


def compute_canvas(model, layer: str, frame: int = 0, **kw) -> Canvas:
    """The whole canvas of a layer for one frame (chunked internally; same kwargs as iter_canvas)."""
    run = _setup(model, layer, frame, kw.pop("mode", "paper"), kw.pop("per_channel", False),
                 kw.pop("chunk_neurons", None), kw.pop("memory_budget_mb", None), kw.pop("device", None),
                 kw.pop("embedding", None), neurons=kw.pop("neurons", None), trace=kw.pop("trace", None))
    if kw:
        raise TypeError(f"compute_canvas: unexpected arguments {sorted(kw)}")
    parts = [maps.cpu() for _, maps in run.chunks()]
    info = run.info
    return Canvas(maps=torch.cat(parts, 0), layer=layer, frame=run.frame, mode=info.mode, exact=info.exact,
                  residual=dict(run.residual), neuron_index=info.neuron_index, c_in=info.c_in, c_out=info.c_out,
                  rule=info.rule, info=info)
