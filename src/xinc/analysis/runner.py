"""`analyze(cfg)`: run registered analyses (a1..) on a model directory and one source of frames (`xinc analyze`).

Data (first that applies): --dataset/--root/--video (a panoptic clip: labels available), --data (a
plain image, video or frame folder: analyses needing labels are skipped, or fail if asked for by
name), the training data recorded in the model's config.json, else the model's own reconstruction.
Writes OUT/config.json, OUT/results.json, OUT/data/<aid>.npz, OUT/tables/<aid>_*.csv and (drawn by the report
layer's registered plots) OUT/figures/<aid>/*.png+pdf in one atomic rename (a failed run leaves nothing behind).
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from xinc.analysis.config import AnalyzeConfig
from xinc.analysis.estimates import METHOD, add_frame_estimates, estimate_line, mean_estimate
from xinc.config import as_json, command_line
from xinc.data.datasets import get_dataset
from xinc.errors import XincError
from xinc.models import protocol
from xinc.outputs import owned_output
from xinc.utils import parse_hw, parse_index_list, resolve_device, seed_everything, to_jsonable, write_json

AUTO_VALUES = 2.0e10
"""`--sample-frames auto`'s budget in canvas values streamed (maps x pixels x passes over layers, modes and
frames): about 3 CPU-min on a 2-core laptop CPU (docs/reference/scale.md)."""


def _model_frames(model) -> int:
    return protocol.frames(model)


def _load_data(o: AnalyzeConfig, model, cfg: dict[str, Any]) -> dict[str, Any]:
    """Resolve the frames, images and (optional) panoptic clip; returns a dict with a JSON-able 'summary'."""
    from xinc.data.frames import load_frames

    is_ffn = not protocol.takes_frames(model)
    H, W = int(model.config.height), int(model.config.width)
    T_model = _model_frames(model)
    dataset, root, video = o.dataset, o.root, o.video
    recorded = (cfg.get("train") or {}).get("data") or (cfg.get("import") or {}).get("data")
    src_kind = "dataset" if dataset else "data" if o.data else None
    if src_kind is None and isinstance(recorded, dict) and recorded.get("kind") in ("dataset", "image", "video"):
        src_kind = "recorded"
        if recorded["kind"] == "dataset":
            dataset, root, video = recorded.get("dataset"), recorded.get("root"), recorded.get("video")
    if dataset is not None or (src_kind == "recorded" and recorded["kind"] == "dataset"):
        if root is None or video is None:
            raise XincError("--dataset needs --root and --video (the dataset folder and the clip id)")
        from xinc.data.panoptic import load_panoptic_clip, load_panoptic_frame

        if is_ffn:
            j = get_dataset(dataset).first_annotated if o.frame is None else int(o.frame)
            clip = load_panoptic_frame(dataset, root, video, j, size=(H, W))
            frames, images = [0], clip.frames[:1]
        else:
            clip = load_panoptic_clip(dataset, root, video, size=(H, W))
            if clip.num_frames != T_model:
                print(f"xinc analyze: warning: the clip has {clip.num_frames} frames but the model was trained on "
                      f"{T_model}; model frame k is compared with clip frame k", file=sys.stderr)
            n = min(clip.num_frames, T_model)
            frames = parse_index_list(o.frames, n) if o.frames else [j for j in clip.annotated if j < n]
            if not frames:
                raise XincError(f"{video}: no annotated frame below {n}; choose --frames")
            images = clip.frames[frames]
        return {"frames": frames, "images": images, "panoptic": clip, "flow": _gt_flow(root, video, frames, H, W),
                "summary": {"source": "dataset" if src_kind != "recorded" else "recorded dataset",
                            "dataset": dataset, "root": str(root), "video": video, "frames": frames,
                            "clip": clip.summary(), "labels": True}}
    if o.data or src_kind == "recorded":
        src = o.data if o.data else recorded.get("src")
        if o.data:
            crop = parse_hw(o.crop, "--crop") if o.crop else None
        else:
            crop = tuple(recorded["crop"]) if recorded.get("crop") else None
        if is_ffn:
            pick = [0 if o.frame is None else int(o.frame)]
            images = load_frames(src, crop, (H, W), pick)
            frames = [0]
        else:
            avail = load_frames(src, crop, (H, W), None) if o.frames is None else None
            n = T_model if avail is None else min(T_model, avail.shape[0])
            frames = parse_index_list(o.frames, n)
            images = avail[frames] if avail is not None else load_frames(src, crop, (H, W), frames)
        return {"frames": frames, "images": images.clamp(0, 1), "panoptic": None, "flow": None,
                "summary": {"source": "data" if o.data else "recorded source", "src": str(src), "frames": frames,
                            "crop": list(crop) if crop else None, "size": [H, W], "labels": False}}
    frames = [0] if is_ffn else parse_index_list(o.frames, T_model)
    return {"frames": frames, "images": _reconstruct(model, frames).clamp(0, 1), "panoptic": None, "flow": None,
            "summary": {"source": "reconstruction", "frames": frames, "labels": False,
                        "note": "no data given or recorded: the model's own (clamped) output is the image"}}


def _gt_flow(root, video, frames: list[int], H: int, W: int) -> torch.Tensor | None:
    """A synthetic clip's exact flow between the analysed frames, when they are consecutive and sizes match."""
    path = Path(root) / "flow_gt" / str(video) / "flow.npy"
    if len(frames) < 2 or not path.is_file() or any(b != a + 1 for a, b in zip(frames[:-1], frames[1:])):
        return None
    flow = np.load(path)
    if flow.shape[-2:] != (H, W) or flow.shape[0] < frames[-1]:
        return None
    return torch.from_numpy(flow[frames[:-1]].astype(np.float32))


