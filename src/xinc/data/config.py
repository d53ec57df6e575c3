"""Configs and entry points of `xinc synth` (`SynthDatasetConfig`, `write_synthetic`) and `xinc flow`
(`FlowConfig`, `write_flow`): tyro parses these dataclasses directly."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import tyro

from xinc.config import as_json, command_line
from xinc.data import synth
from xinc.data.synth import FORMATS, SynthConfig, check_config
from xinc.errors import XincError
from xinc.fields import OptionalHW
from xinc.outputs import owned_output
from xinc.utils import parse_hw, write_json
from xinc.validate import hw, path_out

SynthFormat = Literal[FORMATS]  # registered datasets whose layout the generator writes


@dataclass
class SynthDatasetConfig:
    """Generate a synthetic panoptic street video (moving, occluding, textured things; exact flow) in the
    on-disk layout of Cityscapes-VPS or VIPSeg, readable by `xinc train nerv --dataset ... --root OUT`."""

    out: Path
    """output dataset folder (replaced atomically)"""
    format: SynthFormat = "cityscapes-vps"
    """dataset layout to write"""
    seed: int = 0
    """random seed: same seed, same bytes"""
    frames: int = 30
    """frames per video (Cityscapes-VPS: 5..30; frames 5, 10, ... are annotated)"""
    size: OptionalHW = None
    """HxW of the generated frames, e.g. 256x512 (default: native, 1024x2048 or 720x1280)"""
    videos: int = 1
    """number of videos"""
    pan: float = 0.0
    """camera pan in pixels per frame at the generated size (+ = camera moves right)"""
    things: int | None = None
    """number of moving things (default 6)"""
    flo: bool = True
    """also write Middlebury .flo files of the exact flow (beside flow_gt/<video>/flow.npy)"""
    void: bool = True
    """draw a static void region (the ego vehicle's bonnet)"""
    overwrite: bool = False
    """replace OUT when it is an earlier xinc output (a folder xinc did not write is never replaced)"""

    def __post_init__(self) -> None:
        """The generator's settings, checked when the config is made."""
        check_config(self.generator())

    def generator(self) -> SynthConfig:
        """The generator settings (`xinc.data.synth.SynthConfig`) of this config."""
        size = hw(self.size, "--size")
        return SynthConfig(self.format, self.seed, self.frames, size, self.videos, self.pan, self.things, self.flo,
                           self.void)


def write_synthetic(cfg: SynthDatasetConfig) -> dict:
    """Generate the dataset `cfg` describes into cfg.out (atomically); returns its resolved config."""
    path_out(cfg.out, overwrite=cfg.overwrite)
    g = cfg.generator()
    return synth.generate_synthetic(cfg.out, g.format, g.seed, g.frames, g.size, g.videos, g.pan, g.things, g.flo,
                                    g.void, overwrite=cfg.overwrite)


@dataclass
class FlowConfig:
    """Optical flow between consecutive frames (float (u, v) in pixels, frame i -> i+1) of a folder of frames,
    a video file or a dataset clip; writes flow.npy, colour-wheel PNGs and config.json."""

    src: tyro.conf.Positional[str]
    """a frame folder, a video file, or DATASET:ROOT:VIDEO (e.g. cityscapes-vps:data/cityscapes_vps:0005)"""
    out: Path
    """output folder (replaced atomically)"""
    method: Literal["dis", "farneback"] = "dis"
    """estimator: OpenCV DIS or Farneback"""
    preset: Literal["ultrafast", "fast", "medium"] = "medium"
    """DIS preset"""
    size: str | None = "128x256"
    """HxW the frames are resized to before estimating (empty or 'native' keeps the size)"""
    crop: str | None = None
    """HxW centre crop before resizing (default: the largest crop with the aspect of --size)"""
    frames: str | None = None
    """frame indices, e.g. 0-9 or 0,5,10 (default all)"""
    cache: Path | None = None
    """optional cache folder keyed by estimator + parameters + frames"""
    pictures: bool = True
    """write one colour-wheel PNG per frame pair"""
    overwrite: bool = False
    """replace OUT when it is an earlier xinc output (a folder xinc did not write is never replaced)"""


def _parse_src(src: str, size, crop):
    """Load frames from a path or DATASET:ROOT:VIDEO; return (frames, description)."""
    from xinc.data.datasets import dataset_names
    from xinc.data.panoptic import load_panoptic_clip, load_video_clip

    head, _, rest = src.partition(":")
    if head in dataset_names() and rest:
        root, _, video = rest.rpartition(":")
        if not root or not video:
            raise XincError(f"{src!r}: expected DATASET:ROOT:VIDEO, e.g. cityscapes-vps:data/cityscapes_vps:0005")
        clip = load_panoptic_clip(head, root, video, size=size, crop=crop)
    else:
        clip = load_video_clip(src, size=size, crop=crop)
    return clip


def _src_path(src: str) -> str:
    """The folder or file a flow source reads (DATASET:ROOT:VIDEO -> ROOT)."""
    from xinc.data.datasets import dataset_names

    head, _, rest = src.partition(":")
    return rest.rpartition(":")[0] or rest if head in dataset_names() and rest else src


def write_flow(o: FlowConfig, *, command: str | None = None) -> dict:
    """Estimate the flow `o` describes into o.out (flow.npy, pictures/, config.json); returns the config written."""
    from PIL import Image

    from xinc.data.flow import compute_flow, flow_to_color
    from xinc.utils import parse_index_list

    size = parse_hw(o.size, "--size") if o.size and o.size.lower() != "native" else None
    crop = parse_hw(o.crop, "--crop") if o.crop else None
    inputs = [_src_path(o.src), o.cache]
    path_out(o.out, inputs=inputs, overwrite=o.overwrite)
    clip = _parse_src(o.src, size, crop)
    idx = parse_index_list(o.frames, clip.num_frames)
    frames = clip.frames[idx]
    ff = compute_flow(frames, o.method, preset=o.preset, cache_dir=o.cache)
    mag = ff.magnitude
    with owned_output(o.out, inputs=inputs, overwrite=o.overwrite, kind="flow") as stage:
        np.save(stage / "flow.npy", ff.flow)
        if o.pictures:
            scale = float(np.percentile(mag, 99)) if mag.size else 1.0
            pics = stage / "pictures"
            pics.mkdir()
            for i in range(ff.flow.shape[0]):
                Image.fromarray(flow_to_color(ff.flow[i], scale)).save(pics / f"{idx[i]:04d}_{idx[i + 1]:04d}.png")
        files = clip.files[:3] + (["..."] if len(clip.files) > 3 else [])
        convention = "flow[i] maps frame idx[i] to idx[i+1]: I_i(p) ~ I_{i+1}(p + flow[i](p)), (u, v) in pixels"
        pictures = "pictures/<i>_<i+1>.png: Middlebury colour wheel, saturation = |flow| / p99"
        config = {
            "command": command or command_line("xinc flow", o, positional=("src",)),
            "config": as_json(o),
            "src": o.src,
            "source": clip.summary() | {"files": files},
            "frames": idx,
            "size": list(frames.shape[-2:]),
            "crop": clip.crop,
            "flow": {"file": "flow.npy", "shape": list(ff.flow.shape), "dtype": "float32", "convention": convention},
            "method": ff.method,
            "params": ff.params,
            "magnitude": {"mean": float(mag.mean()), "p99": float(np.percentile(mag, 99)), "max": float(mag.max())},
            "pictures": pictures if o.pictures else None,
        }
        write_json(stage / "config.json", config)
    return config
