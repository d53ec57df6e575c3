"""`run_canvas(cfg)`: every neuron's contribution map of chosen layers/frames into a zarr store (`xinc canvas`)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from xinc import __version__
from xinc.canvas.config import CanvasConfig
from xinc.canvas.engine import stream_canvas
from xinc.canvas.reduce import HeatMap, LayerInfo, NeuronTotals, completeness_line, residual_exact
from xinc.canvas.store import STORE_NAME, ZarrWriter, open_layer
from xinc.config import as_json, command_line
from xinc.outputs import check_disk, clear_stage, owned_output
from xinc.threads import release_freed_memory
from xinc.utils import read_json, resolve_device, to_jsonable, write_json
from xinc.validate import names_list


def _run_config(cfg: CanvasConfig, model_cfg: dict, layers: list[str], frames: list[int], device: str,
                command: str) -> dict:
    return {
        "command": command, "config": as_json(cfg), "xinc_version": __version__,
        "model_dir": None if cfg.model_dir is None else str(Path(cfg.model_dir).resolve()),
        "model": model_cfg, "layers": layers, "frames": frames,
        "mode": cfg.mode, "device": device, "chunk_neurons": cfg.chunk_neurons,
        "memory_budget_mb": cfg.memory_budget_mb, "dtype": cfg.dtype, "per_channel": cfg.per_channel,
        "maps": cfg.maps, "top": cfg.top,
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


def run_canvas(cfg: CanvasConfig, *, command: str | None = None, verbose: bool = True) -> Path:
    """Compute the canvases `cfg` asks for into cfg.out (OUT/canvas.zarr, figures/, config.json); returns cfg.out.

    Paths are checked before any work; an interrupted run resumes frame by frame from OUT.partial. `command` is
    recorded in config.json (default: the equivalent `xinc canvas` command line).
    """
    import zarr

    from xinc.canvas.source import open_source

    cfg.check_paths()
    device = resolve_device(cfg.device)
    source = open_source(cfg, device, stream_canvas)  # looked up per call (tests patch it)
    layers = names_list(cfg.layers, "--layers", source.names) or source.names
    frames = source.frames(cfg.frames)
    infos = {name: source.info(name) for name in layers}
    record = _run_config(cfg, source.model_cfg, layers, frames, str(device),
                         command or command_line("xinc canvas", cfg, positional=("model_dir",)))
    if cfg.maps:
        per_frame = sum(i.num_neurons * i.height * i.width for i in infos.values())
        need = per_frame * len(frames) * np.dtype(cfg.dtype).itemsize * (3 if cfg.per_channel else 1)
        check_disk(cfg.out, need, "canvas store")
    with owned_output(cfg.out, inputs=cfg.inputs_read(), overwrite=cfg.overwrite, resume=True,
                      kind="canvas") as stage:
        old = stage / "config.json"
        if not (old.is_file() and _same_run(read_json(old), record)):
            clear_stage(stage)  # a different unfinished run (or none): start over
        write_json(stage / "config.json", record)
        root = zarr.open_group(str(stage / STORE_NAME), mode="a")
        root.attrs.update(to_jsonable({
            "xinc_version": __version__, "model_dir": record["model_dir"], "model": source.model_cfg, "run": record,
            "layers": layers, "frames": frames, "neuron_index": {n: i.neuron_index for n, i in infos.items()},
        }))
        _fill_store(root, cfg, source, infos, frames)
        release_freed_memory()  # the streaming's kept blocks do not fit the grids' maps (a 640x1280 run: +1.4 GB)
        figures = _grids(root, stage, layers, cfg.top, source)
        measured = {name: all(map(residual_exact, root[name].attrs["residual"].values())) for name in layers}
        summary = {name: {"rule": infos[name].rule, "exact": infos[name].exact and measured[name],
                          "identity": infos[name].identity, "gap_of": infos[name].gap_of,
                          "num_neurons": infos[name].num_neurons, "neuron_index": infos[name].neuron_index,
                          "residual": dict(root[name].attrs["residual"]), "figure": figures[name]}
                   for name in layers}
        record["layers_summary"] = summary
        write_json(stage / "config.json", record)
        root.attrs.update(to_jsonable({"layer_info": summary}))
    if verbose:
        for name in layers:
            print(f"{name}: {infos[name].num_neurons} neurons x {len(frames)} frame(s), rule {infos[name].rule}, "
                  + completeness_line(infos[name], summary[name]["residual"]))
    return Path(cfg.out)


def _fill_store(root, cfg: CanvasConfig, source, infos: dict[str, LayerInfo], frames: list[int]) -> None:
    """Stream every frame not yet done into the store (a frame is complete once listed in frames_done)."""
    from tqdm import tqdm

    slot = {f: j for j, f in enumerate(frames)}
    todo = {}
    for name, info in infos.items():
        grp = open_layer(root, info, frames, cfg.dtype, maps=cfg.maps)
        done = set(int(f) for f in grp.attrs.get("frames_done", []))
        todo[name] = [f for f in frames if f not in done]
    total = sum(infos[n].num_neurons * len(fs) for n, fs in todo.items())
    bar = tqdm(total=total, unit="map", desc="canvas", disable=not cfg.progress, file=sys.stderr)
    try:
        for name, fs in todo.items():
            grp = root[name]
            for f in fs:
                heat, tot = HeatMap(), NeuronTotals()
                reducers = [heat, tot]  # alone, the rules reduce them without forming maps (fused)
                if cfg.maps:
                    reducers.append(ZarrWriter(grp["maps"], slot, np.dtype(cfg.dtype)))
                res = source.stream(name, f, reducers, bar.update)
                grp["heat"][slot[f]] = heat.result()[f].numpy()
                grp["totals"][slot[f]] = tot.result()[f].numpy()
                residual = dict(grp.attrs["residual"])
                residual[str(f)] = res
                grp.attrs.update({"residual": to_jsonable(residual),
                                  "frames_done": sorted(set(grp.attrs["frames_done"]) | {f})})
    finally:
        bar.close()