@torch.no_grad()
def _reconstruct(model, frames: list[int]) -> torch.Tensor:
    """The model's output for the frames as (T, 3, H, W) (FFN: one frame)."""
    if not protocol.takes_frames(model):
        return model.render().detach().cpu()[None]
    return torch.cat([model(frames[i:i + 4]).detach().cpu() for i in range(0, len(frames), 4)])


def _psnr(model, frames: list[int], images: torch.Tensor) -> dict[str, Any]:
    from xinc.train.metrics import psnr_8bit, psnr_float

    pred = _reconstruct(model, frames)
    p8, pf = psnr_8bit(pred, images), psnr_float(pred, images)
    return {"frames": frames, "psnr_8bit": p8.tolist(), "psnr_float": pf.tolist(),
            "mean_psnr_8bit": float(p8.mean()), "mean_psnr_float": float(pf.mean())}


def _canvas_section(model, layers: list[str], log: dict[str, dict[str, Any]], modes: list[str]) -> dict[str, Any]:
    """{layer: {exact, rule, num_neurons, residual, modes: {mode: ...}}}; the first mode fills the top level."""
    from xinc.canvas import layer_info
    from xinc.canvas.reduce import residual_exact, worst_residual

    out = {}
    for layer in layers:
        per = {}
        for m in modes:
            entry = log.get(f"{m}/{layer}")
            if (not entry or "rule" not in entry) and not protocol.is_canvas_model(model):
                continue  # a foreign model's layer no analysis streamed: nothing measured to report
            if not entry or "rule" not in entry:
                info = layer_info(model, layer, mode=m)
                entry = {"exact": bool(info.exact), "rule": info.rule, "num_neurons": int(info.num_neurons),
                         "residual": {}, "notes": getattr(info, "notes", ""), "identity": info.identity,
                         "gap_of": info.gap_of}
            per_frame = entry.get("residual", {})
            exact = bool(entry["exact"]) and all(residual_exact(r) for r in per_frame.values())
            per[m] = {"exact": exact, "rule": entry["rule"], "num_neurons": entry["num_neurons"],
                      "identity": entry.get("identity", ""), "gap_of": entry.get("gap_of", ""),
                      "residual": {**worst_residual(per_frame), "per_frame": per_frame},
                      "notes": entry.get("notes", "")}
        out[layer] = {**per[modes[0]], "modes": per}
    return out


