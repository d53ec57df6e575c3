"""`VideoDirConfig` and `write_videos(cfg)`: the settings and entry point of `xinc video` (tyro parses the config)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import tyro

from xinc.config import REPEATABLE, command_line
from xinc.errors import XincError
from xinc.utils import parse_hw
from xinc.video.videos import VideoConfig, write_video_dir


@dataclass
class VideoDirConfig:
    """Write the contribution videos of a video model into DIR: neurons.mp4 (the source beside seeded sampled
    neurons' signed maps of the head and the last block, one colour scale per neuron fixed over all frames),
    flow.mp4 (source | optical flow | fluctuation M_t of each layer) and optionally grid_<layer>.mp4 (a layer's
    strongest neurons); a PNG still of each, videos.json (what was drawn, timings) and config.json. H.264 MP4
    (yuv420p) through PyAV; --extra-formats webp/gif for slides. Maps stream frame by frame through the canvas
    engine, so the 640x1280 HNeRV bunny works in a few GB."""

    model_dir: tyro.conf.Positional[Path]
    """model directory from `xinc train nerv` or `xinc import`"""
    out: Path
    """output folder (written atomically; an existing one is replaced only with --overwrite and if xinc wrote it)"""
    data: str | None = None
    """source frames (image folder or video file); default the data recorded with the model, else its output"""
    crop: str | None = None
    """HxW centre crop of --data frames before resizing to the model size"""
    layers: str | None = None
    """comma-separated layers of the neurons video (default: the last block and the head)"""
    neurons: int = 6
    """neurons sampled per layer (the shared seeded sampler: the explorer and report pick the same)"""
    neuron_index: Annotated[tuple[str, ...], REPEATABLE] = ()
    """neurons given by index instead of sampled, as LAYER=K,K,... per layer, e.g. head=0,5,9 block3=7,8"""
    seed: int = 0
    """seed of the neuron sampling"""
    frames: str | None = None
    """model frames, e.g. 0-29 or 0,11,22 (default all)"""
    mode: Literal["paper", "linear"] = "paper"
    """canvas rule: paper (the paper's rules) or linear (exact linearised propagation)"""
    fps: float = 10.0
    """frames per second of the videos"""
    panel_width: int | None = None
    """width in pixels of each panel (default: the model width up to 320; small models enlarged to 192)"""
    fluctuation: bool = True
    """also write flow.mp4 (source | flow | M_t); M_t streams every neuron of a layer twice per frame pair"""
    fluctuation_layers: str | None = None
    """comma-separated layers of the M_t panels (default: the last block and the head)"""
    grid_layer: str | None = None
    """also write grid_<layer>.mp4 of this layer's strongest neurons (by sum |C| in the first frame)"""
    grid_top: int = 16
    """neurons in the grid video"""
    extra_formats: Annotated[tuple[Literal["webp", "gif"], ...], REPEATABLE] = ()
    """also write each video as animated WebP and/or GIF (slides)"""
    cache_mb: float = 512.0
    """keep the first pass's panel-size maps within this budget instead of recomputing them"""
    device: str = "auto"
    """auto, cpu or cuda[:i]"""
    overwrite: bool = False
    """replace an existing DIR written by xinc"""
    progress: bool = True
    """tqdm progress bars (frames done) on stderr"""

    def drawing(self) -> VideoConfig:
        """What `make_videos` draws (`xinc.video.VideoConfig`) for this config."""
        return VideoConfig(layers=_list(self.layers), neurons=self.neurons, indices=parse_indices(self.neuron_index),
                           seed=self.seed, frames=None, mode=self.mode, fps=self.fps, panel_width=self.panel_width,
                           fluctuation=self.fluctuation, fluctuation_layers=_list(self.fluctuation_layers),
                           grid_layer=self.grid_layer, grid_top=self.grid_top, extra_formats=list(self.extra_formats),
                           cache_mb=self.cache_mb, progress=self.progress)


def write_videos(cfg: VideoDirConfig, *, command: str | None = None) -> dict[str, Any]:
    """Write the videos `cfg` describes into cfg.out (atomically); returns what videos.json holds."""
    return write_video_dir(cfg.model_dir, cfg.out, cfg.drawing(), frames=cfg.frames, data=cfg.data,
                           crop=parse_hw(cfg.crop, "--crop") if cfg.crop else None, device=cfg.device,
                           overwrite=cfg.overwrite,
                           command=command or command_line("xinc video", cfg, positional=("model_dir",)))


def _list(text: str | None) -> list[str] | None:
    return [s.strip() for s in text.split(",") if s.strip()] if text else None


def parse_indices(items: tuple[str, ...]) -> dict[str, list[int]]:
    """('head=0,5', 'block3=7') -> {'head': [0, 5], 'block3': [7]}."""
    out: dict[str, list[int]] = {}
    for item in items:
        layer, _, ks = item.partition("=")
        try:
            out[layer.strip()] = [int(k) for k in ks.split(",") if k.strip()]
        except ValueError:
            raise XincError(f"--neuron-index {item!r}: expected LAYER=K,K,... with integers, e.g. head=0,5") from None
        if not layer.strip() or not out[layer.strip()]:
            raise XincError(f"--neuron-index {item!r}: expected LAYER=K,K,..., e.g. head=0,5,9")
    return out


