"""What the explorer page embeds, computed apart from the page: per layer and frame the top-k signed
contributions of every (downsampled) pixel, the share they hold, the heat map, and the maps of a bounded set
of neurons (the shared seeded sample plus the strongest), all quantised.

Canvases are streamed chunk by chunk: a running top-k per pixel and the selected neurons' maps are all that
is held (never a whole layer).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from xinc.canvas import LayerInfo, NeuronTotals, Reducer, layer_info, stream_canvas
from xinc.canvas.sampling import sample_neurons


def pool(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(n, H, W) signed maps -> (n, h, w) by area averaging (the pixel of the page is a block of the model's)."""
    maps = maps.sum(1) if maps.dim() == 4 else maps
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps.float()
    return F.adaptive_avg_pool2d(maps.float()[:, None], size)[:, 0]


class PixelTopK(Reducer):
    """Per pixel of the pooled canvas: the k neurons of largest |C| (indices and signed values, strongest first),
    the sum of |C| over all neurons (heat), and the pooled maps of chosen neurons."""

    def __init__(self, k: int, size: tuple[int, int], keep: Sequence[int] = ()) -> None:
        self.k, self.size, self.keep = int(k), tuple(size), [int(x) for x in keep]

    def begin_frame(self, info: LayerInfo, frame: int) -> None:
        super().begin_frame(info, frame)
        h, w = self.size
        self.val = torch.zeros(0, h, w)
        self.idx = torch.zeros(0, h, w, dtype=torch.int64)
        self.heat = torch.zeros(h, w, dtype=torch.float64)
        self.maps = torch.zeros(len(self.keep), h, w)
        self._keep = torch.tensor(self.keep, dtype=torch.int64)

    def update(self, start: int, maps: torch.Tensor) -> None:
        p = pool(maps.to("cpu"), self.size)
        n = p.shape[0]
        self.heat += p.abs().sum(0, dtype=torch.float64)
        ids = torch.arange(start, start + n).view(n, 1, 1).expand_as(p)
        val, idx = torch.cat([self.val, p]), torch.cat([self.idx, ids])
        top = torch.topk(val.abs(), min(self.k, val.shape[0]), dim=0).indices  # sorted, strongest first
        self.val, self.idx = val.gather(0, top), idx.gather(0, top)
        hit = ((self._keep >= start) & (self._keep < start + n)).nonzero().flatten()
        if hit.numel():
            self.maps[hit] = p[self._keep[hit] - start]

    def result(self) -> dict[str, torch.Tensor]:
        """{'idx': (k, h, w), 'val': (k, h, w), 'heat': (h, w), 'maps': (len(keep), h, w)}."""
        return {"idx": self.idx, "val": self.val, "heat": self.heat.float(), "maps": self.maps}


