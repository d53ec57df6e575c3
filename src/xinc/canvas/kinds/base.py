"""The kind protocol: `Op` (one traced graph node with its values) and `Kind` (its two transfers).

A *state* is a batch of per-neuron tensors shaped (n, *value.shape) for the n neurons of a chunk. In paper
mode a state may have size 1 where the value has channels (channels collapsed by a mean-filter stand-in);
`fit` averages per-channel constants over such collapsed dimensions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import fx, nn

from xinc.errors import XincError

KINDS: dict[str, Kind] = {}


@dataclass
class OneHot:
    """A state whose every neuron is nonzero in one channel only (the explained layer's output, and what
    channel-wise operations make of it): vals (n, *value shape without the channel dim), chan (n,) int64.
    C times smaller than the dense state; kinds with `onehot = True` take it, the engine densifies for others."""

    vals: torch.Tensor
    chan: torch.Tensor
    cdim: int  # the channel dim of the value, negative
    channels: int

    def dense(self) -> torch.Tensor:
        """(n, *value shape) with zeros outside each neuron's channel."""
        n = self.vals.shape[0]
        z = self.vals.new_zeros(n, self.channels, *self.vals.shape[1:])
        z[torch.arange(n, device=z.device), self.chan] = self.vals
        return z.movedim(1, self.cdim)

    def like(self, vals: torch.Tensor, chan: torch.Tensor | None = None, channels: int | None = None) -> OneHot:
        """The same layout with new values (and channels)."""
        return OneHot(vals, self.chan if chan is None else chan, self.cdim,
                      self.channels if channels is None else channels)

    def pick(self, full: torch.Tensor) -> torch.Tensor:
        """Each neuron's own channel of a value-shaped tensor: (n, *vals.shape[1:])."""
        rest = self.vals.shape[1:]
        pos = len(rest) + 1 + self.cdim  # the channel's position in the value
        shape = (*rest[:pos], self.channels, *rest[pos:])
        return full.expand(shape).movedim(pos, 0).index_select(0, self.chan)


def register_kind(cls: type[Kind]) -> type[Kind]:
    """Class decorator: register one instance of `cls` under cls.name (a later registration replaces it)."""
    if not cls.name:
        raise ValueError(f"{cls.__name__}: a kind needs a name")
    KINDS[cls.name] = cls()
    return cls


@dataclass
class Op:
    """One operation downstream of the explained layer, with the traced values of everything it reads."""

    node: fx.Node
    module: nn.Module | None
    values: dict[fx.Node, Any]
    inputs: list[fx.Node]  # arguments that carry neuron contributions (downstream of the layer), in order
    where: str  # module path and operation, for messages
    cache: dict[str, Any] = field(default_factory=dict)  # per-frame constants a kind computes once (slopes)

    @property
    def out(self) -> torch.Tensor:
        """The operation's output at the traced point."""
        return self.values[self.node]

    def value(self, arg: Any) -> Any:
        """Traced value of an argument (nodes replaced by their values, containers mapped)."""
        return fx.node.map_arg(arg, lambda n: self.values[n])

    def arg(self, i: int, name: str | None = None, default: Any = None) -> Any:
        """Traced value of positional argument i (or keyword `name`)."""
        if i < len(self.node.args):
            return self.value(self.node.args[i])
        if name is not None and name in self.node.kwargs:
            return self.value(self.node.kwargs[name])
        return default

    def input_value(self, j: int = 0) -> torch.Tensor:
        """Traced value of the j-th contribution-carrying input."""
        return self.values[self.inputs[j]]

    def call(self, subs: dict[fx.Node, Any]) -> Any:
        """Run the operation with some inputs replaced (nodes in `subs`), the others at their traced values."""
        get = lambda n: subs[n] if n in subs else self.values[n]  # noqa: E731
        args = fx.node.map_arg(self.node.args, get)
        kwargs = fx.node.map_arg(self.node.kwargs, get)
        if self.node.op == "call_module":
            return self.module(*args, **kwargs)
        if self.node.op == "call_method":
            return getattr(args[0], self.node.target)(*args[1:], **kwargs)
        return self.node.target(*args, **kwargs)

    def fn(self) -> Callable[..., torch.Tensor]:
        """The operation as a function of its contribution-carrying inputs (the rest fixed at traced values)."""
        return lambda *xs: self.call(dict(zip(self.inputs, xs)))


def jvp_transfer(fn: Callable[..., torch.Tensor], primals: list[torch.Tensor],
                 tangents: list[torch.Tensor]) -> torch.Tensor:
    """The generic linear transfer: J_fn(primals) applied to every neuron's tangent (torch.func jvp, vmap over
    the leading neuron dimension)."""
    primals = tuple(p.detach() for p in primals)

    def one(*ts):
        return torch.func.jvp(fn, primals, ts)[1]

    return torch.func.vmap(one)(*tangents)


