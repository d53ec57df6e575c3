"""Kind instance_norm: nn.InstanceNorm2d / F.instance_norm (per sample and channel over the image).

Linear: the statistics frozen at the traced input (running statistics when the module uses them), the mean
subtraction kept: (t - mean_hw(t)) / sigma0 * gamma, beta as offset. Paper: scaled by gamma / sigma0 (averaged
over collapsed channels), no centring or shift."""

import torch
import torch.nn.functional as F
from torch import nn

from xinc.canvas.kinds.base import Kind, Op, fit, register_kind


def _params(op: Op):
    """(weight, bias, eps, running (mean, var) or None)."""
    if op.module is not None:
        m = op.module
        running = (m.running_mean, m.running_var) if m.track_running_stats and not m.training and \
            m.running_mean is not None else None
        return m.weight, m.bias, m.eps, running
    use_input = op.arg(5, "use_input_stats", True)
    rm, rv = op.arg(1, "running_mean"), op.arg(2, "running_var")
    running = None if use_input or rm is None else (rm, rv)
    return op.arg(3, "weight"), op.arg(4, "bias"), float(op.arg(7, "eps", 1e-5)), running


def _chan(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per-channel vector (C,) shaped to broadcast against x (..., C, H, W)."""
    return v.detach().reshape(-1, *([1] * (x.dim() - 2)))


def _stats(op: Op) -> tuple[torch.Tensor | None, torch.Tensor]:
    """(mean to subtract from each contribution or None (running statistics: a fixed shift), sigma)."""
    if "sigma" not in op.cache:
        w, _, eps, running = _params(op)
        x = op.input_value()
        if running is None:
            dims = tuple(range(2 if x.dim() == 4 else 1, x.dim()))
            op.cache["dims"] = dims
            op.cache["sigma"] = torch.sqrt(x.var(dims, unbiased=False, keepdim=True) + eps)
        else:
            op.cache["dims"] = None
            op.cache["sigma"] = torch.sqrt(_chan(running[1], x) + eps)
    return op.cache["dims"], op.cache["sigma"]


@register_kind
class InstanceNorm(Kind):
    name = "instance_norm"
    modules = (nn.InstanceNorm2d,)
    functions = (F.instance_norm,)
    paper_note = "InstanceNorm -> scaled by gamma / sigma (statistics of the traced input), no centring or shift"

    def reference(self, op: Op):
        w = _params(op)[0]
        dims, sigma = _stats(op)
        x0 = op.input_value()

        def frozen(x):
            y = x if dims is None else x - x.mean(dims, keepdim=True)
            y = y / sigma
            return y if w is None else y * _chan(w, x0)

        return frozen

    def linear(self, op: Op, ts: list[torch.Tensor]) -> torch.Tensor:
        t = ts[0]
        dims, sigma = _stats(op)
        w = _params(op)[0]
        if dims is not None:
            t = t - t.mean(tuple(d + 1 for d in dims), keepdim=True)
        t = t / sigma
        return t if w is None else t * _chan(w, op.input_value())

    def offset(self, op: Op) -> torch.Tensor | None:
        w, b, _, running = _params(op)
        x = op.input_value()
        off = None if b is None else _chan(b, x)
        if running is not None:  # (x - mu) / sigma: the running mean is a fixed shift
            shift = -_chan(running[0], x) / _stats(op)[1] * (1.0 if w is None else _chan(w, x))
            off = shift if off is None else off + shift
        return off

    def paper(self, op: Op, ss: list[torch.Tensor]) -> torch.Tensor:
        w = _params(op)[0]
        sigma = _stats(op)[1]
        scale = 1.0 / sigma if w is None else _chan(w, op.input_value()) / sigma
        return ss[0] * fit(scale, ss[0])
