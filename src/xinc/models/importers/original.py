"""The original NeRV/HNeRV decoder (HNeRV code base, model_all.py) -> xinc NeRV: vocabulary, inference, key map.

Original keys: decoder.0.conv.downconv (1x1 stem), decoder.{i}.conv.upconv.0 (k x k conv of the
i-th PixelShuffle block, i >= 1), head_layer (k x k conv to RGB). Ours: stem, blocks.{i-1}.conv, head.
Each architecture field is taken from the flags, else the JSON (`architecture_args`), else the
weights; `sources` records which, and a disagreement names the first original tensor that differs.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import torch

from xinc.errors import XincError
from xinc.models.importers.common import compare_shapes
from xinc.models.nerv import NeRVConfig

STEM = "decoder.0.conv.downconv"
HEAD = "head_layer"
_BLOCK = re.compile(r"^decoder\.(\d+)\.conv\.upconv\.0\.weight$")

# the original script's architecture arguments (argparse names of train_nerv_all.py)
ARCH_FIELDS = ("embed", "ks", "num_blks", "enc_strds", "enc_dim", "dec_strds", "fc_dim", "fc_hw", "norm", "act",
               "reduce", "lower_width", "conv_type", "modelsize", "out_bias", "saturate_stages")
DATA_FIELDS = ("crop_list", "resize_list", "data_path")


def block_key(i: int) -> str:
    """Original name of the conv of decoder block i (1-based, decoder.0 is the stem)."""
    return f"decoder.{i}.conv.upconv.0"


@dataclass
class Resolved:
    """The xinc config plus where each field came from and the original tensor shapes it implies."""

    config: NeRVConfig
    sources: dict[str, str] = field(default_factory=dict)
    args: dict[str, Any] = field(default_factory=dict)  # the resolved original-vocabulary values
    data: dict[str, Any] = field(default_factory=dict)  # crop/size/data_path for ground truth


def decoder_shapes(state: dict[str, torch.Tensor], source: str) -> tuple[tuple, list[tuple], tuple]:
    """Shapes of stem, block convs (in order) and head weights; errors name the odd tensor."""
    for name in (f"{STEM}.weight", f"{HEAD}.weight"):
        if name not in state:
            enc = sorted(k for k in state if k.startswith("encoder."))
            hint = (" (this HNeRV keeps a ConvNeXt encoder; its frame embeddings are not stored — use the quantised "
                    "video checkpoint with `xinc import hnerv-quant`)") if enc else ""
            raise XincError(f"{source}: tensor {name!r} is missing; not an original NeRV/HNeRV state_dict{hint}")
    idx = sorted(int(m.group(1)) for k in state if (m := _BLOCK.match(k)))
    if not idx or idx != list(range(1, len(idx) + 1)):
        raise XincError(f"{source}: decoder blocks decoder.<i>.conv.upconv.0 must be numbered 1..N (found {idx}); "
                        f"only PixelShuffle ('pshuffel') blocks are supported")
    stem = tuple(state[f"{STEM}.weight"].shape)
    blocks = [tuple(state[f"{block_key(i)}.weight"].shape) for i in idx]
    head = tuple(state[f"{HEAD}.weight"].shape)
    for name, shp in [(f"{STEM}.weight", stem), *[(f"{block_key(i)}.weight", b) for i, b in zip(idx, blocks)],
                      (f"{HEAD}.weight", head)]:
        if len(shp) != 4 or shp[2] != shp[3]:
            raise XincError(f"{source}: tensor {name!r} has shape {shp}; expected a square conv kernel (O, I, k, k)")
    known = {f"{STEM}.weight", f"{STEM}.bias", f"{HEAD}.weight", f"{HEAD}.bias"}
    known |= {f"{block_key(i)}.{p}" for i in idx for p in ("weight", "bias")}
    extra = sorted(set(state) - known)
    if extra:
        raise XincError(f"{source}: tensor {extra[0]!r} is not part of a NeRV decoder with PixelShuffle blocks and "
                        f"norm 'none'; this variant is not supported")
    return stem, blocks, head


def infer_from_weights(stem: tuple, blocks: list[tuple], head: tuple, source: str) -> dict[str, Any]:
    """Widths, strides and kernel sizes readable from the conv shapes (conv out = width * stride^2)."""
    ins = [b[1] for b in blocks] + [head[1]]
    widths, strides = [], []
    for i, b in enumerate(blocks):
        w = ins[i + 1]
        s = math.isqrt(b[0] // w) if b[0] % w == 0 else 0
        if s < 1 or s * s * w != b[0]:
            raise XincError(f"{source}: tensor '{block_key(i + 1)}.weight' has {b[0]} output channels, not "
                            f"width x stride^2 for the next layer's width {w}; not a PixelShuffle decoder")
        widths.append(w)
        strides.append(s)
    return {"fc_dim": blocks[0][1], "widths": widths, "strides": strides, "kernel_sizes": [b[2] for b in blocks],
            "head_ks": head[2], "stem_in": stem[1], "stem_out": stem[0], "stem_ks": stem[2]}


def _split_ints(v: Any, what: str) -> list[int]:
    if isinstance(v, list | tuple):
        return [int(x) for x in v]
    try:
        return [int(x) for x in str(v).replace(",", "_").replace("x", "_").split("_") if x != ""]
    except ValueError:
        raise XincError(f"--{what} {v!r}: expected integers joined by '_', e.g. 8_16") from None


def _width_rule(fc_dim: int, strides: list[int], dec_blks: int, reduce: float, lower_width: int) -> list[int]:
    """Original rule: per stage new = int(max(round(prev / r), lower_width)), r = reduce or sqrt(stride) if -1."""
    widths, prev = [], fc_dim
    for s in strides:
        r = math.sqrt(s) if reduce == -1 else reduce
        new = int(max(round(prev / r), lower_width))
        widths += [new] * dec_blks
        prev = new
    return widths


# complexity accepted: flags > JSON > weights, one branch per original flag
def resolve(state: dict[str, torch.Tensor], flags: dict[str, Any], json_args: dict[str, Any], source: str, *,  # noqa: C901
            num_frames: int | None, table_shape: tuple[int, int, int] | None = None) -> Resolved:
    """Combine flags > JSON > weights into a NeRVConfig; check the original tensors against it."""
    stem, blocks, head = decoder_shapes(state, source)
    inf = infer_from_weights(stem, blocks, head, source)
    sources: dict[str, str] = {}
    args: dict[str, Any] = {}

    def pick(name: str) -> tuple[Any, str | None]:
        if flags.get(name) not in (None, [], ""):
            return flags[name], "flag"
        if json_args.get(name) not in (None, [], ""):
            return json_args[name], "json"
        return None, None

    def take(name: str, default_from_weights: Any, what: str = "weights") -> Any:
        v, src = pick(name)
        if src is None:
            args[name], sources[name] = default_from_weights, what
            return default_from_weights
        args[name], sources[name] = v, src
        return v

    # unsupported variants first: a clear message beats a shape mismatch
    norm, src = pick("norm")
    if src and str(norm) != "none":
        raise XincError(f"{source}: --norm {norm}: only norm 'none' is supported (the paper's NeRV and HNeRV)")
    conv_type, src = pick("conv_type")
    if src:
        ct = conv_type if isinstance(conv_type, list) else str(conv_type).split()
        if len(ct) < 2 or ct[-1] != "pshuffel":
            raise XincError(f"{source}: --conv_type {ct}: only PixelShuffle decoder blocks ('pshuffel') are supported")
    act = str(take("act", "gelu", "default (gelu)"))
    act = {"swish": "silu"}.get(act, act)
    if act not in ("gelu", "relu", "silu"):
        raise XincError(f"{source}: --act {act}: only gelu, relu and swish/silu decoders are supported")
    out_bias = str(take("out_bias", "tanh", "default (tanh)"))
    out_act = {"tanh": "tanh", "0": "none", "0.0": "none", "none": "none"}.get(out_bias)
    if out_act is None:
        raise XincError(f"{source}: --out_bias {out_bias}: only 'tanh' (0.5*tanh+0.5) or 0 (raw output) is supported")

    num_blks = str(take("num_blks", "1_1", "default (1_1)"))
    dec_blks = _split_ints(num_blks, "num_blks")[-1]
    if dec_blks < 1:
        raise XincError(f"--num_blks {num_blks}: needs at least one decoder block per stage")

    # strides: stage strides from flags/JSON expanded to blocks, else per-block from the weights
    st, src = pick("dec_strds")
    if src:
        stage_strides = _split_ints(st, "dec_strds")
        strides = [s if j == 0 else 1 for s in stage_strides for j in range(dec_blks)]
        args["dec_strds"], sources["dec_strds"] = stage_strides, src
    else:
        strides = inf["strides"]
        if dec_blks != 1:
            stage_strides = [s for s in strides if s != 1]
        else:
            stage_strides = strides
        args["dec_strds"], sources["dec_strds"] = stage_strides, "weights (conv out = width x stride^2)"
    if len(strides) != len(blocks):
        raise XincError(
            f"{source}: the architecture has {len(strides)} decoder blocks (dec_strds {args['dec_strds']}, "
            f"num_blks {num_blks}) but the checkpoint has {len(blocks)} (decoder.1..{len(blocks)}); "
            f"first disagreeing tensor: '{block_key(min(len(strides), len(blocks)) + 1)}.weight'"
        )
    stage_of = [i for i in range(len(stage_strides)) for _ in range(dec_blks)]

    ks, src = pick("ks")
    if src:
        parts = _split_ints(ks, "ks")
        if len(parts) != 3:
            raise XincError(f"--ks {ks}: expected <fc>_<first>_<max>, e.g. 0_3_3")
        kernel_sizes = [min(parts[1] + 2 * stage_of[i], parts[2]) for i in range(len(blocks))]
        args["ks"], sources["ks"] = ks, src
    else:
        kernel_sizes = inf["kernel_sizes"]
        k0, k1 = kernel_sizes[0], max(kernel_sizes)
        args["ks"], sources["ks"] = f"0_{k0}_{k1}", "weights (kernel sizes per block)"

    fc_dim = int(take("fc_dim", inf["fc_dim"], "weights (in channels of decoder.1)"))
    red, src_r = pick("reduce")
    low, src_l = pick("lower_width")
    if src_r and src_l:
        widths = _width_rule(fc_dim, stage_strides, dec_blks, float(red), int(low))
        args["reduce"], args["lower_width"] = float(red), int(low)
        sources["reduce"], sources["lower_width"] = src_r, src_l
        sources["widths"] = "width rule from reduce/lower_width"
    else:
        widths = inf["widths"]
        sources["widths"] = "weights (in channels of the next layer)"
        for name, v, s in (("reduce", red, src_r), ("lower_width", low, src_l)):
            if s:
                args[name], sources[name] = v, f"{s} (unused: widths need both reduce and lower_width)"

    # embedding: table (HNeRV, stored per-frame embeddings) or positional encoding of t = k/T
    if table_shape is not None:
        embed = "table"
        args["embed"], sources["embed"] = "table", "stored embeddings"
        fc_hw = [int(table_shape[1]), int(table_shape[2])]
        sources["fc_hw"] = "embedding grid"
    else:
        e, src = pick("embed")
        if src:
            embed = str(e)
            if not embed.startswith("pe_"):
                raise XincError(f"{source}: --embed {embed!r}: a NeRV import needs a positional encoding pe_<b>_<l> "
                                f"(HNeRV's encoder embeddings are not stored in a script checkpoint)")
            args["embed"], sources["embed"] = embed, src
        else:
            levels = inf["stem_in"] // 2
            embed = f"pe_1.25_{levels}"
            args["embed"] = embed
            sources["embed"] = f"weights (levels = {inf['stem_in']}/2) + default base 1.25"
        fc_hw = None
        fh, src = pick("fc_hw")
        if src:
            fc_hw = _split_ints(fh, "fc_hw")
            args["fc_hw"], sources["fc_hw"] = "_".join(map(str, fc_hw)), src

    total = math.prod(strides)
    rs, src_rs = pick("resize_list")
    size = _split_ints(rs, "resize_list") if src_rs else None
    if size is not None and (len(size) != 2 or size[0] <= 0 or size[1] <= 0):
        raise XincError(f"--resize_list {rs}: expected H_W, e.g. 128_256")
    if fc_hw is None:
        if size is not None:
            if size[0] % total or size[1] % total:
                raise XincError(f"--resize_list {rs}: not divisible by the product of strides {total}")
            fc_hw = [size[0] // total, size[1] // total]
            args["fc_hw"], sources["fc_hw"] = "_".join(map(str, fc_hw)), f"{src_rs} resize_list / prod(strides)"
        else:
            raise XincError(f"{source}: the base grid is unknown: the stem gives fc_h*fc_w = "
                            f"{inf['stem_out'] // max(fc_dim, 1)} but not its shape; give --fc_hw H_W (e.g. 8_16) "
                            f"or --resize_list H_W (the output size)")
    if len(fc_hw) != 2:
        raise XincError(f"--fc_hw {fc_hw}: expected H_W, e.g. 8_16")
    height, width = fc_hw[0] * total, fc_hw[1] * total
    if size is not None and [height, width] != size:
        raise XincError(f"{source}: resize_list {size[0]}x{size[1]} disagrees with fc_hw {fc_hw[0]}_{fc_hw[1]} x "
                        f"prod(dec_strds) {total} = {height}x{width}")
    sources["height/width"] = "fc_hw x prod(strides)"

    for name in ("modelsize", "enc_strds", "enc_dim", "saturate_stages", "norm", "conv_type"):
        v, src = pick(name)
        if src:
            args[name], sources[name] = v, f"{src} (recorded)"

    if num_frames is None:
        raise XincError(f"{source}: the number of training frames is unknown; give --frames T (frame k <-> t = k/T)")
    head_ks = inf["head_ks"]
    cfg = NeRVConfig(
        kind="hnerv" if embed == "table" else "nerv", height=height, width=width, num_frames=int(num_frames),
        embed=embed, embed_shape=list(table_shape) if table_shape is not None else None, fc_hw=fc_hw, fc_dim=fc_dim,
        strides=strides, kernel_sizes=kernel_sizes, widths=widths, head_ks=head_ks, act=act, out_act=out_act,
    )
    sources.update(head_ks="weights", num_frames=sources.get("num_frames", "flag/json"))
    try:
        cfg.validate()
    except ValueError as e:
        raise XincError(f"{source}: invalid architecture ({e})") from None
    compare_shapes(expected_original_shapes(cfg), state, source, _describe(args))
    crop = pick("crop_list")
    data_path = pick("data_path")
    data = {
        "source": data_path[0],
        "crop": _split_ints(crop[0], "crop_list") if crop[1] else None,
        "size": [height, width],
    }
    return Resolved(cfg, sources, args, data)


def _describe(args: dict[str, Any]) -> str:
    keys = ("embed", "fc_hw", "fc_dim", "dec_strds", "ks", "reduce", "lower_width", "num_blks")
    parts = [f"--{k} {' '.join(map(str, v)) if isinstance(v, list) else v}"
             for k in keys if (v := args.get(k)) is not None]
    return "the architecture (" + " ".join(parts) + ")"


def expected_original_shapes(cfg: NeRVConfig) -> dict[str, tuple[int, ...]]:
    """Original tensor names -> shapes for a config (the order is the decoder's order)."""
    out = {f"{STEM}.weight": (cfg.stem_out, cfg.stem_in, 1, 1), f"{STEM}.bias": (cfg.stem_out,)}
    prev = cfg.fc_dim
    for i, (w, s, k) in enumerate(zip(cfg.widths, cfg.strides, cfg.kernel_sizes)):
        out[f"{block_key(i + 1)}.weight"] = (w * s * s, prev, k, k)
        out[f"{block_key(i + 1)}.bias"] = (w * s * s,)
        prev = w
    out[f"{HEAD}.weight"] = (3, prev, cfg.head_ks, cfg.head_ks)
    out[f"{HEAD}.bias"] = (3,)
    return out


def map_state(state: dict[str, torch.Tensor], num_blocks: int) -> dict[str, torch.Tensor]:
    """Rename original decoder tensors to xinc NeRV names (float32, contiguous)."""
    names = {f"{STEM}.{p}": f"stem.{p}" for p in ("weight", "bias")}
    names |= {f"{HEAD}.{p}": f"head.{p}" for p in ("weight", "bias")}
    for i in range(1, num_blocks + 1):
        names |= {f"{block_key(i)}.{p}": f"blocks.{i - 1}.conv.{p}" for p in ("weight", "bias")}
    return {ours: state[orig].detach().to(torch.float32).contiguous() for orig, ours in names.items()}


KEY_MAP = {
    f"{STEM}.*": "stem.*",
    "decoder.{i}.conv.upconv.0.*": "blocks.{i-1}.conv.*",
    f"{HEAD}.*": "head.*",
}
