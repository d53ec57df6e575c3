"""Read a foreign model's graph (torch.fx) and plan the path from one Linear/Conv2d layer to the output.

`plan_layer(model, inputs, layer)` traces the model symbolically, runs it once on `inputs` keeping every
node's value (the traced point), and lists the operations between the layer and the output with the
registered kind that carries contributions through each (xinc.canvas.kinds). Anything on that path without a
kind is reported in one XincError naming the operations and their module paths. See docs/generic-engine.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import fx, nn

from xinc.canvas.kinds import Kind, Op, find_kind
from xinc.canvas.kinds.base import jvp_transfer
from xinc.errors import XincError

LAYER_TYPES = (nn.Linear, nn.Conv2d)
# operations whose result depends only on the shape of their input, never on its values: constants
SHAPE_ONLY_FUNCTIONS = (torch.ones_like, torch.zeros_like, torch.full_like, torch.empty_like)
SHAPE_ONLY_METHODS = ("new_zeros", "new_ones", "new_full", "new_empty", "size", "dim")


def _shape_only(n: fx.Node) -> bool:
    if n.op == "call_method":
        return n.target in SHAPE_ONLY_METHODS
    return n.op == "call_function" and any(n.target is f for f in SHAPE_ONLY_FUNCTIONS)


class GenericJvp(Kind):
    """Fallback for an operation without a registered kind (only with generic=True): its jvp at the traced
    point in both modes; any constant term it has is dropped (named in the canvas notes)."""

    name = "generic-jvp"
    piecewise_linear = False
    paper_note = "linearised by torch.func.jvp (no paper stand-in)"

    def matches(self, op: Op) -> bool:
        return True

    def paper(self, op: Op, ss: list[torch.Tensor]) -> torch.Tensor:
        return jvp_transfer(op.fn(), [op.values[n] for n in op.inputs], ss)


GENERIC = GenericJvp()


def describe(node: fx.Node, gm: fx.GraphModule) -> str:
    """'<operation> in <module path>' for messages."""
    if node.op == "call_module":
        return f"{type(gm.get_submodule(node.target)).__name__} module '{node.target}'"
    stack = node.meta.get("nn_module_stack") or {}
    path = next(reversed(stack), None) if stack else None
    where = f" in module '{path}'" if path else " in the model's forward"
    if node.op == "call_method":
        return f"tensor method .{node.target}(){where}"
    name = getattr(node.target, "__name__", str(node.target))
    mod = getattr(node.target, "__module__", None) or ""
    return f"function {mod + '.' if mod and mod != 'builtins' else ''}{name}{where}"


def trace_module(model: nn.Module) -> fx.GraphModule:
    """Symbolic trace of the model's forward (leaf modules: torch.nn's own), or one clear error."""
    try:
        return fx.symbolic_trace(model)
    except Exception as e:  # fx raises many types for data-dependent control flow
        raise XincError(f"model {type(model).__name__}: torch.fx cannot trace its forward ({type(e).__name__}: "
                        f"{str(e).splitlines()[0] if str(e) else ''}) ; remove data-dependent Python control flow "
                        "from forward, or wrap the part before the layer so its output is the model's input") from None


def in_place(node: fx.Node, gm: fx.GraphModule) -> bool:
    """Whether the node overwrites its input (relu_, inplace=True, nn.ReLU(inplace=True), +=)."""
    if node.op == "call_module":
        return bool(getattr(gm.get_submodule(node.target), "inplace", False))
    if node.op == "call_method":
        return str(node.target).endswith("_")
    if node.op == "call_function":
        name = getattr(node.target, "__name__", "")
        return bool(node.kwargs.get("inplace")) or (name.endswith("_") and not name.startswith("_")) or \
            name in ("iadd", "isub", "imul", "itruediv")
    return False


class _Recorder(fx.Interpreter):
    """Runs the graph once and keeps every node's value (copies when an in-place op would overwrite them)."""

    def __init__(self, gm: fx.GraphModule) -> None:
        super().__init__(gm)
        self.values: dict[fx.Node, Any] = {}
        self.copy = any(in_place(n, gm) for n in gm.graph.nodes)

    def run_node(self, n: fx.Node) -> Any:
        v = super().run_node(n)
        self.values[n] = v.clone() if self.copy and isinstance(v, torch.Tensor) else v
        return v


def record(gm: fx.GraphModule, inputs: tuple) -> dict[fx.Node, Any]:
    """Every node's value at the traced point (one forward pass, no autograd graph)."""
    rec = _Recorder(gm)
    with torch.no_grad():
        rec.run(*inputs)
    return rec.values