def b64(a: np.ndarray) -> str:
    """Little-endian bytes of an array as base64 (the page decodes them into typed arrays)."""
    return base64.b64encode(np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<")).tobytes()).decode("ascii")


def quantise(x: np.ndarray, bits: int) -> tuple[np.ndarray, float]:
    """Symmetric linear quantisation to int8/int16: x ~ q * scale."""
    x = np.asarray(x, np.float32)
    qmax = 2 ** (bits - 1) - 1
    m = float(np.abs(x).max()) if x.size else 0.0
    scale = m / qmax if m > 0 else 1.0
    q = np.clip(np.rint(x / scale), -qmax, qmax).astype(np.int8 if bits == 8 else np.int16)
    return q, scale


@dataclass
class ExploreLimits:
    """The bounds of what is embedded (stated on the page)."""

    width: int = 128  # pooled map width (height keeps the aspect)
    topk: int = 8  # neurons listed per pixel
    frames: int = 6  # frames per model (evenly spaced among the analysed ones)
    maps: int = 24  # neurons per layer whose maps are embedded (sampled + strongest)
    sampled: int = 6  # of which seeded samples (the shared sampler: same neurons as videos and report)


def map_size(H: int, W: int, width: int) -> tuple[int, int]:
    """Pooled size (h, w): at most `width` columns, aspect kept, never larger than the model."""
    w = min(W, int(width))
    return max(1, round(H * w / W)), w


def pick_neurons(model, layer: str, frame: int, lim: ExploreLimits, seed: int,
                 mode: str) -> tuple[list[int], list[int]]:
    """(sampled, embedded): the shared seeded sample, then the strongest by sum |C| in `frame` up to lim.maps."""
    K = layer_info(model, layer, mode).num_neurons
    sampled = sample_neurons(K, min(lim.sampled, lim.maps), seed)
    tot = NeuronTotals()
    stream_canvas(model, layer, [frame], [tot], mode=mode)
    t = tot.result()[frame]
    t = t.sum(-1) if t.dim() > 1 else t
    chosen = list(sampled)
    for k in torch.argsort(-t, stable=True).tolist():
        if len(chosen) >= lim.maps:
            break
        if k not in chosen:
            chosen.append(int(k))
    return sampled, sorted(chosen)


def layer_payload(model, layer: str, frames: Sequence[int], lim: ExploreLimits, *, seed: int, mode: str,
                  progress=None) -> dict:
    """Everything the page shows for one layer (JSON-able; arrays as base64 of quantised typed arrays)."""
    info = layer_info(model, layer, mode)
    size = map_size(info.height, info.width, lim.width)
    sampled, keep = pick_neurons(model, layer, frames[0], lim, seed, mode)
    k = min(lim.topk, info.num_neurons)
    per_frame, maps = {}, {kk: {} for kk in keep}
    for f in frames:
        red = PixelTopK(k, size, keep)
        stream_canvas(model, layer, [f], [red], mode=mode, progress=progress)
        r = red.result()
        val, scale = quantise(r["val"].permute(1, 2, 0).numpy(), 16)  # (h, w, k): pixel-major
        idx = r["idx"].permute(1, 2, 0).numpy().astype(np.uint16 if info.num_neurons < 65536 else np.uint32)
        heat = r["heat"].numpy()
        share = r["val"].abs().sum(0).numpy() / np.maximum(heat, 1e-30)
        hq, hs = quantise(heat, 16)
        per_frame[str(f)] = {"idx": b64(idx), "val": b64(val), "val_scale": scale, "heat": b64(hq.astype(np.int16)),
                             "heat_scale": hs, "share": b64(np.rint(np.clip(share, 0, 1) * 255).astype(np.uint8))}
        for j, kk in enumerate(keep):
            maps[kk][str(f)] = r["maps"][j].numpy()
    neurons = []
    for kk in keep:
        stack = np.stack([maps[kk][str(f)] for f in frames])
        q, scale = quantise(stack, 8)
        neurons.append({"k": kk, "sampled": kk in sampled, "scale": scale,
                        "maps": {str(f): b64(q[i]) for i, f in enumerate(frames)}})
    return {"name": layer, "num_neurons": info.num_neurons, "rule": info.rule, "exact": bool(info.exact),
            "mode": mode, "size": list(size), "topk": k, "neuron_index": info.neuron_index, "c_out": info.c_out,
            "idx_type": "uint16" if info.num_neurons < 65536 else "uint32", "frames": per_frame,
            "sampled": sampled, "neurons": neurons}


def decode_pixel(layer: dict, frame: int, y: int, x: int) -> list[tuple[int, float]]:
    """The (neuron, value) list the page shows for pixel (y, x) of a payload (the test's Python side)."""
    fr = layer["frames"][str(frame)]
    h, w = layer["size"]
    k = layer["topk"]
    idx = np.frombuffer(base64.b64decode(fr["idx"]), dtype="<u2" if layer["idx_type"] == "uint16" else "<u4")
    val = np.frombuffer(base64.b64decode(fr["val"]), dtype="<i2").astype(np.float64) * fr["val_scale"]
    p = (y * w + x) * k
    return [(int(i), float(v)) for i, v in zip(idx[p:p + k], val[p:p + k])]
