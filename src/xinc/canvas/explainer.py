"""`xinc.explain`: the canvas of one layer of any torch.nn.Module, and its streaming form.

Our own models (the canvas protocol, xinc.models.protocol) dispatch to the fast registered rules
(xinc.canvas.rules, bit-for-bit today's numbers); any other model goes through the generic engine
(xinc.canvas.generic): torch.fx graph, layer-local transfers per operation kind, chunks over neurons.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from xinc.canvas.engine import (
    Canvas,
    CanvasRun,
    compute_canvas,
    feed_chunks,
    on_device,
    plan_chunk,
    stream_canvas,
)
from xinc.canvas.generic import GenericRule
from xinc.canvas.graph import plan_layer
from xinc.canvas.reduce import Reducer
from xinc.errors import XincError
from xinc.models.protocol import is_canvas_model

ENGINES = ("auto", "fast", "generic")


def _inputs(inputs: Any, device: torch.device) -> tuple:
    if inputs is None:
        raise XincError("inputs: missing ; give the tensor(s) the model's forward takes (e.g. the (H, W, 2) "
                        "coordinate grid or a (1, C, h, w) embedding)")
    items = inputs if isinstance(inputs, tuple | list) else (inputs,)
    return tuple(x.to(device) if isinstance(x, torch.Tensor) else x for x in items)


def _use_fast(model, layer: str, engine: str) -> bool:
    if engine not in ENGINES:
        raise XincError(f"engine {engine!r}: choose one of {', '.join(ENGINES)}")
    ours = is_canvas_model(model) and layer in list(model.layer_names)
    if engine == "fast" and not ours:
        raise XincError(f"engine 'fast': layer {layer!r} of {type(model).__name__} has no registered fast rule ; "
                        "use engine='auto' or 'generic'")
    return ours and engine != "generic"


def generic_run(model: nn.Module, inputs: Any, layer: str, mode: str = "linear", *, per_channel: bool = False,
                output: str | None = None, layout: str = "auto", hw: tuple[int, int] | None = None,
                generic: bool = False, chunk_neurons: int | None = None, memory_budget_mb: float | None = None,
                device=None, neurons: tuple[int, int] | None = None, use_jvp: bool = False) -> CanvasRun:
    """A CanvasRun of the generic engine (one traced point; iterate run.chunks() or run.reduced())."""
    if not isinstance(model, nn.Module):
        raise XincError(f"model: a {type(model).__name__}, not a torch.nn.Module")
    if not isinstance(layer, str) or not layer:
        raise XincError("layer: give the module path of a Linear or Conv2d, e.g. 'decoder.3.conv'")
    model = on_device(model, device)
    params = next(model.parameters(), None)
    dev = params.device if params is not None else torch.device("cpu")
    plan = plan_layer(model.eval(), _inputs(inputs, dev), layer, output=output, generic=generic)
    rule = GenericRule(plan, mode, per_channel, layout, hw, use_jvp=use_jvp)
    rule.prepare()
    K = rule.info.num_neurons
    rng = None
    if neurons is not None:
        a, b = (int(v) for v in neurons)
        if not 0 <= a < b <= K:
            raise XincError(f"neurons {tuple(neurons)}: need 0 <= start < stop <= {K}")
        rng = (a, b)
    return CanvasRun(rule, 0, plan_chunk(rule, chunk_neurons, memory_budget_mb, dev), rng,
                     planned=chunk_neurons is not None or memory_budget_mb is not None)


def explain(model: nn.Module, inputs: Any = None, layer: str | None = None, mode: str = "linear", *,
            frame: int = 0, per_channel: bool = False, output: str | None = None, layout: str = "auto",
            hw: tuple[int, int] | None = None, generic: bool = False, engine: str = "auto",
            chunk_neurons: int | None = None, memory_budget_mb: float | None = None, device=None,
            neurons: tuple[int, int] | None = None) -> Canvas:
    """The canvas of `layer` (a Linear/Conv2d module path, or a paper layer name of our models) at `inputs`.

    maps (K, H, W) (or (K, C, H, W) with per_channel, linear mode); `pairs` (K, 2) are the neurons' (c_in,
    c_out); `exact` is true when the residuals are within float32 round-off and the path allows it. `output`
    names the module whose output is decomposed (default: the model's output; layout auto: (1, C, H, W) conv
    output or (H, W, C) coordinate grid). `generic=True` linearises operations without a registered kind by
    torch.func. Our FFN/NeRV take `frame` instead of inputs and use the fast rules unless engine='generic'.
    """
    if _use_fast(model, layer, engine):
        if inputs is not None:
            raise XincError(f"inputs: {type(model).__name__} layer {layer!r} is explained at frame= (its own "
                            "inputs) ; drop inputs, or pass engine='generic' and a module path as layer")
        cv = compute_canvas(model, layer, frame, mode=mode, per_channel=per_channel, chunk_neurons=chunk_neurons,
                            memory_budget_mb=memory_budget_mb, device=device, neurons=neurons)
        cv.pairs = fast_pairs(cv)
        return cv
    run = generic_run(model, inputs, layer, mode, per_channel=per_channel, output=output, layout=layout, hw=hw,
                      generic=generic, chunk_neurons=chunk_neurons, memory_budget_mb=memory_budget_mb,
                      device=device, neurons=neurons)
    parts = [maps.cpu() for _, maps in run.chunks()]
    info, rule = run.info, run.rule
    lo, hi = run.neurons or (0, info.num_neurons)
    return Canvas(maps=torch.cat(parts, 0), layer=layer, frame=0, mode=mode,
                  exact=bool(info.exact) and run.neurons is None, residual=dict(run.residual),
                  neuron_index=info.neuron_index, c_in=info.c_in, c_out=info.c_out, rule=info.rule, info=info,
                  pairs=rule.slices.pairs(lo, hi), input_groups=rule.plan.input_groups())


def fast_pairs(cv: Canvas) -> torch.Tensor:
    """(K, 2) (c_in, c_out) of a fast-rule canvas; c_out = -1 where a neuron spans every output (MLP rules)."""
    K = cv.num_neurons
    k = torch.arange(K)
    if cv.info.neuron_index.startswith("k = c_in*") and cv.c_out:
        return torch.stack([k // cv.c_out, k % cv.c_out], 1)
    return torch.stack([k, torch.full_like(k, -1)], 1)


def explain_stream(model: nn.Module, inputs: Any, layer: str, reducers: Reducer | Iterable[Reducer],
                   mode: str = "linear", *, frame: int = 0, progress=None, engine: str = "auto",
                   **kw) -> dict[str, float]:
    """Drive reducers (xinc.canvas.reduce) over the layer's canvas chunk by chunk; return the residual.

    Same keywords as explain(); nothing holds the whole layer (the chunk plan follows chunk_neurons /
    memory_budget_mb)."""
    reducers = [reducers] if isinstance(reducers, Reducer) else list(reducers)
    if _use_fast(model, layer, engine):
        fast = {k: kw.pop(k) for k in ("per_channel", "chunk_neurons", "memory_budget_mb", "device", "neurons")
                if k in kw}
        if kw:
            raise XincError(f"explain_stream: {sorted(kw)} apply to the generic engine only")
        return stream_canvas(model, layer, [frame], reducers, mode=mode, progress=progress, **fast)[int(frame)]
    run = generic_run(model, inputs, layer, mode, **kw)
    for red in reducers:
        red.begin_frame(run.info, run.frame)
    feed_chunks(run.chunks(), reducers, progress)
    for red in reducers:
        red.end_frame()
    return dict(run.residual)