def _select(o: AnalyzeConfig, registered: dict) -> tuple[list[str], bool]:
    if o.analyses is None or o.analyses.strip() == "all":
        return sorted(registered), False
    ids = [a.strip().lower() for a in o.analyses.split(",") if a.strip()]
    unknown = [a for a in ids if a not in registered]
    if unknown:
        raise XincError(f"--analyses: unknown or unavailable analysis {unknown[0]!r} ; choose from "
                        f"{', '.join(sorted(registered))}")
    return list(dict.fromkeys(ids)), True


def _options(o: AnalyzeConfig, extra: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Per-analysis options from `extra` ({aid: {name: value}}) and --option (which wins), typed and checked now,
    before any work starts."""
    from xinc.analysis.registry import make_options, parse_option_items

    options: dict[str, Any] = {aid: dict(kv) for aid, kv in (extra or {}).items()}
    for aid, kv in parse_option_items(o.option).items():
        options.setdefault(aid, {}).update(kv)
    options.setdefault("a3", {}).setdefault("sample_neurons", o.sample_neurons)
    return {aid: make_options(aid, given) for aid, given in options.items()}


def _skip_reason(a, data: dict[str, Any]) -> str | None:
    if a.needs_panoptic and data["panoptic"] is None:
        return "needs panoptic labels: give --dataset/--root/--video"
    if a.needs_video and len(data["frames"]) < 2:
        return "needs at least two frames (a NeRV and --frames with 2+ indices)"
    if a.needs_flow and data.get("flow") is None and len(data["frames"]) < 2:
        return "needs optical flow between two or more frames"
    return None


def _run_foreign(o: AnalyzeConfig, ids: list[str], explicit: bool, options: dict, found: dict, device,
                 command: str, draw) -> dict[str, Any]:
    """`xinc analyze --model module:factory`: the analyses that need no labels or video, on the model's own
    output (one frame) with canvases from the generic engine (xinc.explain)."""
    from xinc.analysis.registry import AnalysisContext, variants
    from xinc.canvas.generic import arrange, resolve_layout
    from xinc.canvas.source import ForeignSource
    from xinc.validate import names_list

    source = ForeignSource(device, o)
    layers = names_list(o.layers, "--layers", source.names) or source.names
    with torch.no_grad():
        out = source.model(*[x.to(device) if isinstance(x, torch.Tensor) else x for x in source.inputs])
    img = arrange(out[None], resolve_layout(out, "auto", None), None)[0].float().cpu()
    if img.shape[0] != 3:
        raise XincError(f"--model: output has {img.shape[0]} channels ; the analyses compare canvases with an RGB "
                        "image")
    data = {"frames": [0], "images": img.clamp(0, 1)[None], "panoptic": None, "flow": None,
            "summary": {"kind": "model output", "frames": [0], "size": list(img.shape[-2:])}}
    run_ids, skipped = _runnable(ids, explicit, data, found)
    resolved = {**as_json(o), "device": str(device), "layers": layers, "frames": [0],
                "analyses": run_ids, "skipped": skipped, "options": to_jsonable(options), "command": command}
    results: dict[str, Any] = {"model": {**source.model_cfg, "layers": source.names,
                                         "params": int(sum(p.numel() for p in source.model.parameters()))},
                               "data": data["summary"], "skipped": skipped}
    with owned_output(o.out, inputs=[p for p in (o.weights, o.inputs) if p is not None], overwrite=o.overwrite,
                      kind="analyze") as stage:
        write_json(stage / "config.json", resolved)
        ctx = AnalysisContext(model=source.model, model_dir=None, layers=layers, frames=[0], images=data["images"],
                              out=stage, mode=o.mode, seed=o.seed, device=device, chunk_neurons=o.chunk_neurons,
                              memory_budget_mb=o.memory_budget_mb, inputs=source.inputs,
                              canvas_options={"output": o.output})
        results.update(_analyse(ctx, run_ids, options, found, o.progress, draw))
        results["canvas"] = _canvas_section(source.model, layers, ctx.canvas_log, [c for _, c in variants(o.mode)])
        order = ["model", "data", "canvas", "skipped", *run_ids]
        results = {k: results[k] for k in order if k in results}
        write_json(stage / "results.json", results)
    return results


def _layers(o: AnalyzeConfig, model) -> list[str]:
    layers = list(model.layer_names)
    if not o.layers:
        return layers
    want = [s.strip() for s in o.layers.split(",") if s.strip()]
    bad = [s for s in want if s not in layers]
    if bad:
        raise XincError(f"--layers: {bad[0]!r} is not a canvas layer of this model ; choose from {', '.join(layers)}")
    return want


def _runnable(ids: list[str], explicit: bool, data: dict[str, Any], found: dict,
              quiet: bool = False) -> tuple[list[str], dict]:
    """(analyses that can run on `data`, {skipped id: reason}); a skip is printed unless `quiet`."""
    run_ids, skipped = [], {}
    for aid in ids:
        reason = _skip_reason(found[aid], data)
        if reason and explicit:
            raise XincError(f"--analyses {aid}: {reason}")
        if reason:
            skipped[aid] = reason
            if not quiet:
                print(f"xinc analyze: skipping {aid} ({found[aid].title}): {reason}", file=sys.stderr)
        else:
            run_ids.append(aid)
    return run_ids, skipped


def _analyse(ctx, run_ids: list[str], options: dict[str, Any], found: dict, progress: bool,
             draw) -> dict[str, Any]:
    """Run each analysis (one progress bar each), save its data, draw its figures; the results.json sections."""
    from tqdm.auto import tqdm

    from xinc.analysis.registry import run as run_analyses

    sections = {}
    # the analyses streaming each layer most often first: the canvas memo then keeps every frame's heat map and
    # totals on the side, and single-pass heat/totals analyses (A1) replay them instead of recomputing the maps
    for aid in sorted(run_ids, key=lambda a: -found[a].streams):
        bar = tqdm(desc=f"{aid} {found[aid].title}", unit="map", disable=not progress, dynamic_ncols=True,
                   file=sys.stderr)
        ctx.progress = bar.update
        try:
            res = run_analyses(ctx, [aid], {aid: options.get(aid)})[aid]
        finally:
            bar.close()
        figs = draw(aid, res, ctx.out) if draw is not None else []
        sections[aid] = {**res.section(found[aid].title), "figures": [f.as_json(ctx.out) for f in figs]}
    return sections


def _sample_frames(data: dict[str, Any], n: int | None, seed: int, chosen_by: str | None = None) -> dict[str, Any]:
    """A seeded random subset of n of the selected frames (sorted), images aligned; flow dropped unless the
    subset is still consecutive (A4 then estimates it). `chosen_by="auto"`: n came from --sample-frames auto."""
    if n is None:
        return data
    frames = data["frames"]
    if n < 1:
        raise XincError(f"--sample-frames {n}: must be a positive integer")
    if n >= len(frames):
        return data
    pick = sorted(torch.randperm(len(frames), generator=torch.Generator().manual_seed(seed))[:n].tolist())
    out = {**data, "frames": [frames[i] for i in pick], "images": data["images"][pick]}
    consecutive = all(b == a + 1 for a, b in zip(out["frames"][:-1], out["frames"][1:]))
    if data.get("flow") is not None:
        out["flow"] = data["flow"][pick[:-1]] if consecutive and pick == list(range(pick[0], pick[-1] + 1)) else None
    out["summary"] = {**data["summary"], "frames": out["frames"],
                      "sampled": f"{n} of {len(frames)} frames, seeded (--seed {seed})"
                                 + (", chosen by --sample-frames auto (every frame: --sample-frames all)"
                                    if chosen_by == "auto" else ""),
                      "sampling": {"frames": out["frames"], "n": n, "of": len(frames), "population": list(frames),
                                   "seed": seed, "method": METHOD,
                                   "chosen_by": "--sample-frames auto" if chosen_by == "auto" else "--sample-frames"}}
    return out


def _frame_estimates(results: dict[str, Any], run_ids: list[str]) -> list[str]:
    """With sampled frames: the mean of every per-frame statistic with its standard error and 95 % interval
    (finite-population correction; xinc.analysis.estimates) added in place; returns the summary lines."""
    samp = results["data"].get("sampling")
    if not samp:
        return []
    N = samp["of"]
    rec = results["reconstruction"]
    rec["estimate"] = {k: mean_estimate(rec[k], N) for k in ("psnr_8bit", "psnr_float")}
    added = sum(add_frame_estimates(results[aid], N) for aid in run_ids if aid in results)
    samp["estimates"] = added + 1
    return [f"frames sampled: {samp['n']} of {N} (seed {samp['seed']}); per-frame means carry SE and 95% intervals "
            f"({added + 1} statistics groups in results.json, key 'estimate')",
            estimate_line("mean PSNR (8-bit)", rec["estimate"]["psnr_8bit"], " dB")]


def _passes(c, frames: int, run_ids: list[str], memo_bytes: float) -> int:
    """Times the run's full-canvas analyses stream one (layer, mode) canvas per frame: once when the memo holds
    the layer's frames, else once per pass (A2: STREAMS, else 2)."""
    from xinc.analysis.distributed import STREAMS

    if c.bytes_per_frame * frames <= memo_bytes:
        return 1
    return STREAMS if "a2" in run_ids else 2


def _canvas_seconds(c, frames: int, run_ids: list[str], options: dict[str, Any],
                    memo_bytes: float) -> tuple[float, str]:
    """(seconds, what they cover) of one (layer, mode) canvas for the run: every analysis but A7 streams the
    whole canvas of every frame (once when the memo holds it, else once per pass: A2 up to 4); A7 follows its
    options (xinc.analysis.faithfulness.canvas_need: sampled maps only outside a7.rank_modes, a7.frames frames)."""
    from xinc.canvas.cost import format_seconds

    full = [a for a in run_ids if a != "a7"]
    passes = _passes(c, frames, run_ids, memo_bytes)
    secs, notes = 0.0, []
    if full:
        secs += c.seconds_per_frame * frames * passes
        notes.append(f"{format_seconds(c.seconds_per_frame)} per frame x {frames} frame(s)"
                     + ("" if passes == 1 else f" x up to {passes} passes (over --memo-mb)"))
    if "a7" in run_ids:
        from xinc.analysis.faithfulness import canvas_need
        from xinc.analysis.registry import make_options

        maps, n7 = canvas_need(options.get("a7") or make_options("a7", {}), frames, c.mode, c.neurons)
        if maps < c.neurons:
            secs += c.seconds_for(maps) * n7
            notes.append(f"A7 {maps} sampled maps x {n7} frame(s): {format_seconds(c.seconds_for(maps) * n7)}")
        elif not (full and passes == 1):  # else A7's frames come from the memo
            secs += c.seconds_per_frame * n7
            notes.append(f"A7 {format_seconds(c.seconds_per_frame)} per frame x {n7} frame(s)")
    return secs, "; ".join(notes)


def probe_costs(model, layers: list[str], modes: list[str], frame: int) -> list:
    """Each (layer, mode) canvas's per-frame cost (xinc.canvas.cost.estimate), probe-timed once per run."""
    from xinc.canvas.cost import estimate

    return [estimate(model, layer, mode, frame, probe_seconds=0.1) for layer in layers for mode in modes]


def _cost_lines(model, costs: list, frames: int, run_ids: list[str], memo_mb: float, device,
                options: dict[str, Any] | None = None) -> tuple[float, list[str]]:
    """(estimated seconds, lines saying so) of `frames` frames: each probed canvas scaled to what the run's
    analyses compute of it (_canvas_seconds), plus A2's own statistics (and what its opt-in neurons-needed
    statistic would add)."""
    from xinc.analysis.distributed import work_with_options
    from xinc.canvas.cost import format_seconds

    total, lines, optin = 0.0, [], 0.0
    for c in costs:
        secs, what = _canvas_seconds(c, frames, run_ids, options or {}, memo_mb * 2**20)
        total += secs
        a2 = ""
        if "a2" in run_ids:  # A2's per-pixel statistics over every map, on top of the canvases
            w, more = work_with_options((options or {}).get("a2"), c.neurons, model.config.height,
                                        model.config.width, frames, device)
            total, optin = total + w, optin + more
            a2 = f"; A2 statistics {format_seconds(w)}"
        lines.append(f"  {c.layer:8s} {c.mode:6s} {c.neurons:7d} maps: {what}" + a2)
    head = (f"xinc analyze: estimated cost {format_seconds(total)} on {device} (probe-timed under this machine's "
            "current load: canvases" + (" and A2's statistics" if "a2" in run_ids else "") + "; other analyses' own "
            "work comes on top)")
    tips = ["  to cut it: --sample-frames N (seeded frame subset), --frames, --layers, --mode paper, --memo-mb, "
            "or --device cuda on a GPU machine" + (", --option a7.rank_modes=paper (A7 samples the linear maps)"
                                                  if "a7" in run_ids else "")]
    if optin > 0:
        tips.append(f"  A2 neurons-needed (opt-in, --option a2.neurons_needed=true): +{format_seconds(optin)}")
    return total, [head, *lines, *tips]


def _frame_count(o: AnalyzeConfig, model, costs: list, data: dict[str, Any], selection: tuple, memo_mb: float,
                 device, options: dict[str, Any]) -> tuple[int | None, list[str]]:
    """(frames to sample or None for all, the line saying so when `--sample-frames auto` samples). Auto samples
    only on CPU, when --frames was not given and the run's canvas values exceed AUTO_VALUES."""
    from xinc.canvas.cost import format_seconds

    if isinstance(o.sample_frames, int):
        return o.sample_frames, []
    T = len(data["frames"])
    if o.sample_frames == "all" or o.frames is not None or torch.device(device).type != "cpu":
        return None, []
    run_ids, _ = _runnable(*selection[:2], data, selection[2], quiet=True)  # printed once, after sampling
    n = auto_frame_count(costs, T, run_ids, memo_mb)
    if n >= T:
        return None, []
    full = _cost_lines(model, costs, T, run_ids, memo_mb, device, options)[0]
    return n, [f"xinc analyze: --sample-frames auto (the default): analysing a seeded sample of {n} of the {T} "
               f"frames (--seed {o.seed}), which keeps this CPU run within {AUTO_VALUES:.2g} canvas values; per-frame "
               "statistics carry standard errors and 95 % intervals. Every frame: --sample-frames all (estimated "
               f"{format_seconds(full)} on {device}), or --device cuda on a GPU machine"]


def canvas_values(costs: list, frames: int, run_ids: list[str], memo_mb: float) -> float:
    """Canvas values the run streams over `frames` frames: maps x pixels of every (layer, mode), once when the
    memo holds the layer's frames, else once per pass (A2: 4, else 2); A7-only runs are not counted."""
    if not [a for a in run_ids if a != "a7"]:
        return 0.0
    return sum(c.bytes_per_frame / 4 * frames * _passes(c, frames, run_ids, memo_mb * 2**20) for c in costs)


def auto_frame_count(costs: list, frames: int, run_ids: list[str], memo_mb: float,
                     budget: float | None = None) -> int:
    """`--sample-frames auto`: all `frames` when their canvas values fit `budget` (default AUTO_VALUES), else the
    most frames that do (at least 2, so that the sample has a standard error). A count of values, not a timing:
    the same on every machine and under any load."""
    budget = AUTO_VALUES if budget is None else budget
    if frames <= 2 or canvas_values(costs, frames, run_ids, memo_mb) <= budget:
        return frames
    n = frames - 1
    while n > 2 and canvas_values(costs, n, run_ids, memo_mb) > budget:
        n -= 1
    return n


def analyze(o: AnalyzeConfig, *, command: str | None = None, options: dict[str, dict[str, Any]] | None = None,
            draw: Callable | None | str = "report") -> dict[str, Any]:
    """Run the analyses of `o` on its model and data into o.out (results.json, data/, tables/, figures/,
    config.json); return what results.json holds (with `estimate_only`: {"estimate": lines}, nothing written).

    `options` ({aid: {name: value}}) are per-analysis options given as data (e.g. a pipeline's table); the
    items of `o.option` override them. `draw(aid, result, out)` makes each analysis' figures: by default
    `xinc.report.plots.draw` (the registered plots); None writes data only (figures can be drawn later from the
    saved run). `command` is recorded in config.json (default: the equivalent `xinc analyze` command line).
    """
    from xinc.analysis.registry import AnalysisContext, discover, normalize_mode, variants
    from xinc.canvas.memo import CanvasMemo
    from xinc.memory import budget_mb, chunk_mb_within, memo_mb_within, rss_limit_mb
    from xinc.models.io import load_model, read_model_dir_config

    o.check_paths()
    o = dataclasses.replace(o, mode=normalize_mode(o.mode))
    command = command or command_line("xinc analyze", o, positional=("model_dir",))
    if draw == "report":
        from xinc.report.plots import draw
    found = discover()
    ids, explicit = _select(o, found)
    options = _options(o, options)
    device = resolve_device(o.device)
    seed_everything(o.seed)
    if o.model is not None:
        return _run_foreign(o, ids, explicit, options, found, device, command, draw)
    model = load_model(o.model_dir, device)
    cfg = read_model_dir_config(o.model_dir)
    layers = _layers(o, model)
    data = _load_data(o, model, cfg)
    memo_mb = memo_mb_within(o.memo_mb)
    costs = probe_costs(model, layers, [c for _, c in variants(o.mode)], data["frames"][0])
    n, auto = _frame_count(o, model, costs, data, (ids, explicit, found), memo_mb, device, options)
    data = _sample_frames(data, n, o.seed, chosen_by="auto" if auto else None)
    run_ids, skipped = _runnable(ids, explicit, data, found)
    from xinc.analysis.registry import UNAVAILABLE

    cost = _cost_lines(model, costs, len(data["frames"]), run_ids, memo_mb, device, options)
    if o.estimate_only or cost[0] > 30 or auto:
        print("\n".join(auto + cost[1]), file=sys.stderr, flush=True)
    if o.estimate_only:
        return {"estimate": auto + cost[1]}

    resolved = {**as_json(o), "device": str(device), "layers": layers, "frames": data["frames"],
                "analyses": run_ids, "skipped": skipped, "options": to_jsonable(options), "command": command,
                "optional_modules_missing": sorted(UNAVAILABLE),
                "memory": {"budget_mb": budget_mb(), "memo_mb": memo_mb,
                           "memory_budget_mb": chunk_mb_within(o.memory_budget_mb)}}
    modes = [c for _, c in variants(o.mode)]
    results: dict[str, Any] = {
        "model": {"dir": str(o.model_dir), "kind": model.config.kind,
                  "params": int(sum(p.numel() for n, p in model.named_parameters())),
                  "config": cfg.get("model", {}), "layers": list(model.layer_names)},
        "data": data["summary"],
        "reconstruction": _psnr(model, data["frames"], data["images"]),
        "skipped": skipped,
    }
    with owned_output(o.out, inputs=[o.model_dir, o.root, o.data], overwrite=o.overwrite, kind="analyze") as stage:
        write_json(stage / "config.json", resolved)
        ctx = AnalysisContext(model=model, model_dir=Path(o.model_dir), layers=layers, frames=data["frames"],
                              images=data["images"], out=stage, panoptic=data["panoptic"], flow=data.get("flow"),
                              mode=o.mode, seed=o.seed, device=device, chunk_neurons=o.chunk_neurons,
                              memory_budget_mb=chunk_mb_within(o.memory_budget_mb),
                              memo=CanvasMemo(memo_mb, rss_limit_mb=rss_limit_mb()))
        results.update(_analyse(ctx, run_ids, options, found, o.progress, draw))
        results["canvas"] = _canvas_section(model, layers, ctx.canvas_log, modes)
        order = ["model", "data", "reconstruction", "canvas", "skipped", *run_ids]
        results = {k: results[k] for k in order if k in results}
        lines = _frame_estimates(results, run_ids)
        if lines:
            results["data"]["sampling"]["summary"] = lines
        write_json(stage / "results.json", results)
    return results
