"""What the videos show, computed apart from drawing: selected neurons' maps per frame, their fixed colour
scales, the fluctuation M_t of whole layers, optical flow and the source frames.

Everything streams frame by frame through the canvas engine: only the selected neurons' maps of one frame
(or, within a memory budget, of all frames at panel resolution) are ever held.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from xinc.canvas import LayerInfo, NeuronTotals, Reducer, stream_canvas
from xinc.canvas.engine import trace_frame
from xinc.canvas.sampling import sample_neurons
from xinc.errors import XincError


class SelectedMaps(Reducer):
    """Keep only the signed maps of chosen neurons for the current frame: `maps` (n, H, W) float32 in the
    order of `neurons` after end_frame()."""

    def __init__(self, neurons: Sequence[int]) -> None:
        self.neurons = [int(k) for k in neurons]
        self.maps: torch.Tensor | None = None

    def begin_frame(self, info: LayerInfo, frame: int) -> None:
        super().begin_frame(info, frame)
        self.maps = torch.zeros(len(self.neurons), info.height, info.width)
        self._where = torch.tensor(self.neurons, dtype=torch.int64)

    def update(self, start: int, maps: torch.Tensor) -> None:
        stop = start + maps.shape[0]
        hit = ((self._where >= start) & (self._where < stop)).nonzero().flatten()
        if hit.numel():
            m = maps[self._where[hit] - start]
            self.maps[hit] = (m.sum(1) if m.dim() == 4 else m).to("cpu", torch.float32)

    def result(self) -> torch.Tensor:
        return self.maps


def neuron_runs(neurons: Sequence[int], gap: int = 32) -> list[tuple[int, int]]:
    """Ranges [a, b) covering sorted unique neuron indices, merged across gaps of up to `gap` neurons (one
    engine call per range: a few extra maps cost less than another call's set-up)."""
    ks = sorted(set(int(k) for k in neurons))
    runs: list[tuple[int, int]] = []
    for k in ks:
        if runs and k - runs[-1][1] <= gap:
            runs[-1] = (runs[-1][0], k + 1)
        else:
            runs.append((k, k + 1))
    return runs


def neuron_maps(model, layer: str, frame: int, neurons: Sequence[int], *, mode: str = "paper", trace=None,
                chunk_neurons: int | None = None) -> torch.Tensor:
    """Signed maps (n, H, W) of the given neurons of one frame; only their ranges are computed."""
    trace = trace_frame(model, frame) if trace is None else trace
    out = None
    for a, b in neuron_runs(neurons):
        red = SelectedMaps(neurons)
        stream_canvas(model, layer, [frame], [red], mode=mode, neurons=(a, b), trace=trace,
                      chunk_neurons=chunk_neurons)
        out = red.result() if out is None else out + red.result()  # each neuron is filled by one run only
    return out


def resize_maps(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(n, H, W) -> (n, h, w): area averaging when shrinking, nearest when growing (no invented detail)."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    shrink = size[0] <= maps.shape[-2] and size[1] <= maps.shape[-1]
    x = maps[:, None].float()
    x = F.interpolate(x, size=size, mode="area") if shrink else F.interpolate(x, size=size, mode="nearest")
    return x[:, 0]


@dataclass
class LayerSelection:
    """The neurons a video shows for one layer, and how they were chosen."""

    layer: str
    neurons: list[int]
    how: str  # "sampled (seed S)" | "given" | "strongest"
    info: LayerInfo
    scales: np.ndarray | None = None  # max |C| per neuron over all frames (the fixed colour scale)
    cached: dict[int, torch.Tensor] = field(default_factory=dict)  # frame -> (n, h, w) at panel size
    seconds: float = 0.0  # time spent computing this layer's maps (all passes)


def choose_neurons(model, layer: str, *, n: int, seed: int, given: Sequence[int] | None, mode: str) -> LayerSelection:
    """Given indices (validated) or the shared seeded sample of n neurons."""
    from xinc.canvas import layer_info

    info = layer_info(model, layer, mode)
    K = info.num_neurons
    if given:
        bad = [k for k in given if not 0 <= int(k) < K]
        if bad:
            raise XincError(f"--neurons: index {bad[0]} is outside layer {layer}'s neurons 0..{K - 1}; "
                            "give indices below the layer's neuron count")
        return LayerSelection(layer, [int(k) for k in given], "given", info)
    return LayerSelection(layer, sample_neurons(K, n, seed), f"sampled (seed {seed})", info)


def strongest_neurons(model, layer: str, frame: int, top: int, *, mode: str = "paper") -> LayerSelection:
    """The `top` neurons with the largest total |C| in one frame (fused totals: no maps formed)."""
    tot = NeuronTotals()
    stream_canvas(model, layer, [frame], [tot], mode=mode)
    t = tot.result()[frame]
    t = t.sum(-1) if t.dim() > 1 else t
    ks = torch.argsort(-t, stable=True)[:top].tolist()
    from xinc.canvas import layer_info

    return LayerSelection(layer, [int(k) for k in ks], f"strongest {top} by sum |C| in frame {frame}",
                          layer_info(model, layer, mode))


def scale_pass(model, selections: list[LayerSelection], frames: Sequence[int], panel: tuple[int, int], *,
               mode: str, cache_mb: float, progress: Callable[[int], Any] | None = None) -> None:
    """First pass: each selected neuron's max |C| over all frames (its fixed colour scale); maps are kept at
    panel size while the cache budget allows, so the drawing pass need not recompute them."""
    per_frame = sum(len(s.neurons) for s in selections) * panel[0] * panel[1] * 4
    keep = per_frame * len(frames) <= cache_mb * 2**20
    for s in selections:
        s.scales = np.zeros(len(s.neurons), dtype=np.float64)
    for f in frames:
        tr = trace_frame(model, f)
        for s in selections:
            t0 = time.perf_counter()
            maps = neuron_maps(model, s.layer, f, s.neurons, mode=mode, trace=tr)
            s.seconds += time.perf_counter() - t0
            s.scales = np.maximum(s.scales, maps.abs().flatten(1).amax(1).double().numpy())
            if keep:
                s.cached[f] = resize_maps(maps, panel)
        if progress is not None:
            progress(1)


def panel_maps(model, selections: list[LayerSelection], frame: int, panel: tuple[int, int], *,
               mode: str) -> list[torch.Tensor]:
    """Each selection's maps of one frame at panel size (from the first pass's cache, else recomputed)."""
    tr = None
    out = []
    for s in selections:
        if frame in s.cached:
            out.append(s.cached.pop(frame))
            continue
        tr = trace_frame(model, frame) if tr is None else tr
        t0 = time.perf_counter()
        out.append(resize_maps(neuron_maps(model, s.layer, frame, s.neurons, mode=mode, trace=tr), panel))
        s.seconds += time.perf_counter() - t0
    return out


class AbsChange(Reducer):
    """M_t = sum_k | |C_k^t| - |C_k^(t-1)| | over frames streamed in order, holding the previous frame's |C| of
    every neuron (K, H, W) float32: each frame's canvas is computed once. `on_map(M)` receives each M_t."""

    def __init__(self, on_map: Callable[[torch.Tensor], Any]) -> None:
        self.on_map, self.prev, self._m = on_map, None, None

    def begin_frame(self, info: LayerInfo, frame: int) -> None:
        super().begin_frame(info, frame)
        self.first = self.prev is None
        if self.first:
            self.prev = torch.empty(info.num_neurons, info.height, info.width)
        self._m = torch.zeros(info.height, info.width, dtype=torch.float64)

    def update(self, start: int, maps: torch.Tensor) -> None:
        a = maps.to("cpu", torch.float32).abs()  # a new tensor: the engine's maps stay untouched
        a = a.sum(1) if a.dim() == 4 else a
        prev = self.prev[start:start + a.shape[0]]
        if not self.first:  # in place on the held previous |C| (no chunk-sized temporary), then overwritten
            self._m += prev.sub_(a).abs_().sum(0)  # float32 within a chunk, float64 across chunks
        prev.copy_(a)

    def end_frame(self) -> None:
        if not self.first:
            self.on_map(self._m.float())


def fluctuation(model, layer: str, frames: Sequence[int], panel: tuple[int, int], *, mode: str = "paper",
                budget_mb: float = 1024.0, progress: Callable[[int], Any] | None = None) -> np.ndarray:
    """M_t(p) = sum_k | |C_k^t(p)| - |C_k^(t-1)(p)| | for consecutive pairs of `frames` at panel size:
    (len(frames) - 1, h, w) float32. Each frame's canvas is computed once while the previous frame's |C| fits
    `budget_mb`; bigger layers stream both frames of a pair in lockstep (A4's change_map, twice the work)."""
    from xinc.analysis.motion import change_map
    from xinc.canvas import layer_info

    info = layer_info(model, layer, mode)
    out: list[np.ndarray] = []

    def keep(m: torch.Tensor) -> None:
        out.append(resize_maps(m[None], panel)[0].numpy())
        if progress is not None:
            progress(1)

    if info.num_neurons * info.height * info.width * 4 <= budget_mb * 2**20:
        stream_canvas(model, layer, list(frames), [AbsChange(keep)], mode=mode)
    else:
        for a, b in zip(frames[:-1], frames[1:]):
            keep(change_map(model, layer, a, b, mode=mode))
    return np.stack(out) if out else np.zeros((0, *panel), np.float32)


def flow_pictures(frames: torch.Tensor, panel: tuple[int, int]) -> tuple[np.ndarray, float, dict]:
    """Colour-wheel pictures (T-1, h, w, 3) uint8 of OpenCV DIS flow between consecutive source frames, one
    magnitude scale (the largest over all pairs, in pixels of the source) for the whole video."""
    from xinc.data.flow import compute_flow, flow_to_color

    ff = compute_flow(frames)
    vmax = float(ff.magnitude.max()) if ff.flow.size else 1.0
    pics = [flow_to_color(f, vmax) for f in ff.flow]
    t = torch.from_numpy(np.stack(pics)).permute(0, 3, 1, 2).float() if pics else torch.zeros(0, 3, *panel)
    if pics:
        t = F.interpolate(t, size=panel, mode="area" if panel[0] <= t.shape[-2] else "nearest")
    return t.round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy(), vmax, ff.describe()


def source_frames(model, model_dir: Path | None, frames: Sequence[int], data: str | None = None,
                  crop: tuple[int, int] | None = None) -> tuple[torch.Tensor, dict]:
    """(T, 3, H, W) source frames in [0, 1] at the model size: --data, else the data recorded with the model
    (when it holds every frame), else the model's own reconstruction; plus a description."""
    from xinc.data.frames import load_frames

    H, W = int(model.config.height), int(model.config.width)
    frames = list(frames)
    if data is not None:
        return load_frames(data, crop, (H, W), frames).clamp(0, 1), {"source": "data", "src": str(data),
                                                                      "crop": list(crop) if crop else None}
    rec = _recorded(model_dir)
    if rec and rec.get("kind") == "dataset" and rec.get("root") and rec.get("video"):
        from xinc.data.panoptic import load_panoptic_clip

        try:
            clip = load_panoptic_clip(rec["dataset"], rec["root"], rec["video"], size=(H, W))
            if max(frames) < clip.num_frames:
                return clip.frames[frames].clamp(0, 1), {"source": "recorded dataset", "dataset": rec["dataset"],
                                                         "root": str(rec["root"]), "video": rec["video"]}
        except (XincError, OSError):
            pass  # the dataset moved: fall back to the reconstruction
    if rec and rec.get("kind") in ("video", "image") and rec.get("src") and Path(rec["src"]).exists():
        try:
            x = load_frames(rec["src"], tuple(rec["crop"]) if rec.get("crop") else None, (H, W), frames)
            return x.clamp(0, 1), {"source": "recorded", "src": rec["src"], "crop": rec.get("crop")}
        except XincError:
            pass  # the recorded source lacks some frames: fall back to the reconstruction
    with torch.no_grad():
        x = torch.cat([model(frames[i:i + 4]).detach().cpu() for i in range(0, len(frames), 4)])
    return x.clamp(0, 1), {"source": "reconstruction", "note": "no data given or recorded for every frame"}


def _recorded(model_dir: Path | None) -> dict | None:
    if model_dir is None:
        return None
    from xinc.models.io import read_model_dir_config

    cfg = read_model_dir_config(model_dir)
    rec = (cfg.get("train") or {}).get("data") or (cfg.get("import") or {}).get("data")
    return rec if isinstance(rec, dict) else None
