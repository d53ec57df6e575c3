"""Build the explorer page of an `xinc analyze` run (or a folder of runs): load each run's model and frames,
precompute the bounded payload (xinc.explore.data), read the per-neuron A3/A5/A6 numbers from its tables, and
write one self-contained HTML file."""

from __future__ import annotations

import base64
import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from xinc.errors import XincError
from xinc.explore.data import ExploreLimits, layer_payload, map_size
from xinc.explore.page import render
from xinc.utils import read_json

NUMBER_TABLES = {"a3": "a3_sampled_cells.csv", "a5": "a5_neurons_*.csv", "a6": "a6_assignments.csv"}


def even_pick(items: Sequence[int], n: int) -> list[int]:
    """Up to n items spread evenly over the sequence (first and last kept)."""
    items = list(items)
    if len(items) <= n:
        return items
    return [items[round(i * (len(items) - 1) / (n - 1))] for i in range(n)] if n > 1 else items[:1]


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _num(v: str) -> float | str:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return str(v)[:80]
    return x if math.isfinite(x) else str(v)


def neuron_numbers(run: Path) -> dict[str, dict[str, dict[str, dict[str, Any]]]]:
    """{layer: {neuron: {'a3': {...}, 'a5': {...}, 'a6': {...}}}} from the run's tables (missing ones skipped):
    A3 = the categories a neuron favours (mean normalised |C| per category, top 3), A5 = ln sqrt(V) per
    grouping, A6 = its cluster."""
    out: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}

    def put(layer: str, k: str, aid: str, vals: dict[str, Any]) -> None:
        out.setdefault(str(layer), {}).setdefault(str(int(float(k))), {}).setdefault(aid, {}).update(vals)

    tables = run / "tables"
    a3 = tables / NUMBER_TABLES["a3"]
    if a3.is_file():
        acc: dict[tuple[str, str, str], dict[str, list[float]]] = {}
        for r in _rows(a3):
            key = (r["layer"], r["neuron"], r.get("variant", ""))
            acc.setdefault(key, {}).setdefault(r["category"], []).append(float(r["normalised"]))
        for (layer, k, variant), cats in acc.items():
            means = sorted(((float(np.mean(v)), c) for c, v in cats.items()), reverse=True)[:3]
            put(layer, k, "a3", {f"{variant} favours #{i + 1}".strip(): f"{c} ({m:.2f})"
                                 for i, (m, c) in enumerate(means)})
    for path in sorted(tables.glob(NUMBER_TABLES["a5"])):
        for r in _rows(path):
            vals = {f"{r.get('variant', '')} ln sqrt V {g}".strip(): _num(v) for g, v in r.items()
                    if g not in ("variant", "layer", "neuron") and not g.endswith("_null")}
            put(r["layer"], r["neuron"], "a5", vals)
    a6 = tables / NUMBER_TABLES["a6"]
    if a6.is_file():
        for r in _rows(a6):
            put(r["layer"], r["neuron"], "a6", {"cluster": _num(r["cluster"])})
    return out


