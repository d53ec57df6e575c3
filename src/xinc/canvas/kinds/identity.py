"""Kind identity: nn.Identity and dropout in eval mode (no-ops at inference). Both modes pass states on."""

import torch.nn.functional as F
from torch import nn

from xinc.canvas.kinds.base import Kind, Op, register_kind


@register_kind
class Identity(Kind):
    name = "identity"
    modules = (nn.Identity, nn.Dropout, nn.Dropout2d)
    functions = (F.dropout,)
    paper_note = "identity"
    onehot = True

    def check(self, op: Op) -> str | None:
        training = op.module.training if op.module is not None else op.arg(2, "training", False)
        return "dropout in training mode (call model.eval())" if training and op.node.op != "call_module" or \
            (op.module is not None and not isinstance(op.module, nn.Identity) and op.module.training) else None

    def linear(self, op: Op, ts):
        return ts[0]

    def paper(self, op: Op, ss):
        return ss[0]
