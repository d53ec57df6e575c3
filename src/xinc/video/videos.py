"""The contribution videos of a video model (the project page's videos): sampled neurons' maps beside the
source, source beside flow and fluctuation, and a grid of a layer's strongest neurons."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from xinc.errors import XincError
from xinc.video import data as vd
from xinc.video.draw import POSITIVE_CMAP, SIGNED_CMAP, Panel, compose, image_rgb, signed_rgb, text_panel, wheel_legend
from xinc.video.encode import FORMATS, Writers


@dataclass
class VideoConfig:
    """What `make_videos` draws (every random choice seeded from `seed`)."""

    layers: list[str] | None = None  # layers of the neurons video; default the head and the last block
    neurons: int = 6  # sampled neurons per layer (shared seeded sampler)
    indices: dict[str, list[int]] = field(default_factory=dict)  # layer -> neurons given by index (no sampling)
    seed: int = 0
    frames: list[int] | None = None  # model frames (default all)
    mode: str = "paper"
    fps: float = 10.0
    panel_width: int | None = None  # pixels per panel (default min(model width, 320))
    fluctuation: bool = True  # the source | flow | M_t video
    fluctuation_layers: list[str] | None = None  # default the head and the last block
    grid_layer: str | None = None  # also a video of this layer's strongest neurons
    grid_top: int = 16
    extra_formats: list[str] = field(default_factory=list)  # "webp" and/or "gif" besides the mp4s
    cache_mb: float = 512.0  # keep the first pass's maps (panel size) when they fit, else recompute
    progress: bool = True

    def validate(self, model) -> None:
        """Check every field against the model before any work starts (XincError otherwise)."""
        names = list(model.layer_names)
        for what, ls in (("--layers", self.layers), ("--fluctuation-layers", self.fluctuation_layers),
                         ("--neuron-index", list(self.indices)), ("--grid-layer", [self.grid_layer] if
                                                                     self.grid_layer else [])):
            for name in ls or []:
                if name not in names:
                    raise XincError(f"{what}: {name!r} is not a canvas layer of this model; choose from "
                                    f"{', '.join(names)}")
        if self.neurons < 1 or self.grid_top < 1:
            raise XincError(f"--neurons {self.neurons} / --grid-top {self.grid_top}: must be at least 1")
        if not 0 < self.fps <= 120:
            raise XincError(f"--fps {self.fps}: must be in (0, 120]")
        if self.panel_width is not None and not 16 <= self.panel_width <= 4096:
            raise XincError(f"--panel-width {self.panel_width}: must be 16..4096 pixels")
        bad = [f for f in self.extra_formats if f not in FORMATS or f == "mp4"]
        if bad:
            raise XincError(f"--extra-formats: {bad[0]!r} is not one of webp, gif")
        if self.mode not in ("paper", "linear"):
            raise XincError(f"--mode {self.mode!r}: choose paper or linear")

    def default_layers(self, model) -> list[str]:
        """The head and the last block (the project page's two layers)."""
        names = list(model.layer_names)
        return names[-2:] if len(names) >= 2 else names


def panel_size(model, width: int | None) -> tuple[int, int]:
    """(h, w) of one panel: the model's aspect at `width` pixels (even sizes); by default the model's width up to
    320, small models enlarged (nearest) to 192 pixels so that titles and colour bars stay legible."""
    H, W = int(model.config.height), int(model.config.width)
    w = int(width or max(min(W, 320), min(192, 4 * W)))
    h = max(2, int(round(H * w / W)))
    return h + h % 2, w + w % 2


def neuron_title(info, k: int) -> str:
    """'head k=14 (c_in 4, c_out 2)' for conv layers, 'layer2 k=7' for MLP layers."""
    if info.c_out and info.neuron_index.startswith("k = c_in*"):
        return f"{info.name} k={k} (in {k // info.c_out}, out {k % info.c_out})"
    return f"{info.name} k={k}"


def _outputs(out: Path, stem: str, extra: Sequence[str]) -> list[Path]:
    return [out / f"{stem}.mp4"] + [out / f"{stem}.{fmt}" for fmt in extra]


def _bar(cfg: VideoConfig, total: int, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="frame", disable=not cfg.progress, file=sys.stderr, dynamic_ncols=True)


def _neuron_rows(sels, maps, src: np.ndarray, size, mode: str) -> list[list[Panel | None]]:
    rows = []
    for i, (s, m) in enumerate(zip(sels, maps)):
        first = Panel("source", src) if i == 0 else Panel(
            "legend", text_panel([f"{mode} rule, {s.info.rule}", "signed C; red +, blue -",
                                  "scale: +-max|C| per neuron", "over all frames"], size))
        row = [first]
        for j, k in enumerate(s.neurons):
            lim = float(s.scales[j]) or 1.0
            row.append(Panel(neuron_title(s.info, k), signed_rgb(m[j].numpy(), lim), (SIGNED_CMAP, -lim, lim)))
        rows.append(row)
    return rows


def neurons_video(model, sels: list[vd.LayerSelection], frames: list[int], source: torch.Tensor, out: Path,
                  stem: str, cfg: VideoConfig, size: tuple[int, int], title: str) -> dict[str, Any]:
    """Source beside each selection's neurons, one fixed colour scale per neuron (first pass = the scales)."""
    t0 = time.perf_counter()
    bar = _bar(cfg, 2 * len(frames), stem)
    try:
        vd.scale_pass(model, sels, frames, size, mode=cfg.mode, cache_mb=cfg.cache_mb, progress=bar.update)
        still = frames[len(frames) // 2]
        with Writers(_outputs(out, stem, cfg.extra_formats), cfg.fps) as w:
            for i, f in enumerate(frames):
                maps = vd.panel_maps(model, sels, f, size, mode=cfg.mode)
                src = image_rgb(vd.resize_maps(source[i], size).numpy())
                rgb = compose(_neuron_rows(sels, maps, src, size, cfg.mode), size,
                              f"{title} | contribution maps | frame {f} ({i + 1}/{len(frames)})")
                w.write(rgb)
                if f == still:
                    Image.fromarray(rgb).save(out / f"{stem}.png")
                bar.update(1)
    finally:
        bar.close()
    return {"files": [p.name for p in _outputs(out, stem, cfg.extra_formats)], "still": f"{stem}.png",
            "frames": frames, "seconds": round(time.perf_counter() - t0, 2),
            "layers": {s.layer: {"neurons": s.neurons, "how": s.how, "scale_max_abs": s.scales.tolist(),
                                 "rule": s.info.rule, "exact": bool(s.info.exact), "map_seconds": round(s.seconds, 2),
                                 "seconds_per_frame": round(s.seconds / max(1, len(frames)), 3)} for s in sels}}


def flow_video(model, layers: list[str], frames: list[int], source: torch.Tensor, out: Path, cfg: VideoConfig,
               size: tuple[int, int], title: str) -> dict[str, Any]:
    """Source | flow (colour wheel) over M_t of each layer, one scale per layer over all frame pairs."""
    if len(frames) < 2:
        raise XincError("the flow/fluctuation video needs at least two frames; give more --frames or "
                        "--fluctuation False")
    t0 = time.perf_counter()
    bar = _bar(cfg, len(layers) * (len(frames) - 1), "fluctuation")
    fluct, secs = {}, {}
    try:
        for layer in layers:
            t1 = time.perf_counter()
            fluct[layer] = vd.fluctuation(model, layer, frames, size, mode=cfg.mode, progress=bar.update)
            secs[layer] = round(time.perf_counter() - t1, 2)
    finally:
        bar.close()
    flow_rgb, flow_max, flow_desc = vd.flow_pictures(source, size)
    wheel = wheel_legend(max(16, size[0] // 4))
    vmax = {layer: float(m.max()) or 1.0 for layer, m in fluct.items()}
    still = (len(frames) - 1) // 2
    with Writers(_outputs(out, "flow", cfg.extra_formats), cfg.fps) as w:
        for i in range(len(frames) - 1):
            a, b = frames[i], frames[i + 1]
            fl = flow_rgb[i].copy()
            fl[:wheel.shape[0], -wheel.shape[1]:] = wheel
            row1 = [Panel(f"source frame {b}", image_rgb(vd.resize_maps(source[i + 1], size).numpy())),
                    Panel(f"flow {a}->{b} (max {flow_max:.2g} px)", fl)]
            row2 = [Panel(f"M_t {layer} (sum_k ||C_k^t|-|C_k^t-1||)",
                          _positive(fluct[layer][i], vmax[layer]), (POSITIVE_CMAP, 0.0, vmax[layer]))
                    for layer in layers]
            rgb = compose([row1, row2], size, f"{title} | flow and fluctuation | frames {a}->{b} "
                                              f"({i + 1}/{len(frames) - 1})")
            w.write(rgb)
            if i == still:
                Image.fromarray(rgb).save(out / "flow.png")
    return {"files": [p.name for p in _outputs(out, "flow", cfg.extra_formats)], "still": "flow.png",
            "pairs": [[a, b] for a, b in zip(frames[:-1], frames[1:])], "flow": flow_desc, "flow_max_px": flow_max,
            "fluctuation_max": vmax, "fluctuation_seconds": secs,
            "fluctuation_seconds_per_pair": {k: round(v / (len(frames) - 1), 3) for k, v in secs.items()},
            "seconds": round(time.perf_counter() - t0, 2)}


def _positive(m: np.ndarray, vmax: float) -> np.ndarray:
    from xinc.video.draw import colorize

    return colorize(m, 0.0, vmax, POSITIVE_CMAP)


def grid_rows(sel: vd.LayerSelection, maps: torch.Tensor, cols: int = 4) -> list[list[Panel | None]]:
    """The strongest neurons of a layer on a grid of `cols` columns."""
    panels = [Panel(neuron_title(sel.info, k), signed_rgb(maps[j].numpy(), float(sel.scales[j]) or 1.0),
                    (SIGNED_CMAP, -float(sel.scales[j]), float(sel.scales[j]))) for j, k in enumerate(sel.neurons)]
    return [panels[i:i + cols] for i in range(0, len(panels), cols)]


def make_videos(model, out: str | Path, cfg: VideoConfig, source: torch.Tensor, *, title: str = "xinc",
                frames: list[int] | None = None) -> dict[str, Any]:
    """Write the videos of a NeRV/HNeRV model into the folder `out`; returns what was written (JSON-able).

    `source` (T, 3, H, W) holds the source frame of every model frame in `frames` (same order).
    """
    if not hasattr(model, "blocks"):
        raise XincError("videos need a video model (NeRV/HNeRV); an FFN is one image: use `xinc canvas` or the "
                        "report's single-frame figures")
    cfg.validate(model)
    from xinc.canvas import num_frames

    frames = list(frames if frames is not None else cfg.frames or range(num_frames(model)))
    if source.shape[0] != len(frames):
        raise XincError(f"source has {source.shape[0]} frames for {len(frames)} model frames; give one per frame")
    out = Path(out)
    size = panel_size(model, cfg.panel_width)
    layers = cfg.layers or cfg.default_layers(model)
    sels = [vd.choose_neurons(model, la, n=cfg.neurons, seed=cfg.seed, given=cfg.indices.get(la), mode=cfg.mode)
            for la in layers]
    res: dict[str, Any] = {"panel": list(size), "mode": cfg.mode, "seed": cfg.seed, "videos": {}}
    res["videos"]["neurons"] = neurons_video(model, sels, frames, source, out, "neurons", cfg, size, title)
    if cfg.fluctuation and len(frames) >= 2:
        res["videos"]["flow"] = flow_video(model, cfg.fluctuation_layers or cfg.default_layers(model), frames,
                                           source, out, cfg, size, title)
    if cfg.grid_layer:
        sel = vd.strongest_neurons(model, cfg.grid_layer, frames[0], cfg.grid_top, mode=cfg.mode)
        res["videos"]["grid"] = _grid_video(model, sel, frames, out, cfg, size, title)
    return res


def _grid_video(model, sel, frames, out: Path, cfg: VideoConfig, size, title: str) -> dict[str, Any]:
    t0 = time.perf_counter()
    stem = f"grid_{sel.layer}"
    bar = _bar(cfg, 2 * len(frames), stem)
    try:
        vd.scale_pass(model, [sel], frames, size, mode=cfg.mode, cache_mb=cfg.cache_mb, progress=bar.update)
        with Writers(_outputs(out, stem, cfg.extra_formats), cfg.fps) as w:
            for i, f in enumerate(frames):
                (maps,) = vd.panel_maps(model, [sel], f, size, mode=cfg.mode)
                rgb = compose(grid_rows(sel, maps), size, f"{title} | {sel.layer}: {sel.how} | frame {f} "
                                                          f"({i + 1}/{len(frames)})")
                w.write(rgb)
                if i == len(frames) // 2:
                    Image.fromarray(rgb).save(out / f"{stem}.png")
                bar.update(1)
    finally:
        bar.close()
    return {"files": [p.name for p in _outputs(out, stem, cfg.extra_formats)], "still": f"{stem}.png",
            "layer": sel.layer, "neurons": sel.neurons, "how": sel.how, "scale_max_abs": sel.scales.tolist(),
            "seconds": round(time.perf_counter() - t0, 2)}


def write_video_dir(model_dir: str | Path, out: str | Path, cfg: VideoConfig, *, frames: str | None = None,
                    data: str | None = None, crop: tuple[int, int] | None = None, device: str = "auto",
                    overwrite: bool = False, command: str = "") -> dict[str, Any]:
    """`xinc video` as a library call: load the model, validate everything, then write the videos, their stills,
    videos.json and config.json into the output folder `out` (atomically, through the output-ownership seam)."""
    from xinc import __version__
    from xinc.canvas import num_frames
    from xinc.models.io import load_model
    from xinc.utils import parse_index_list, resolve_device, to_jsonable, write_json
    from xinc.video.output import video_output

    model_dir = Path(model_dir)
    dev = resolve_device(device)
    model = load_model(model_dir, dev)
    if not hasattr(model, "blocks"):
        raise XincError(f"{model_dir}: an FFN is one image, not a video; videos need a NeRV/HNeRV model")
    picked = parse_index_list(frames, num_frames(model), "--frames") if cfg.frames is None else list(cfg.frames)
    cfg.frames = picked
    cfg.validate(model)
    inputs = [model_dir] + ([Path(data)] if data else [])
    with video_output(out, inputs=inputs, overwrite=overwrite) as stage:
        source, desc = vd.source_frames(model, model_dir, picked, data, crop)
        write_json(stage / "config.json", {"command": command, "xinc_version": __version__, "device": str(dev),
                                           "model_dir": str(model_dir.resolve()), "source": desc,
                                           "video": to_jsonable(cfg)})
        res = make_videos(model, stage, cfg, source, title=model_dir.name, frames=picked)
        res["source"] = desc
        write_json(stage / "videos.json", res)
    return res
