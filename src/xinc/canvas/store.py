"""Canvas stores: OUT/canvas.zarr (zarr v3, one chunk per neuron map), resumable and atomic per frame.

Layout (see the README, section "The canvas engine"):
    OUT/config.json                       resolved run config (+ command line)
    OUT/canvas.zarr/                      root attrs: xinc_version, model_dir, model, run, layers, frames
    OUT/canvas.zarr/<layer>/              attrs: info (LayerInfo), rule, exact, mode, neuron_index, c_in, c_out,
                                                 residual {frame: {...}}, frames_done [model frame indices]
    OUT/canvas.zarr/<layer>/maps          (F, K, H, W) (or (F, K, C, H, W) per channel), chunks (1, 1, ...)
                                          (one map each) inside shard files of ~16 MiB of neurons;
                                          absent when written with --maps False (heat and totals only)
    OUT/canvas.zarr/<layer>/heat          (F, H, W) float32  sum_k |C_k|
    OUT/canvas.zarr/<layer>/totals        (F, K) float32     sum_p |C_k|
    OUT/canvas.zarr/<layer>/frames        (F,) int64         model frame index of each slot
    OUT/figures/<layer>_top.png           strongest neurons' maps of the first frame
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from xinc.canvas.engine import Canvas
from xinc.canvas.reduce import LayerInfo, Reducer, residual_exact
from xinc.errors import XincError

STORE_NAME = "canvas.zarr"


SHARD_BYTES = 16 * 2**20  # neurons per shard file ~ 16 MiB; inner chunks are single neuron maps


class ZarrWriter(Reducer):
    """Streaming reducer that writes maps into slot `slot` of a zarr array, buffered to whole shards."""

    def __init__(self, array, slot_of_frame: dict[int, int], dtype: np.dtype) -> None:
        self.array, self.slot_of_frame, self.dtype = array, slot_of_frame, np.dtype(dtype)
        self.step = int((array.shards or array.chunks)[1])

    def begin_frame(self, info: LayerInfo, frame: int) -> None:
        super().begin_frame(info, frame)
        self.slot, self.buf, self.buf_start = self.slot_of_frame[frame], [], 0

    def _flush(self, final: bool) -> None:
        if not self.buf:
            return
        data = np.concatenate(self.buf, 0)
        n = len(data) if final else (len(data) // self.step) * self.step
        if n:
            self.array[self.slot, self.buf_start:self.buf_start + n] = data[:n]
        self.buf = [data[n:]] if n < len(data) else []
        self.buf_start += n

    def update(self, start: int, maps: torch.Tensor) -> None:
        self.buf.append(maps.detach().cpu().numpy().astype(self.dtype))
        if sum(len(b) for b in self.buf) >= self.step:
            self._flush(final=False)

    def end_frame(self) -> None:
        self._flush(final=True)

    def result(self):
        return None


def info_attrs(info: LayerInfo) -> dict:
    """LayerInfo as JSON (without the per-frame residual, which the layer attrs keep per frame)."""
    d = dataclasses.asdict(info)
    d.pop("residual", None)
    return d


def open_layer(root, info: LayerInfo, frames: list[int], dtype: str, maps: bool = True):
    """Create (or reopen, when compatible) the group and arrays of one layer (`maps` False: heat and totals
    only, no per-neuron maps)."""
    shape = (len(frames), info.num_neurons, *info.map_shape)
    chunks = (1, 1, *info.map_shape)
    per_map = int(np.prod(info.map_shape)) * np.dtype(dtype).itemsize
    shards = (1, max(1, min(info.num_neurons, SHARD_BYTES // per_map)), *info.map_shape)
    if info.name in root:
        grp = root[info.name]
        if not maps and "maps" not in grp and tuple(grp["totals"].shape[:2]) == shape[:2]:
            return grp
        if maps and "maps" in grp and tuple(grp["maps"].shape) == shape and str(grp["maps"].dtype) == dtype:
            return grp
        del root[info.name]
    grp = root.create_group(info.name)
    if maps:
        grp.create_array("maps", shape=shape, chunks=chunks, shards=shards, dtype=dtype, fill_value=0)
    grp.create_array("heat", shape=(len(frames), *info.map_shape), chunks=(1, *info.map_shape),
                     dtype="float32", fill_value=0)
    grp.create_array("totals", shape=(len(frames), info.num_neurons, *info.map_shape[:-2]),
                     chunks=(1, info.num_neurons, *info.map_shape[:-2]), dtype="float32", fill_value=0)
    fr = grp.create_array("frames", shape=(len(frames),), chunks=(len(frames),), dtype="int64", fill_value=0)
    fr[:] = np.asarray(frames, dtype=np.int64)
    attrs = info_attrs(info)
    grp.attrs.update({"info": attrs, "rule": info.rule, "exact": info.exact, "mode": info.mode,
                      "neuron_index": info.neuron_index, "c_in": info.c_in, "c_out": info.c_out,
                      "residual": {}, "frames_done": []})
    return grp


def open_store(out: str | Path, mode: str = "r"):
    """The zarr root group of a canvas output folder (OUT or OUT/canvas.zarr)."""
    import zarr

    path = Path(out)
    if (path / STORE_NAME).is_dir():
        path = path / STORE_NAME
    if not (path / "zarr.json").is_file():
        raise XincError(f"{out}: not a canvas store (no {STORE_NAME}/zarr.json); write one with `xinc canvas`")
    return zarr.open_group(str(path), mode=mode)


def read_canvas(out: str | Path, layer: str, frame: int) -> Canvas:
    """Load one layer x frame of a canvas store back into a Canvas (float32)."""
    root = open_store(out)
    if layer not in root:
        raise XincError(f"{out}: layer {layer!r} is not in the store; it has {', '.join(root.attrs['layers'])}")
    grp = root[layer]
    frames = [int(f) for f in grp["frames"][:]]
    done = [int(f) for f in grp.attrs["frames_done"]]
    if frame not in frames or frame not in done:
        raise XincError(f"{out}: frame {frame} of layer {layer} is not in the store (complete frames: {done})")
    if "maps" not in grp:
        raise XincError(f"{out}: layer {layer} was stored without maps (--maps False: heat and totals only); "
                        "rerun xinc canvas with --maps True to read neuron maps")
    slot = frames.index(frame)
    info_d = dict(grp.attrs["info"])
    info = LayerInfo(**{k: v for k, v in info_d.items() if k in {f.name for f in dataclasses.fields(LayerInfo)}})
    info.residual = dict(grp.attrs["residual"].get(str(frame), {}))
    info.exact = bool(info.exact) and residual_exact(info.residual)  # the claim, as measured on this frame
    maps = torch.from_numpy(np.asarray(grp["maps"][slot], dtype=np.float32))
    return Canvas(maps=maps, layer=layer, frame=frame, mode=info.mode, exact=info.exact, residual=info.residual,
                  neuron_index=info.neuron_index, c_in=info.c_in, c_out=info.c_out, rule=info.rule, info=info)