def batched(f: Callable[[torch.Tensor], torch.Tensor], t: torch.Tensor, value_ndim: int,
            op_ndim: int) -> torch.Tensor:
    """Apply an op written for (B, *op_dims) tensors to a state (n, *value.shape): fold the neuron dimension
    into the batch when the value has a batch dimension (value_ndim == op_ndim), else use it as the batch."""
    if value_ndim == op_ndim:
        n, b = t.shape[:2]
        y = f(t.reshape(n * b, *t.shape[2:]))
        return y.reshape(n, b, *y.shape[1:])
    return f(t)


def fit(const: torch.Tensor | float, state: torch.Tensor) -> torch.Tensor | float:
    """A constant operand made to broadcast against a paper-mode state: averaged over the dimensions the state
    has collapsed (size 1 where the constant has more), so per-channel factors become their channel mean."""
    if not isinstance(const, torch.Tensor) or const.dim() == 0:
        return const
    shape = state.shape[1:]
    c = const
    dims = [-(j + 1) for j in range(min(c.dim(), len(shape))) if shape[-(j + 1)] == 1 and c.shape[-(j + 1)] > 1]
    if dims:
        c = c.mean(dim=dims, keepdim=True)
    return c


def collapse_to(state: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Sum a state over the dimensions where `shape` has size 1 and the state more (a resolved paper state
    meeting a collapsed one)."""
    dims = [d for d in range(1, state.dim()) if shape[d - 1] == 1 and state.shape[d] > 1]
    return state.sum(dim=dims, keepdim=True) if dims else state


class Kind:
    """An operation kind: which graph nodes it handles and its two transfers (see docs/howto-add-layer-kind.md).

    `linear(op, ts)` maps the tangents of op.inputs ((n, *input.shape) each) to the output's tangent without
    the op's own constant term; `offset(op)` is that constant term (the engine adds offset / K to every neuron,
    so K neurons carry it once). `reference(op)` is the function whose jvp defines the linear transfer (tests
    and the generic path use it). `paper(op, ss)` is the paper's stand-in on per-neuron states."""

    name: ClassVar[str] = ""
    modules: ClassVar[tuple[type, ...]] = ()  # nn.Module types (call_module nodes)
    functions: ClassVar[tuple[Any, ...]] = ()  # call_function targets
    methods: ClassVar[tuple[str, ...]] = ()  # call_method names
    piecewise_linear: ClassVar[bool] = True  # linear transfer + offset reproduce the op at the traced point
    paper_note: ClassVar[str] = ""  # the paper-mode stand-in, in words
    onehot: ClassVar[bool] = False  # linear/paper accept OneHot states (else the engine densifies them)

    def matches(self, op: Op) -> bool:
        node = op.node
        if node.op == "call_module":
            return isinstance(op.module, self.modules) if self.modules else False
        if node.op == "call_method":
            return node.target in self.methods
        return node.op == "call_function" and any(node.target is f for f in self.functions)

    def exact(self, op: Op) -> bool:
        """Whether linear transfer + offset reproduce this op exactly at the traced point (piecewise linear)."""
        return self.piecewise_linear

    def check(self, op: Op) -> str | None:
        """Why this op cannot be handled (a problem for the error message), or None."""
        return None

    def reference(self, op: Op) -> Callable[..., torch.Tensor]:
        """Function of the contribution-carrying inputs whose jvp at the traced point is the linear transfer."""
        return op.fn()

    def linear(self, op: Op, ts: list[torch.Tensor]) -> torch.Tensor:
        return jvp_transfer(self.reference(op), [op.values[n] for n in op.inputs], ts)

    def offset(self, op: Op) -> torch.Tensor | None:
        return None

    def paper(self, op: Op, ss: list[torch.Tensor]) -> torch.Tensor:
        raise XincError(f"{op.where}: no paper-mode stand-in for {self.name}; use mode='linear'")


class Elementwise(Kind):
    """Activations: linear = multiply by the local slope (the jvp of the activation at the traced input);
    paper = the activation applied to each neuron's contribution. No constant term."""

    piecewise_linear = False
    paper_note = "the activation applied per neuron (to its own channel while it has one)"
    onehot = True

    def act(self, op: Op) -> Callable[[torch.Tensor], torch.Tensor]:
        """The activation as a one-argument function (module or function with its fixed arguments)."""
        return op.fn()

    def linear(self, op: Op, ts: list) -> torch.Tensor | OneHot:
        slope = op.cache.get("slope")
        if slope is None:
            x = op.input_value().detach().clone()  # an in-place activation must not touch the traced value
            slope = op.cache["slope"] = torch.func.jvp(self.act(op), (x,), (torch.ones_like(x),))[1]
        t = ts[0]
        return t.like(t.vals * t.pick(slope)) if isinstance(t, OneHot) else t * slope

    def paper(self, op: Op, ss: list) -> torch.Tensor | OneHot:
        s = ss[0]
        return s.like(self.act(op)(s.vals)) if isinstance(s, OneHot) else self.act(op)(s)