@dataclass
class Plan:
    """The explained layer and the operations from it to the output, bound to one traced point."""

    gm: fx.GraphModule
    values: dict[fx.Node, Any]
    layer: str
    node: fx.Node  # the layer's call
    module: nn.Module  # nn.Linear | nn.Conv2d
    ops: list[Op]
    kinds: list[Kind]
    out_node: fx.Node
    last_use: dict[fx.Node, int]  # index of the last op reading each contribution-carrying node

    @property
    def a(self) -> torch.Tensor:
        """The layer's input at the traced point."""
        return self.values[self.node.args[0]]

    @property
    def y(self) -> torch.Tensor:
        """The layer's output at the traced point."""
        return self.values[self.node]

    @property
    def out(self) -> torch.Tensor:
        return self.values[self.out_node]

    def input_groups(self) -> list[tuple[str, int, int]]:
        """Where the layer's input channels come from when its input is a concatenation of encodings along the
        channel dim: [(producer, first channel, stop)], else one group."""
        src, dim = self.node.args[0], -1 if isinstance(self.module, nn.Linear) else -3
        c = self.a.shape[dim]
        if isinstance(src, fx.Node) and src.op == "call_function" and src.target in (torch.cat, torch.concat):
            d = src.args[1] if len(src.args) > 1 else src.kwargs.get("dim", 0)
            if d % self.a.dim() == dim % self.a.dim():
                groups, start = [], 0
                for part in src.args[0]:
                    width = self.values[part].shape[dim] if isinstance(part, fx.Node) else 0
                    name = describe(part, self.gm) if isinstance(part, fx.Node) and part.op != "placeholder" \
                        else str(part)
                    groups.append((name, start, start + width))
                    start += width
                return groups
        return [(describe(src, self.gm) if isinstance(src, fx.Node) and src.op != "placeholder" else "input", 0, c)]


def _find_layer(gm: fx.GraphModule, layer: str) -> fx.Node:
    calls = [n for n in gm.graph.nodes if n.op == "call_module" and n.target == layer]
    if len(calls) == 1 and isinstance(gm.get_submodule(layer), LAYER_TYPES):
        return calls[0]
    choices = sorted({n.target for n in gm.graph.nodes if n.op == "call_module"
                      and isinstance(gm.get_submodule(n.target), LAYER_TYPES)})
    if len(calls) > 1:
        raise XincError(f"layer {layer!r}: the module is called {len(calls)} times in forward ; a canvas needs a "
                        "layer called once")
    raise XincError(f"layer {layer!r}: not a Linear or Conv2d module called in forward ; choose one of "
                    f"{', '.join(choices) or '(none found)'}")


def _carries(v: Any) -> bool:
    """Whether a value can carry contributions: a tensor, or a container holding one (then unsupported)."""
    if isinstance(v, torch.Tensor):
        return True
    if isinstance(v, tuple | list):
        return any(_carries(x) for x in v)
    return isinstance(v, dict) and any(_carries(x) for x in v.values())


def _reach(gm: fx.GraphModule, values: dict, start: fx.Node, end: fx.Node) -> list[fx.Node]:
    """Tensor-carrying nodes on a path from start to end (graph order, start excluded)."""
    fwd = {start}
    for n in gm.graph.nodes:
        if n is not start and _carries(values.get(n)) and not _shape_only(n) \
                and any(a in fwd for a in n.all_input_nodes):
            fwd.add(n)
    if end not in fwd:
        raise XincError(f"output does not depend on layer {start.target!r} ; pick a layer before the output")
    back, todo = set(), [end]
    while todo:
        n = todo.pop()
        if n in back or n not in fwd:
            continue
        back.add(n)
        todo.extend(n.all_input_nodes)
    return [n for n in gm.graph.nodes if n in back and n is not start]


def _out_node(gm: fx.GraphModule, output: str | None) -> fx.Node:
    if output is not None:
        calls = [n for n in gm.graph.nodes if n.op == "call_module" and n.target == output]
        if len(calls) != 1:
            raise XincError(f"output {output!r}: not a module called once in forward ; give the module path whose "
                            "output the canvas decomposes")
        return calls[0]
    res = next(n for n in gm.graph.nodes if n.op == "output").args[0]
    if not isinstance(res, fx.Node):
        raise XincError("model output: forward returns several values ; pass output= (the module path whose output "
                        "the canvas decomposes)")
    return res


def plan_layer(model: nn.Module, inputs: tuple, layer: str, *, output: str | None = None,
               generic: bool = False, gm: fx.GraphModule | None = None) -> Plan:
    """Trace `model` on `inputs` and plan layer -> output; one XincError lists every unsupported operation."""
    gm = trace_module(model) if gm is None else gm
    node = _find_layer(gm, layer)
    out_node = _out_node(gm, output)
    values = record(gm, inputs)
    if not isinstance(values.get(out_node), torch.Tensor):
        raise XincError("model output: not a tensor ; pass output= (a module whose output is one tensor)")
    path = _reach(gm, values, node, out_node)
    dep = {node, *path}
    ops, kinds, bad = [], [], []
    for n in path:
        op = Op(n, gm.get_submodule(n.target) if n.op == "call_module" else None, values,
                [a for a in n.all_input_nodes if a in dep], describe(n, gm))
        kind = find_kind(op) or (GENERIC if generic else None)
        problem = "no registered kind" if kind is None else kind.check(op)
        if not problem and in_place(n, gm) and any(len(a.users) > 1 for a in op.inputs):
            problem = "in place on a tensor that is used again; write it out of place"
        if problem:
            bad.append(f"{op.where} ({problem})")
        ops.append(op)
        kinds.append(kind)
    if bad:
        raise XincError(f"layer {layer!r}: unsupported operation{'s' if len(bad) > 1 else ''} between the layer and "
                        f"the output: {'; '.join(bad)} ; register a kind (docs/howto-add-layer-kind.md) or pass "
                        "generic=True to linearise them with torch.func")
    last = {}
    for j, op in enumerate(ops):
        for a in op.inputs:
            last[a] = j
    return Plan(gm, values, layer, node, gm.get_submodule(layer), ops, kinds, out_node, last)