def _png_uri(img: torch.Tensor, size: tuple[int, int]) -> str:
    from PIL import Image

    x = (img.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    pic = Image.fromarray(x)
    if pic.size != (size[1], size[0]):
        pic = pic.resize((size[1], size[0]), Image.BILINEAR)
    buf = io.BytesIO()
    pic.save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def run_images(model, results: dict, cfg: dict, frames: list[int]) -> tuple[torch.Tensor, str]:
    """The analysed source frames of a run (dataset clip or --data), else the model's reconstruction."""
    H, W = int(model.config.height), int(model.config.width)
    d = results.get("data") or {}
    try:
        if d.get("dataset") and d.get("root") and d.get("video"):
            from xinc.data.panoptic import load_panoptic_clip, load_panoptic_frame

            if model.config.kind == "ffn":
                j = cfg.get("frame")
                clip = load_panoptic_frame(d["dataset"], d["root"], d["video"], int(j if j is not None else 0),
                                           size=(H, W))
                return clip.frames[:1], "dataset frame"
            return load_panoptic_clip(d["dataset"], d["root"], d["video"], size=(H, W)).frames[frames], "dataset clip"
        if d.get("src"):
            from xinc.data.frames import load_frames

            crop = tuple(d["crop"]) if d.get("crop") else None
            return load_frames(d["src"], crop, (H, W), [0] if model.config.kind == "ffn" else frames), "data"
    except (XincError, OSError, KeyError, IndexError, ValueError):
        pass  # the data moved or changed: show what the model draws instead
    with torch.no_grad():
        x = model.render()[None] if model.config.kind == "ffn" else model(frames)
    return x.detach().cpu().clamp(0, 1), "reconstruction (source data not found)"


def _model_dir(run: Path, results: dict) -> Path:
    d = Path(str((results.get("model") or {}).get("dir", "")))
    for cand in (d, run / d, run.parent / d):
        if str(d) and (cand / "config.json").is_file():
            return cand
    raise XincError(f"{run}: the model directory {str(d)!r} named in results.json was not found; rerun "
                    "`xinc analyze` or keep the model next to the run")


def run_payload(run: Path, lim: ExploreLimits, *, seed: int | None, mode: str, progress=None) -> dict[str, Any]:
    """The page data of one analyze run."""
    from xinc.models.io import load_model

    results, cfg = read_json(run / "results.json"), _try(run / "config.json")
    model = load_model(_model_dir(run, results), "cpu")
    seed = int(cfg.get("seed", 0) if seed is None else seed)
    names = list(model.layer_names)
    layers = [la for la in (cfg.get("layers") or names) if la in names]
    analysed = (results.get("reconstruction") or {}).get("frames") or cfg.get("frames") or [0]
    frames = [0] if model.config.kind == "ffn" else even_pick([int(f) for f in analysed], lim.frames)
    images, img_src = run_images(model, results, cfg, frames)
    size = map_size(int(model.config.height), int(model.config.width), max(lim.width, 256))
    payload_layers = [layer_payload(model, la, frames, lim, seed=seed, mode=mode, progress=progress) for la in layers]
    params = int(sum(p.numel() for p in model.parameters()))
    return {"name": run.name, "kind": model.config.kind, "frames": frames,
            "summary": f"{model.config.kind}, {params:,} parameters, {len(frames)} frame(s), images: {img_src}, "
                       f"canvas {mode}, seed {seed}",
            "images": {str(f): _png_uri(images[i], size) for i, f in enumerate(frames)},
            "layers": payload_layers, "numbers": neuron_numbers(run)}


def _try(path: Path) -> dict:
    return read_json(path) if path.is_file() else {}


def luts() -> dict[str, str]:
    """The page's colour tables (diverging for signed maps, magma for heat), 256 x RGB bytes, base64."""
    from matplotlib import colormaps

    def one(name: str) -> str:
        rgb = (colormaps[name](np.linspace(0, 1, 256))[:, :3] * 255).round().astype(np.uint8)
        return base64.b64encode(rgb.tobytes()).decode("ascii")

    return {"signed": one("RdBu_r"), "heat": one("magma")}


def build_payload(run_dir: str | Path, lim: ExploreLimits | None = None, *, seed: int | None = None,
                  mode: str = "paper", max_mb: float = 20.0, progress=None) -> dict[str, Any]:
    """The whole page data of a run or a folder of runs, checked against the size budget."""
    from xinc.report.html import find_runs

    lim = lim or ExploreLimits()
    runs = find_runs(run_dir)
    if not runs:
        raise XincError(f"{run_dir}: no `xinc analyze` run (results.json) found here or one level below")
    try:
        models = [run_payload(r, lim, seed=seed, mode=mode, progress=progress) for r in runs]
    except (AttributeError, TypeError, KeyError, ValueError, IndexError) as e:  # untrusted run files
        raise XincError(f"{run_dir}: malformed results.json, config.json or tables ({type(e).__name__}: {e}) ; "
                        "regenerate the run with `xinc analyze`") from None
    payload = {"models": models, "luts": luts(), "limits": lim.__dict__}
    size_mb = len(str(payload)) / 2**20
    if size_mb > max_mb:
        raise XincError(f"explorer data would be {size_mb:.1f} MB, over the {max_mb:g} MB budget; lower --width, "
                        "--frames, --maps or --topk, or raise --max-mb")
    payload["budget"] = {"mb": round(size_mb, 2), "max_mb": max_mb, "text": (
        f"Embedded data {size_mb:.1f} MB (budget {max_mb:g} MB): maps average-pooled to at most {lim.width} px wide; "
        f"the top {lim.topk} neurons by |C| of every pooled pixel (int16); at most {lim.frames} frames per model; "
        f"maps (int8) of {lim.maps} neurons per layer: {lim.sampled} seeded samples and the strongest by sum |C|.")}
    return payload


def build_explorer(run_dir: str | Path, out: str | Path, *, lim: ExploreLimits | None = None, seed: int | None = None,
                   mode: str = "paper", max_mb: float = 20.0, title: str | None = None, progress=None) -> Path:
    """Write the explorer HTML of a run (or folder of runs) to `out` atomically; returns its path."""
    from xinc.video.output import check_html_target, write_owned_html

    check_html_target(out, inputs=[run_dir])
    payload = build_payload(run_dir, lim, seed=seed, mode=mode, max_mb=max_mb, progress=progress)
    text = render(payload, title or f"xinc explorer — {Path(run_dir).resolve().name}")
    return write_owned_html(out, text, inputs=[run_dir])
