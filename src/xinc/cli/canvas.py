"""`xinc canvas MODEL_DIR --out OUT`: every neuron's contribution map of chosen layers/frames into a zarr store."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import tyro

from xinc import __version__
from xinc.canvas import HeatMap, LayerInfo, NeuronTotals, stream_canvas
from xinc.canvas.reduce import completeness_line, residual_exact
from xinc.canvas.store import STORE_NAME, ZarrWriter, open_layer
from xinc.cli.common import parse
from xinc.errors import XincError
from xinc.outputs import check_disk, clear_stage, owned_output
from xinc.utils import read_json, resolve_device, to_jsonable, write_json
from xinc.validate import finite_positive, names_list, optional, path_in, path_out, positive_int


@dataclass
class CanvasOptions:
    """Compute implicit neural canvases (every neuron's signed contribution map) into OUT/canvas.zarr.

    Neurons are flattened c_in-major (k = c_in*C_out + c_out for conv layers, k = c_in for MLP layers).
    The store is written in OUT.partial and renamed to OUT when complete; an interrupted run resumes
    from OUT.partial frame by frame when rerun with the same options. A PNG grid of each layer's
    strongest neurons goes to OUT/figures/.
    """

    out: Path
    """output folder (holds config.json, canvas.zarr/ and figures/)"""
    model_dir: tyro.conf.Positional[Path | None] = None
    """model directory written by `xinc train` or `xinc import` (or use --model for any PyTorch model)"""
    model: str | None = None
    """a foreign model instead of MODEL_DIR: package.module:factory, a function returning the torch.nn.Module
    (imported from the current directory first; its code runs)"""
    weights: Path | None = None
    """safetensors state dict loaded into --model (strict)"""
    grid: str | None = None
    """HxW: feed --model an (H, W, 2) coordinate grid, each axis linspace(-1, 1)"""
    inputs: Path | None = None
    """safetensors file of --model's forward arguments (input0, input1, ... or one tensor)"""
    output: str | None = None
    """--model: module path whose output the canvas decomposes (default the model's output)"""
    generic: bool = False
    """--model: linearise operations without a registered kind by torch.func instead of stopping"""
    layers: str | None = None
    """comma-separated layers in paper naming (layer1..3 for the FFN, block1..N and head for NeRV), or Linear/Conv2d
    module paths of a --model; default all"""
    frames: str | None = None
    """frames, e.g. 0,17 or 0-5; default all frames of the video (the FFN has frame 0 only)"""
    mode: Literal["paper", "linear"] = "paper"
    """paper = the paper's rules (approximate for blocks); linear = exact linearised propagation"""
    device: str = "auto"
    """auto | cpu | cuda[:i]"""
    chunk_neurons: int | None = None
    """neurons per computed chunk (default: from the memory budget)"""
    memory_budget_mb: float | None = None
    """working memory per chunk in MiB (default 32 on CPU, where cache-sized chunks are fastest; 1024 on CUDA)"""
    dtype: Literal["float32", "float16"] = "float32"
    """storage dtype of the maps (computation is always float32)"""
    per_channel: bool = False
    """store (K, 3, H, W) per-RGB-channel maps where the rule has them (MLP layers, head, linear-mode blocks)"""
    maps: bool = True
    """store every neuron's map; False stores only the heat map and per-neuron totals, which the rules then
    reduce without forming maps (a whole 640x1280 HNeRV layer in minutes, a few MB on disk)"""
    top: int = 16
    """neurons shown in each layer's PNG grid (strongest by total |C| in the first frame)"""
    overwrite: bool = False
    """replace an existing OUT"""
    progress: bool = True
    """show a tqdm progress bar on stderr"""


def _run_config(opts: CanvasOptions, model_cfg: dict, layers: list[str], frames: list[int], device: str) -> dict:
    return {
        "command": "xinc canvas", "argv": list(sys.argv), "xinc_version": __version__,
        "model_dir": None if opts.model_dir is None else str(opts.model_dir.resolve()),
        "model": model_cfg, "layers": layers, "frames": frames,
        "mode": opts.mode, "device": device, "chunk_neurons": opts.chunk_neurons,
        "memory_budget_mb": opts.memory_budget_mb, "dtype": opts.dtype, "per_channel": opts.per_channel,
        "maps": opts.maps, "top": opts.top,
    }


def _same_run(a: dict, b: dict) -> bool:
    keys = ("model_dir", "model", "layers", "frames", "mode", "dtype", "per_channel", "maps")
    return all(to_jsonable(a.get(k)) == to_jsonable(b.get(k)) for k in keys)


def _save_grid(path: Path, maps: np.ndarray, neurons: list[int], info: LayerInfo, frame: int) -> None:
    """PNG mosaic of signed maps (RdBu, symmetric scale per map) with the neuron index above each tile."""
    from matplotlib import colormaps
    from PIL import Image, ImageDraw

    cmap = colormaps["RdBu_r"]
    n = len(neurons)
    cols = min(4, n)
    rows = (n + cols - 1) // cols
    scale = max(1, int(np.ceil(96 / min(info.height, info.width)))) if min(info.height, info.width) < 96 else 1
    th, tw, pad, label = info.height * scale, info.width * scale, 4, 14
    canvas = Image.new("RGB", (cols * (tw + pad) + pad, rows * (th + pad + label) + pad + label), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((pad, 1), f"{info.name} ({info.mode}, frame {frame}): top {n} neurons by sum |C|", fill="black")
    for j, (k, m) in enumerate(zip(neurons, maps)):
        lim = float(np.abs(m).max()) or 1.0
        rgb = (cmap((m / lim + 1) / 2)[..., :3] * 255).astype(np.uint8)
        tile = Image.fromarray(rgb).resize((tw, th), Image.NEAREST)
        x, y = pad + (j % cols) * (tw + pad), label + pad + (j // cols) * (th + pad + label)
        canvas.paste(tile, (x, y + label))
        both = info.neuron_index.startswith("k = c_in*")
        draw.text((x, y), f"k={k} ({k // info.c_out},{k % info.c_out})" if both else f"k={k}", fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)


def _grids(root, stage: Path, layers: list[str], top: int, source) -> dict[str, str]:
    """Each layer's PNG grid of its strongest neurons in the first frame (maps read from the store, or
    recomputed for just those neurons when the store has none)."""
    out = {}
    for name in layers:
        grp = root[name]
        info = LayerInfo(**dict(grp.attrs["info"]))
        tot = np.asarray(grp["totals"][0])
        if tot.ndim > 1:
            tot = tot.sum(-1)
        neurons = [int(k) for k in np.argsort(-tot, kind="stable")[:max(1, top)]]
        frame = int(grp["frames"][0])
        if "maps" in grp:
            maps = np.stack([np.asarray(grp["maps"][0, k], dtype=np.float32) for k in neurons])
        else:  # a handful of one-neuron ranges from one forward pass, not a hot path
            maps = source.neuron_maps(name, frame, neurons).numpy()
        if maps.ndim == 4:
            maps = maps.sum(1)
        rel = f"figures/{name}_top.png"
        _save_grid(stage / rel, maps, neurons, info, frame)
        out[name] = rel
    return out


def validate_options(opts: CanvasOptions, paths: bool = True) -> None:
    """Every option checked before the model is loaded (paths=False: the numbers only, e.g. for `xinc run`)."""
    positive_int(opts.top, "--top")
    optional(positive_int, opts.chunk_neurons, "--chunk-neurons")
    optional(finite_positive, opts.memory_budget_mb, "--memory-budget-mb")
    if opts.layers is not None and not [s for s in opts.layers.split(",") if s.strip()]:
        raise XincError(f"--layers {opts.layers!r}: names no layer ; give e.g. layer1,layer2 or leave it out for all")
    if not paths:
        return
    if opts.model_dir is not None:
        path_in(opts.model_dir, "MODEL_DIR", kind="dir")
    for path, flag in ((opts.weights, "--weights"), (opts.inputs, "--inputs")):
        if path is not None:
            path_in(path, flag, kind="file")
    path_out(opts.out, inputs=_inputs(opts), overwrite=opts.overwrite)


def _inputs(opts: CanvasOptions) -> list[Path]:
    """The files and folders this run reads (never written or replaced)."""
    return [p for p in (opts.model_dir, opts.weights, opts.inputs) if p is not None]


def run(argv: list[str], prog: str) -> int:
    """Entry point of `xinc canvas`."""
    import zarr
    from tqdm import tqdm

    from xinc.cli.foreign import open_source

    opts = parse(CanvasOptions, argv, prog)
    out = opts.out
    validate_options(opts)
    device = resolve_device(opts.device)
    source = open_source(opts, device, stream_canvas)
    model_cfg = source.model_cfg
    layers = names_list(opts.layers, "--layers", source.names) or source.names
    frames = source.frames(opts.frames)
    infos = {name: source.info(name) for name in layers}
    cfg = _run_config(opts, model_cfg, layers, frames, str(device))

    if opts.maps:
        per_frame = sum(i.num_neurons * i.height * i.width for i in infos.values())
        need = per_frame * len(frames) * np.dtype(opts.dtype).itemsize * (3 if opts.per_channel else 1)
        check_disk(out, need, "canvas store")
    with owned_output(out, inputs=_inputs(opts), overwrite=opts.overwrite, resume=True, kind="canvas") as stage:
        old = stage / "config.json"
        if not (old.is_file() and _same_run(read_json(old), cfg)):
            clear_stage(stage)  # a different unfinished run (or none): start over
        write_json(stage / "config.json", cfg)
        root = zarr.open_group(str(stage / STORE_NAME), mode="a")
        root.attrs.update(to_jsonable({
            "xinc_version": __version__, "model_dir": cfg["model_dir"], "model": model_cfg, "run": cfg,
            "layers": layers, "frames": frames, "neuron_index": {n: i.neuron_index for n, i in infos.items()},
        }))
        slot = {f: j for j, f in enumerate(frames)}
        todo = {}
        for name, info in infos.items():
            grp = open_layer(root, info, frames, opts.dtype, maps=opts.maps)
            done = set(int(f) for f in grp.attrs.get("frames_done", []))
            todo[name] = [f for f in frames if f not in done]
        total = sum(infos[n].num_neurons * len(fs) for n, fs in todo.items())
        bar = tqdm(total=total, unit="map", desc="canvas", disable=not opts.progress, file=sys.stderr)
        try:
            for name, fs in todo.items():
                grp = root[name]
                for f in fs:  # one frame at a time: a frame is complete once listed in frames_done
                    heat, tot = HeatMap(), NeuronTotals()
                    reducers = [heat, tot]  # alone, the rules reduce them without forming maps (fused)
                    if opts.maps:
                        reducers.append(ZarrWriter(grp["maps"], slot, np.dtype(opts.dtype)))
                    res = source.stream(name, f, reducers, bar.update)
                    grp["heat"][slot[f]] = heat.result()[f].numpy()
                    grp["totals"][slot[f]] = tot.result()[f].numpy()
                    residual = dict(grp.attrs["residual"])
                    residual[str(f)] = res
                    grp.attrs.update({"residual": to_jsonable(residual),
                                      "frames_done": sorted(set(grp.attrs["frames_done"]) | {f})})
        finally:
            bar.close()
        figures = _grids(root, stage, layers, opts.top, source)
        measured = {name: all(map(residual_exact, root[name].attrs["residual"].values())) for name in layers}
        summary = {name: {"rule": infos[name].rule, "exact": infos[name].exact and measured[name],
                          "identity": infos[name].identity, "gap_of": infos[name].gap_of,
                          "num_neurons": infos[name].num_neurons, "neuron_index": infos[name].neuron_index,
                          "residual": dict(root[name].attrs["residual"]), "figure": figures[name]}
                   for name in layers}
        cfg["layers_summary"] = summary
        write_json(stage / "config.json", cfg)
        root.attrs.update(to_jsonable({"layer_info": summary}))
    for name in layers:
        print(f"{name}: {infos[name].num_neurons} neurons x {len(frames)} frame(s), rule {infos[name].rule}, "
              + completeness_line(infos[name], summary[name]["residual"]))
    print(f"wrote {out / STORE_NAME}")
    return 0
