"""Conv decoders for one video: NeRV (frame-index PE -> fc -> PixelShuffle blocks -> head) and HNeRV.

One class covers both: the embedding is either NeRV's positional encoding of t = k/T or a stored
table of per-frame embeddings (HNeRV); the decoder is stem (1x1 conv + act, optional reshape to
fc_h x fc_w), N blocks (k x k conv -> PixelShuffle(r) -> act), and a k x k head to RGB logits.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from xinc.models.encodings import FramePositionalEncoding, parse_pe_spec
from xinc.models.init import default_init_
from xinc.models.trace import Trace


@dataclass
class NeRVConfig:
    """Everything needed to rebuild a NeRV/HNeRV decoder (defaults = the paper's NeRV, 978,557 params)."""

    kind: str = "nerv"
    height: int = 128
    width: int = 256
    num_frames: int = 30
    embed: str = "pe_1.25_80"  # "pe_<base>_<levels>" or "table" (stored per-frame embeddings, HNeRV)
    embed_shape: list[int] | None = None  # (C, h, w) of a table embedding
    fc_hw: list[int] = field(default_factory=lambda: [8, 16])  # base grid of the decoder
    fc_dim: int = 37  # channels of the stem output at the base grid
    strides: list[int] = field(default_factory=lambda: [4, 2, 2])
    kernel_sizes: list[int] = field(default_factory=lambda: [3, 3, 3])
    widths: list[int] = field(default_factory=lambda: [31, 26, 22])  # channels after each shuffle
    head_ks: int = 3
    act: str = "gelu"
    out_act: str = "tanh"  # output = 0.5*tanh(z)+0.5; "none" returns z

    @property
    def is_pe(self) -> bool:
        return self.embed.startswith("pe_")

    @property
    def stem_in(self) -> int:
        if self.is_pe:
            return 2 * parse_pe_spec(self.embed)[1]
        return int(self.embed_shape[0])

    @property
    def stem_out(self) -> int:
        fh, fw = self.fc_hw
        return self.fc_dim * fh * fw if self.is_pe else self.fc_dim

    def validate(self) -> None:
        n = len(self.strides)
        if not (len(self.kernel_sizes) == len(self.widths) == n) or n == 0:
            raise ValueError("strides, kernel_sizes and widths need one entry per block (at least one block)")
        if any(s < 1 for s in self.strides) or any(k < 1 or k % 2 == 0 for k in self.kernel_sizes):
            raise ValueError("strides must be >= 1 and kernel sizes odd (for 'same' padding)")
        if self.head_ks < 1 or self.head_ks % 2 == 0:
            raise ValueError(f"head kernel size {self.head_ks}: must be odd")
        if self.act not in ("gelu", "relu", "silu"):
            raise ValueError(f"act {self.act!r}: choose gelu, relu or silu")
        if self.is_pe:
            parse_pe_spec(self.embed)
        elif self.embed != "table" or not self.embed_shape or len(self.embed_shape) != 3:
            raise ValueError("embed must be pe_<base>_<levels>, or 'table' with embed_shape (C, h, w)")
        total = math.prod(self.strides)
        fh, fw = self.fc_hw
        if fh * total != self.height or fw * total != self.width:
            raise ValueError(
                f"base grid {fh}x{fw} times the product of strides {total} gives "
                f"{fh * total}x{fw * total}, not the output size {self.height}x{self.width}"
            )
        if not self.is_pe and list(self.embed_shape[1:]) != list(self.fc_hw):
            raise ValueError(f"embedding grid {self.embed_shape[1:]} must equal fc_hw {self.fc_hw}")

    @classmethod
    def from_dict(cls, d: dict) -> NeRVConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def block_widths(fc_dim: int, num_blocks: int, reduce: float, lower_width: int) -> list[int]:
    """NeRV's width rule: new = int(max(round(prev / reduce), lower_width)) for each block."""
    widths, prev = [], fc_dim
    for _ in range(num_blocks):
        prev = int(max(round(prev / reduce), lower_width))
        widths.append(prev)
    return widths


def nerv_param_count(cfg: NeRVConfig) -> int:
    """Parameters of the decoder described by `cfg` (stored embeddings not counted)."""
    n = cfg.stem_in * cfg.stem_out + cfg.stem_out
    prev = cfg.fc_dim
    for w, s, k in zip(cfg.widths, cfg.strides, cfg.kernel_sizes):
        out = w * s * s
        n += prev * out * k * k + out
        prev = w
    return n + prev * 3 * cfg.head_ks**2 + 3


def paper_kernel_sizes(ks: str, num_blocks: int) -> list[int]:
    """Original '--ks 0_a_b' vocabulary: block i (0-based) uses min(a + 2i, b)."""
    parts = [int(x) for x in str(ks).split("_")]
    if len(parts) != 3:
        raise ValueError(f"ks {ks!r}: expected <fc>_<first>_<max>, e.g. 0_3_3")
    return [min(parts[1] + 2 * i, parts[2]) for i in range(num_blocks)]


def nerv_config_for_budget(
    height: int = 128,
    width: int = 256,
    num_frames: int = 30,
    strides: list[int] | None = None,
    kernel_sizes: list[int] | None = None,
    reduce: float = 1.2,
    lower_width: int = 6,
    modelsize: float = 1.0,
    embed: str = "pe_1.25_80",
    head_ks: int = 3,
    fc_dim: int | None = None,
) -> NeRVConfig:
    """NeRV config whose fc_dim is the largest width that keeps the parameters <= modelsize million."""
    strides = list(strides or [4, 2, 2])
    kernel_sizes = list(kernel_sizes or [3] * len(strides))
    total = math.prod(strides)
    if height % total or width % total:
        raise ValueError(f"size {height}x{width} is not divisible by the product of strides {strides} = {total}")
    fc_hw = [height // total, width // total]

    def build(d: int) -> NeRVConfig:
        return NeRVConfig(
            height=height, width=width, num_frames=num_frames, embed=embed, fc_hw=fc_hw, fc_dim=d,
            strides=strides, kernel_sizes=kernel_sizes, widths=block_widths(d, len(strides), reduce, lower_width),
            head_ks=head_ks,
        )

    if fc_dim is None:
        budget = modelsize * 1e6
        if nerv_param_count(build(1)) > budget:
            raise ValueError(f"modelsize {modelsize}M is too small for even fc_dim=1 at {height}x{width}")
        lo, hi = 1, 2
        while nerv_param_count(build(hi)) <= budget:
            lo, hi = hi, hi * 2
        while hi - lo > 1:  # parameters grow monotonically with fc_dim
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if nerv_param_count(build(mid)) <= budget else (lo, mid)
        fc_dim = lo
    cfg = build(fc_dim)
    cfg.validate()
    return cfg


def _act(name: str):
    return {"gelu": F.gelu, "relu": F.relu, "silu": F.silu}[name]


class NeRVBlock(nn.Module):
    """k x k conv ('same' padding) -> PixelShuffle(r) -> activation."""

    def __init__(self, c_in: int, c_out: int, stride: int, ks: int):
        super().__init__()
        self.stride, self.ks = stride, ks
        self.conv = nn.Conv2d(c_in, c_out * stride * stride, ks, padding=ks // 2)


class NeRV(nn.Module):
    """Frame index -> frame. `trace` keeps every layer's input for the canvas engine (weights drawn from
    `generator` when one is given, else from the global RNG)."""

    def __init__(self, config: NeRVConfig, generator: torch.Generator | None = None):
        super().__init__()
        config.validate()
        self.config = config
        if config.is_pe:
            self.pe = FramePositionalEncoding(*parse_pe_spec(config.embed))
        else:
            self.register_buffer("embeddings", torch.zeros(config.num_frames, *config.embed_shape))
        self.stem = nn.Conv2d(config.stem_in, config.stem_out, 1)
        prev = config.fc_dim
        blocks = []
        for w, s, k in zip(config.widths, config.strides, config.kernel_sizes):
            blocks.append(NeRVBlock(prev, w, s, k))
            prev = w
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Conv2d(prev, 3, config.head_ks, padding=config.head_ks // 2)
        self.act = _act(config.act)
        if generator is not None:  # every weight from the generator, none from the global RNG
            default_init_(self, generator)

    @property
    def layer_names(self) -> list[str]:
        """Canvas layers in paper naming: block1..N and head."""
        return [f"block{i + 1}" for i in range(len(self.blocks))] + ["head"]

    def time_code(self, frames: torch.Tensor | list[int] | int) -> torch.Tensor:
        """t = k / T as float64 (the original collated python floats into float64)."""
        idx = torch.as_tensor(frames, dtype=torch.float64).reshape(-1)
        return idx / self.config.num_frames

    def embed(self, frames: torch.Tensor | list[int] | int) -> torch.Tensor:
        """The decoder's input for frame indices: PE of t = k/T, or the stored embedding."""
        device = self.stem.weight.device
        if self.config.is_pe:
            return self.pe(self.time_code(frames).to(device))
        idx = torch.as_tensor(frames, dtype=torch.long, device=self.embeddings.device).reshape(-1)
        if (idx < 0).any() or (idx >= self.config.num_frames).any():
            raise IndexError(f"frame index outside 0..{self.config.num_frames - 1}")
        return self.embeddings[idx]

    def _stem(self, emb: torch.Tensor) -> torch.Tensor:
        x = self.act(self.stem(emb))
        if self.config.is_pe:
            fh, fw = self.config.fc_hw
            n, _, h, w = x.shape  # (n, fc_dim*fh*fw, 1, 1) -> channel c*fh*fw + y*fw + x
            x = x.view(n, -1, fh, fw, h, w).permute(0, 1, 4, 2, 5, 3).reshape(n, -1, fh * h, fw * w)
        return x

    def output_act(self, z: torch.Tensor) -> torch.Tensor:
        return 0.5 * torch.tanh(z) + 0.5 if self.config.out_act == "tanh" else z

    def output_activation(self, z: torch.Tensor) -> torch.Tensor:
        """The output activation (canvas protocol): RGB logits -> frame."""
        return self.output_act(z)

    def decode(self, emb: torch.Tensor) -> torch.Tensor:
        """Embedding (B, C, h, w) -> frames (B, 3, H, W)."""
        x = self._stem(emb)
        for blk in self.blocks:
            x = self.act(F.pixel_shuffle(blk.conv(x), blk.stride))
        return self.output_act(self.head(x))

    def forward(self, frames: torch.Tensor | list[int] | int) -> torch.Tensor:
        return self.decode(self.embed(frames))

    def trace_embedding(self, emb: torch.Tensor) -> Trace:
        """Trace the decoder on an explicit embedding (e.g. from an HNeRV encoder)."""
        tr = Trace()
        tr.inputs["stem"] = emb
        x = self._stem(emb)
        for i, blk in enumerate(self.blocks):
            name = f"block{i + 1}"
            tr.inputs[name] = x
            z = blk.conv(x)
            tr.pre[name] = z
            zs = F.pixel_shuffle(z, blk.stride)
            tr.post[name] = zs
            x = self.act(zs)
        tr.inputs["head"] = x
        z = self.head(x)
        tr.pre["head"] = z
        tr.output = self.output_act(z)
        return tr

    def trace(self, frames: torch.Tensor | list[int] | int) -> Trace:
        return self.trace_embedding(self.embed(frames))
