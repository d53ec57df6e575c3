"""The canvas engine: contribution rules per layer kind, chunked computation, streaming reductions.

Public API (docs/CONTRACTS.md): layer_info, iter_canvas, stream_canvas, compute_canvas, Canvas, the rule
registry (register_rule, RULES) and the standard reducers HeatMap, NeuronTotals, GroupSums, Collect.
"""

from xinc.canvas.engine import (
    MODES,
    Canvas,
    check_model,
    compute_canvas,
    iter_canvas,
    layer_info,
    make_rule,
    num_frames,
    stream_canvas,
)
from xinc.canvas.reduce import Collect, GroupSums, HeatMap, LayerInfo, NeuronTotals, Reducer
from xinc.canvas.rules import RULES, Rule, get_rule, register_rule

__all__ = [
    "MODES", "Canvas", "check_model", "compute_canvas", "iter_canvas", "layer_info", "make_rule", "num_frames",
    "stream_canvas", "Collect", "GroupSums", "HeatMap", "LayerInfo", "NeuronTotals", "Reducer", "RULES", "Rule",
    "get_rule", "register_rule",
]

from xinc.canvas.crosscheck import grad_x_activation  # noqa: E402

__all__ += ["grad_x_activation"]

from xinc.canvas.explainer import explain, explain_stream  # noqa: E402

__all__ += ["explain", "explain_stream"]

from xinc.canvas.config import CanvasConfig  # noqa: E402
from xinc.canvas.write import run_canvas  # noqa: E402

__all__ += ["CanvasConfig", "run_canvas"]
