"""Configs of `xinc import xinc-ffn|nerv|hnerv-quant` and `import_model(cfg)`, the library call they make."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import tyro

from xinc.models.importers.hnerv_quant import import_hnerv_quant_checkpoint
from xinc.models.importers.nerv_script import import_nerv_checkpoint
from xinc.models.importers.original import ARCH_FIELDS, DATA_FIELDS
from xinc.models.importers.xinc_ffn import import_xinc_ffn_checkpoint


@dataclass
class XincFFNImportConfig:
    """Import the FFN released with the original XINC code (PyTorch Lightning .ckpt; OmegaConf not needed).

    The pickle is read by a restricted unpickler: only allow-listed globals, OmegaConf classes as inert
    stand-ins, tensors loaded on the CPU. Example: xinc import xinc-ffn best_model.ckpt --out models/ffn_0005
    """

    ckpt: tyro.conf.Positional[Path]
    """the Lightning checkpoint (best_model.ckpt)"""
    out: Path
    """model directory to write (model.safetensors + config.json)"""
    overwrite: bool = False
    """replace OUT when it is an earlier xinc output (a folder xinc did not write is never replaced)"""


@dataclass
class NeRVImportConfig:
    """Import a checkpoint of the original NeRV/HNeRV training script ({'epoch', 'state_dict', 'optimizer'}).

    Architecture flags use the original script's names and vocabulary (e.g. --embed pe_1.25_80 --fc_hw 8_16
    --dec_strds 4 2 2 --ks 0_3_3 --reduce 1.2 --lower_width 6); they override --config JSON
    ('architecture_args'), and anything given by neither is inferred from the weight shapes.
    Example: xinc import nerv ckpt.pth --config cfg.json --frames 30 --crop_list 320_640 --gt frames/ --out m
    """

    ckpt: tyro.conf.Positional[Path]
    """the original checkpoint (.pth)"""
    out: Path
    """model directory to write"""
    overwrite: bool = False
    """replace OUT when it is an earlier xinc output (a folder xinc did not write is never replaced)"""
    frames: int | None = None
    """T, the number of frames the model was trained on (frame k <-> t = k/T); default: the JSON's frames.count"""
    config: Path | None = None
    """JSON with the original arguments under 'architecture_args'"""
    gt: Path | None = None
    """ground-truth frames (folder of 0001.png ... or a video) to measure PSNR at import"""
    embed: str | None = None
    """positional encoding pe_<base>_<levels> (levels also follow from the weights)"""
    ks: str | None = None
    """kernel sizes <fc>_<first>_<max>: block i uses min(first + 2i, max)"""
    num_blks: str | None = None
    """<enc>_<dec> blocks per stage (only the decoder count is used)"""
    enc_strds: list[int] | None = None
    """encoder strides (recorded only; a NeRV has no encoder)"""
    enc_dim: str | None = None
    """encoder dims (recorded only)"""
    dec_strds: list[int] | None = None
    """decoder strides, e.g. --dec_strds 4 2 2"""
    fc_dim: int | None = None
    """channels of the stem output at the base grid"""
    fc_hw: str | None = None
    """base grid H_W, e.g. 8_16"""
    norm: str | None = None
    """normalisation (only 'none' is supported)"""
    act: str | None = None
    """activation (gelu, relu, silu)"""
    reduce: float | None = None
    """width reduction per stage (-1 = sqrt(stride))"""
    lower_width: int | None = None
    """minimum width"""
    conv_type: list[str] | None = None
    """encoder/decoder conv types, e.g. --conv_type convnext pshuffel"""
    modelsize: float | None = None
    """parameter budget in millions (recorded; fc_dim comes from the weights)"""
    out_bias: str | None = None
    """output: 'tanh' (0.5*tanh+0.5) or 0 (raw)"""
    saturate_stages: int | None = None
    """recorded only"""
    crop_list: str | None = None
    """ground-truth centre crop H_W before resizing, e.g. 320_640"""
    resize_list: str | None = None
    """ground-truth resize H_W (= the output size), e.g. 128_256"""
    data_path: str | None = None
    """the training frames (recorded for `xinc reconstruct --gt`)"""


@dataclass
class HNeRVQuantImportConfig:
    """Import HNeRV's quantised video checkpoint ({'embed', 'model'} of quant/min/scale): dequantise, infer the decoder.

    The per-frame embeddings are kept, so frame k decodes from embedding k. Example:
    xinc import hnerv-quant hnerv_bunny_1.5M_quant_vid.pth --gt bunny_720p_every11 --out models/hnerv_bunny
    """

    ckpt: tyro.conf.Positional[Path]
    """the quantised checkpoint (.pth)"""
    out: Path
    """model directory to write"""
    overwrite: bool = False
    """replace OUT when it is an earlier xinc output (a folder xinc did not write is never replaced)"""
    frames: int | None = None
    """number of frames (checked against the stored embeddings)"""
    gt: Path | None = None
    """ground-truth frames (numbered PNGs, matched by number: frame k <-> k+1) to measure PSNR at import"""
    crop_list: str | None = None
    """ground-truth centre crop H_W (default 640_1280: 1280x720 rows 40..679)"""
    act: str | None = None
    """activation (default gelu)"""
    out_bias: str | None = None
    """output: 'tanh' (default) or 0"""
    data_path: str | None = None
    """the training frames (recorded)"""


ImportConfig = XincFFNImportConfig | NeRVImportConfig | HNeRVQuantImportConfig


def _check(o: ImportConfig, inputs: list) -> None:
    """Before reading anything: the checkpoint exists, --frames is positive, --out may be written."""
    from xinc.validate import optional, path_in, path_out, positive_int

    path_in(o.ckpt, "CKPT", kind="file")
    optional(positive_int, getattr(o, "frames", None), "--frames")
    path_out(o.out, inputs=inputs, overwrite=o.overwrite)


def import_model(o: ImportConfig) -> dict:
    """Convert the checkpoint `o` names into an xinc model directory o.out; returns the import record."""
    if isinstance(o, XincFFNImportConfig):
        _check(o, [o.ckpt])
        return import_xinc_ffn_checkpoint(o.ckpt, o.out, overwrite=o.overwrite)
    flags = {f.name: getattr(o, f.name) for f in dataclasses.fields(o) if f.name in ARCH_FIELDS + DATA_FIELDS}
    if isinstance(o, NeRVImportConfig):
        _check(o, [o.ckpt, o.config, o.gt])
        return import_nerv_checkpoint(o.ckpt, o.out, flags, o.config, o.frames, o.gt, overwrite=o.overwrite)
    _check(o, [o.ckpt, o.gt])
    return import_hnerv_quant_checkpoint(o.ckpt, o.out, flags, o.frames, o.gt, overwrite=o.overwrite)
