"""The whole pipeline as a Python API: data -> train -> canvas -> analyze -> compare -> report.

Every step is one `xinc` command (run in-process, recorded verbatim so the report can show how to
reproduce it) writing one output folder atomically. A step is skipped when its folder exists and its
completion marker (<out>/.steps/<step>.json) holds the same parameters; with different parameters
the folder is rebuilt. So re-running a config after an interruption (or after adding clips) only
does the missing work.

Layout of a pipeline run (one folder per clip, `xinc run`):
    OUT/config.json                resolved pipeline config + every command run
    OUT/data/                      generated synthetic dataset (when the config asks for one)
    OUT/<clip>/models/{ffn,nerv}/  trained models (`xinc train`)
    OUT/<clip>/canvas/{ffn,nerv}/  canvas store of the analysed frame + PNG grids (`xinc canvas`)
    OUT/<clip>/{ffn,nerv}/         analyze runs (`xinc analyze`): results.json, figures/, tables/
    OUT/<clip>/comparison.json     A6 neuron clusters compared across the two architectures
    OUT/<clip>/report.html         one self-contained report per clip
    OUT/report.html                all clips in one report
The demo (`xinc demo --out DIR`) is the same for one synthetic clip, flattened into DIR.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xinc.data.datasets import discover as discover_datasets
from xinc.errors import XincError
from xinc.outputs import claimed_folder
from xinc.utils import read_json, to_jsonable, write_json
from xinc.validate import plain_name

FIRST_ANNOTATED = {name: r.first_annotated for name, r in discover_datasets().items()}  # the dataset registry
MODELS = ("ffn", "nerv")


# ----------------------------------------------------------------------------- configs


@dataclass
class SyntheticSpec:
    """Generate a synthetic dataset (xinc synth) into OUT/data before the pipeline runs."""

    videos: int = 2
    frames: int = 10
    seed: int = 0
    pan: float = 0.0
    things: int | None = None
    size: list[int] | None = None  # generated size; None = the pipeline's size


@dataclass
class PipelineConfig:
    """One pipeline run over clips of a dataset (JSON/TOML keys = these fields)."""

    out: str = "runs/pipeline"
    dataset: str = "cityscapes-vps"  # cityscapes-vps | vipseg
    root: str | None = None  # dataset root (None with `synthetic`: OUT/data)
    videos: list[str] | str = "all"  # clip ids, or "all"
    synthetic: SyntheticSpec | None = None
    size: list[int] = field(default_factory=lambda: [64, 128])  # (H, W) of models and analyses
    seed: int = 0
    device: str = "auto"
    models: list[str] = field(default_factory=lambda: list(MODELS))
    ffn: dict[str, Any] = field(default_factory=dict)  # `xinc train ffn` options, e.g. {"steps": 1000}
    nerv: dict[str, Any] = field(default_factory=dict)  # `xinc train nerv` options, e.g. {"epochs": 300}
    canvas: dict[str, Any] = field(default_factory=lambda: {"mode": "paper", "top": 12})  # `xinc canvas` options
    analyze: dict[str, Any] = field(default_factory=lambda: {"analyses": "all", "mode": "both"})
    analyze_options: dict[str, dict[str, Any]] = field(default_factory=dict)  # {aid: {name: value}} extras
    layers: dict[str, str] = field(default_factory=dict)  # analysed layers per model, e.g. {"nerv": "block3,head"}
    compare: bool = True  # A6 comparison FFN vs NeRV on the FFN's frame
    report: bool = True
    progress: bool = True


def _from_dict(cls, d: dict[str, Any], where: str):
    """Build a dataclass from a dict, rejecting unknown keys with the list of known ones."""
    names = {f.name for f in dataclasses.fields(cls)}
    bad = sorted(set(d) - names)
    if bad:
        raise XincError(f"{where}: unknown key {bad[0]!r}; known keys: {', '.join(sorted(names))}")
    return cls(**d)


def load_config(path: str | Path) -> PipelineConfig:
    """Read a pipeline config from JSON (or TOML via tomllib) and validate it."""
    path = Path(path)
    if not path.is_file():
        raise XincError(f"{path}: config file not found")
    if path.suffix.lower() == ".toml":
        import tomllib

        try:
            raw = tomllib.loads(path.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise XincError(f"{path}: not valid TOML ({e})") from None
    else:
        raw = read_json(path)
    if not isinstance(raw, dict):
        raise XincError(f"{path}: expected a JSON object of pipeline settings")
    raw = dict(raw)
    if isinstance(raw.get("synthetic"), dict):
        raw["synthetic"] = _from_dict(SyntheticSpec, raw["synthetic"], f"{path}: synthetic")
    cfg = _from_dict(PipelineConfig, raw, str(path))
    validate(cfg, str(path))
    return cfg


_OPTION_CLASSES = {"ffn": ("xinc.cli.train", "TrainFFNOptions"), "nerv": ("xinc.cli.train", "TrainNeRVOptions"),
                   "canvas": ("xinc.cli.canvas", "CanvasOptions"), "analyze": ("xinc.cli.analyze", "AnalyzeOptions")}
_SET_BY_PIPELINE = {"image", "out", "size", "seed", "device", "dataset", "root", "video", "model_dir", "frame",
                    "frames", "layers", "progress", "option", "data"}


def _check_options(key: str, options: Any, where: str) -> None:
    """Reject a `ffn`/`nerv`/`canvas`/`analyze` table that is not a dict or names an unknown option."""
    import importlib

    if not isinstance(options, dict):
        raise XincError(f"{where}: {key} must be a table of `xinc` options, got {options!r}")
    module, name = _OPTION_CLASSES[key]
    known = {f.name for f in dataclasses.fields(getattr(importlib.import_module(module), name))} - _SET_BY_PIPELINE
    bad = sorted(set(options) - known)
    if bad:
        raise XincError(f"{where}: {key}: unknown option {bad[0]!r}; known: {', '.join(sorted(known))}")


# complexity accepted: being rewritten library-first (issue 20)
def validate(cfg: PipelineConfig, where: str = "config") -> None:  # noqa: C901
    """One-line errors for impossible settings, before any work starts (normalises `synthetic`, `videos`, `size`)."""
    if isinstance(cfg.synthetic, dict):
        cfg.synthetic = _from_dict(SyntheticSpec, cfg.synthetic, f"{where}: synthetic")
    if cfg.synthetic is not None and not isinstance(cfg.synthetic, SyntheticSpec):
        raise XincError(f"{where}: synthetic must be a table like {{\"videos\": 2, \"frames\": 10}}")
    if isinstance(cfg.videos, str) and cfg.videos != "all":
        cfg.videos = [v.strip() for v in cfg.videos.split(",") if v.strip()]
    if isinstance(cfg.size, str):
        from xinc.utils import parse_hw

        cfg.size = list(parse_hw(cfg.size, f"{where}: size"))
    if not isinstance(cfg.size, list | tuple) or not all(isinstance(v, int) for v in cfg.size):
        raise XincError(f"{where}: size {cfg.size!r}: expected [H, W] integers")
    if not isinstance(cfg.videos, list | str) or (isinstance(cfg.videos, list) and not cfg.videos):
        raise XincError(f"{where}: videos {cfg.videos!r}: expected \"all\" or a list of clip ids")
    if cfg.dataset not in FIRST_ANNOTATED:
        raise XincError(f"{where}: dataset {cfg.dataset!r}: unknown ; choose {' or '.join(FIRST_ANNOTATED)}")
    if cfg.root is None and cfg.synthetic is None:
        raise XincError(f"{where}: give `root` (a dataset folder) or `synthetic` (generate one)")
    if len(cfg.size) != 2 or min(cfg.size) < 16:
        raise XincError(f"{where}: size {cfg.size}: expected [H, W], both >= 16")
    bad = [m for m in cfg.models if m not in MODELS] if isinstance(cfg.models, list) else [cfg.models]
    if bad or not cfg.models:
        raise XincError(f"{where}: models {cfg.models}: choose from ffn, nerv")
    for key in _OPTION_CLASSES:
        _check_options(key, getattr(cfg, key), where)
    if not isinstance(cfg.analyze_options, dict) or not all(isinstance(v, dict) for v in cfg.analyze_options.values()):
        raise XincError(f"{where}: analyze_options must be {{analysis id: {{name: value}}}}")
    if not isinstance(cfg.layers, dict):
        raise XincError(f"{where}: layers must be {{model: \"layer,...\"}}, e.g. {{\"nerv\": \"block3,head\"}}")


# ----------------------------------------------------------------------------- steps


def xinc_command(args: list[str]) -> str:
    return "xinc " + shlex.join([str(a) for a in args])


def call_xinc(args: list[str]) -> None:
    """Run an `xinc` command in-process (same code path as the shell); errors stay XincError."""
    from xinc.cli.main import COMMANDS, _load

    args = [str(a) for a in args]
    target, _ = COMMANDS[args[0]]
    rest = args[1:]
    if isinstance(target, dict):
        spec, rest, prog = target[rest[0]], rest[1:], f"xinc {args[0]} {rest[0]}"
    else:
        spec, prog = target, f"xinc {args[0]}"
    try:
        rc = int(_load(spec)(rest, prog) or 0)
    except SystemExit as e:  # tyro usage errors
        rc = e.code if isinstance(e.code, int) else 2
    if rc != 0:
        raise XincError(f"step failed (exit {rc}): {xinc_command(args)}")


def confine(root: Path, path: Path, what: str) -> Path:
    """`path` must lie inside the pipeline folder `root` (or be the dataset `root` given by the user)."""
    if not Path(path).resolve().is_relative_to(Path(root).resolve()):
        raise XincError(f"{what}: output {path} lies outside the pipeline folder {root} ; use plain clip ids")
    return Path(path)


class Steps:
    """Runs named steps once: skip when the output exists and the marker holds the same parameters."""

    def __init__(self, root: Path, log: Callable[[str], None] | None = None, outside: tuple[Path, ...] = ()) -> None:
        self.root = Path(root)
        self.outside = tuple(Path(p) for p in outside)  # user-given outputs allowed outside root (synthetic root)
        self.log = log or (lambda s: print(s, file=sys.stderr, flush=True))
        self.commands: list[str] = []
        self.ran: list[str] = []
        self.skipped: list[str] = []

    def marker(self, name: str) -> Path:
        return self.root / ".steps" / f"{name.replace('/', '__')}.json"

    def stamp(self, names: list[str]) -> list[Any]:
        """(key, finish time) of upstream steps: a rebuilt input makes every step after it rebuild too."""
        out = []
        for n in names:
            try:
                m = json.loads(self.marker(n).read_text())
                out.append([n, m.get("key"), m.get("finished"), m.get("seconds")])
            except (OSError, json.JSONDecodeError):
                out.append([n, None])
        return out

    def run(self, name: str, output: Path, params: dict[str, Any], fn: Callable[[], Any],
            command: str | None = None, after: list[str] | None = None) -> bool:
        """Run `fn` unless `output` is complete for these params (and unchanged inputs `after`); True when it ran."""
        if after:
            params = {**params, "after": self.stamp(after)}
        key = hashlib.sha256(json.dumps(to_jsonable(params), sort_keys=True).encode()).hexdigest()[:16]
        mark = self.marker(name)
        if command:
            self.commands.append(command)
        if output.exists() and mark.is_file():
            try:
                same = json.loads(mark.read_text()).get("key") == key
            except (OSError, json.JSONDecodeError):
                same = False
            if same:
                self.log(f"[xinc] {name}: done before, skipped ({output})")
                self.skipped.append(name)
                return False
        if Path(output) not in self.outside:
            confine(self.root, output, name)
        if output.exists() and not mark.is_file():  # never a folder/file that no step of ours wrote
            raise XincError(f"{output}: exists but no earlier pipeline step wrote it ; move it away or choose "
                            "another `out`/`root`")
        self.log(f"[xinc] {name}: {command or 'running'}")
        t0 = time.time()
        fn()
        write_json(mark, {"key": key, "step": name, "output": str(output), "params": to_jsonable(params),
                          "command": command, "seconds": round(time.time() - t0, 2),
                          "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
        self.ran.append(name)
        return True

    def xinc(self, name: str, output: Path, args: list[str], after: list[str] | None = None) -> bool:
        """A step that is one `xinc` command writing `output`."""
        def call() -> None:  # a stale output of ours (Steps.run checked its marker) is replaced by the command
            call_xinc([*args, *(["--overwrite", "True"] if output.exists() else [])])

        return self.run(name, output, {"args": [str(a) for a in args]}, call, xinc_command(args), after)


def _opt_args(options: dict[str, Any]) -> list[str]:
    """{'steps': 100, 'kernel_sizes': [3, 3]} -> ['--steps', '100', '--kernel-sizes', '3', '3']."""
    out = []
    for k, v in options.items():
        flag = "--" + k.replace("_", "-")
        if isinstance(v, list | tuple):
            out += [flag, *[str(x) for x in v]]
        elif isinstance(v, bool):
            out += [flag, str(v)]
        elif v is not None:
            out += [flag, str(v)]
    return out


def _analyze_option_args(options: dict[str, dict[str, Any]]) -> list[str]:
    items = [f"{aid}.{k}={json.dumps(v) if not isinstance(v, str) else v}" for aid, kv in options.items()
             for k, v in kv.items()]
    return ["--option", *items] if items else []


# ----------------------------------------------------------------------------- one clip


def clip_steps(steps: Steps, *, dataset: str, root: Path, video: str, out: Path, size: list[int], seed: int,
               device: str, models: list[str], ffn: dict[str, Any], nerv: dict[str, Any], canvas: dict[str, Any],
               analyze: dict[str, Any], analyze_options: dict[str, dict[str, Any]], compare: bool, report: bool,
               progress: bool, prefix: str | None = "", layers: dict[str, str] | None = None,
               after: list[str] | None = None) -> dict[str, Any]:
    """Train, canvas, analyze (and compare, report) the models of one clip into `out`."""
    from xinc.data.panoptic import load_panoptic_clip

    hw = f"{size[0]}x{size[1]}"
    clip = load_panoptic_clip(dataset, root, video, size=(size[0], size[1]))
    if not clip.annotated:
        raise XincError(f"{dataset} clip {video}: no annotated frame; choose a clip with panoptic labels")
    j = clip.annotated[0]  # the FFN learns the first annotated frame (SPEC 3.1)
    prog = [] if progress else ["--progress", "False"]
    flow_file = Path(root) / "flow_gt" / video / "flow.npy"
    options = {k: dict(v) for k, v in analyze_options.items()}
    if flow_file.is_file():  # synthetic data: A4 scores against the exact flow
        options.setdefault("a4", {}).setdefault("flow_file", str(flow_file))
    a_args = _opt_args({k: v for k, v in analyze.items()}) + _analyze_option_args(options)
    data_args = ["--dataset", dataset, "--root", str(root), "--video", video]
    done: dict[str, Any] = {"video": video, "ffn_frame": j, "runs": {}}
    tag = f"{prefix}{video}/" if prefix is not None else ""
    upstream = list(after or [])
    for kind in models:
        mdir, cdir, adir = out / "models" / kind, out / "canvas" / kind, out / kind
        if kind == "ffn":
            image = clip.files[j] if clip.files else None
            if image is None:
                raise XincError(f"{dataset} clip {video}: frame files unknown; cannot train the FFN")
            targs = ["train", "ffn", "--image", image, "--out", mdir, "--size", hw, "--seed", seed,
                     "--device", device, *_opt_args(ffn), *prog]
            frame_args, cframes = ["--frame", str(j)], "0"
        else:
            targs = ["train", "nerv", "--dataset", dataset, "--root", root, "--video", video, "--out", mdir,
                     "--size", hw, "--seed", seed, "--device", device, *_opt_args(nerv), *prog]
            frame_args, cframes = [], str(j)
        steps.xinc(f"{tag}train-{kind}", mdir, targs, after=upstream)
        steps.xinc(f"{tag}canvas-{kind}", cdir, ["canvas", mdir, "--out", cdir, "--frames", cframes, "--device",
                                                 device, *_opt_args(canvas), *prog], after=[f"{tag}train-{kind}"])
        layer_args = ["--layers", layers[kind]] if layers and layers.get(kind) else []
        steps.xinc(f"{tag}analyze-{kind}", adir, ["analyze", mdir, "--out", adir, *data_args, *frame_args, *layer_args,
                                                  "--seed", seed, "--device", device, *a_args, *prog],
                   after=[f"{tag}train-{kind}"])
        done["runs"][kind] = str(adir)
    done["media"] = media_steps(steps, out, models, seed=seed, device=device, tag=tag)
    if compare and {"ffn", "nerv"} <= set(models):
        comp = out / "comparison.json"
        steps.run(f"{tag}compare", comp, {"a": done["runs"]["ffn"], "b": done["runs"]["nerv"], "frame": j},
                  lambda: write_comparison(out / "ffn", out / "nerv", comp, seed), "python: xinc.pipeline."
                  f"write_comparison({out / 'ffn'}, {out / 'nerv'})", after=[f"{tag}analyze-{k}" for k in models])
    if report:
        from xinc.report.html import build_report

        html = out / "report.html"
        inputs = [f"{tag}{s}-{k}" for k in models for s in ("canvas", "analyze")] + done["media"]
        if compare and {"ffn", "nerv"} <= set(models):
            inputs.append(f"{tag}compare")
        steps.run(f"{tag}report", html, {"runs": done["runs"]},
                  lambda: build_report(out, html, title=f"xinc report — {dataset} clip {video}"),
                  xinc_command(["report", out, "--out", html]), after=inputs)
        done["steps"] = [*inputs, f"{tag}report"]
        done["report"] = str(html)
    else:
        done["steps"] = [f"{tag}{s}-{k}" for k in models for s in ("canvas", "analyze")] + done["media"]
    return done


def media_steps(steps: Steps, out: Path, models: list[str], *, seed: int, device: str, tag: str = "") -> list[str]:
    """The NeRV's contribution videos (OUT/videos/nerv) and the explorer page of the clip's runs
    (OUT/explorer.html), both cheap at the pipeline's sizes; returns the step names."""
    from xinc.explore import build_explorer
    from xinc.video import VideoConfig, write_video_dir

    names = []
    if "nerv" in models:
        mdir, vdir = out / "models" / "nerv", out / "videos" / "nerv"
        steps.run(f"{tag}video-nerv", vdir, {"model": str(mdir), "seed": seed},
                  lambda: write_video_dir(mdir, vdir, VideoConfig(seed=seed, progress=False), device=device,
                                          overwrite=True, command=xinc_command(["video", mdir, "--out", vdir])),
                  xinc_command(["video", mdir, "--out", vdir, "--seed", seed]), after=[f"{tag}train-nerv"])
        names.append(f"{tag}video-nerv")
    html = out / "explorer.html"
    steps.run(f"{tag}explore", html, {"runs": [str(out / k) for k in models]},
              lambda: build_explorer(out, html, title=f"xinc explorer — {out.name}"),
              xinc_command(["explore", out, "--out", html]), after=[f"{tag}analyze-{k}" for k in models])
    return [*names, f"{tag}explore"]


def write_comparison(run_a: Path, run_b: Path, out: Path, seed: int = 0) -> dict[str, Any]:
    """A6 across architectures: compare the neuron vectors of two analyze runs; write JSON."""
    from xinc.analysis.clusters import compare_runs

    if not (run_a / "data").is_dir() or not (run_b / "data").is_dir():
        comp = {"comparisons": [], "note": "A6 did not run in both analyses; nothing to compare"}
    else:
        c = compare_runs(run_a, run_b, seed=seed)
        c["label"] = f"{run_a.name.upper()} vs {run_b.name.upper()} on the same frame (architectures)"
        comp = {"comparisons": [c]}
    write_json(out, comp)
    return comp


# ----------------------------------------------------------------------------- xinc run


def run_pipeline(cfg: PipelineConfig, *, argv: list[str] | None = None) -> dict[str, Any]:
    """Run the whole pipeline for every clip of the config; returns a summary (also OUT/config.json)."""
    validate(cfg)
    out = Path(cfg.out)
    root = Path(cfg.root) if cfg.root else out / "data"
    with claimed_folder(out, inputs=[] if cfg.synthetic else [root], kind="run", what="out"):
        return _run_pipeline(cfg, out, root, argv)


def _run_pipeline(cfg: PipelineConfig, out: Path, root: Path, argv: list[str] | None) -> dict[str, Any]:
    from xinc.data.panoptic import list_videos

    steps = Steps(out, outside=(root,))
    if cfg.synthetic is not None:
        s = cfg.synthetic
        size = s.size or cfg.size
        args = ["synth", "--out", root, "--format", cfg.dataset, "--seed", s.seed, "--frames", s.frames,
                "--size", f"{size[0]}x{size[1]}", "--videos", s.videos, "--pan", s.pan, "--flo", "False"]
        if s.things is not None:
            args += ["--things", s.things]
        steps.xinc("synth", root, args)
    elif not root.is_dir():
        raise XincError(f"{root}: dataset root not found; fix `root` in the config (or use `synthetic`)")
    known = list_videos(cfg.dataset, root)
    videos = known if cfg.videos == "all" else [str(v) for v in cfg.videos]
    for v in videos:  # clip ids name folders under out: plain names only (a dataset JSON is untrusted)
        plain_name(v, f"{root}: clip id")
    if not videos:
        raise XincError(f"{root}: no clips found for dataset {cfg.dataset}")
    missing = [v for v in videos if v not in known]
    if missing:
        raise XincError(f"{root}: clip {missing[0]!r} not in the {cfg.dataset} dataset; known: {', '.join(known)}")
    clips = {}
    for i, video in enumerate(videos):
        steps.log(f"[xinc] clip {i + 1}/{len(videos)}: {video}")
        clips[video] = clip_steps(
            steps, dataset=cfg.dataset, root=root, video=video, out=out / video, size=cfg.size,
            seed=cfg.seed, device=cfg.device, models=cfg.models, ffn=cfg.ffn, nerv=cfg.nerv, canvas=cfg.canvas,
            analyze=cfg.analyze, analyze_options=cfg.analyze_options, compare=cfg.compare, report=cfg.report,
            progress=cfg.progress, prefix="", layers=cfg.layers, after=["synth"] if cfg.synthetic else None)
    resolved = {"pipeline": to_jsonable(cfg), "root": str(root), "videos": videos, "commands": steps.commands,
                "command": "xinc run " + shlex.join(argv or []), "steps_run": steps.ran, "steps_skipped": steps.skipped,
                "clips": clips}
    write_json(out / "config.json", resolved)  # before the report, which shows its commands
    if cfg.report:
        from xinc.report.html import build_report

        html = out / "report.html"
        steps.run("report", html, {"videos": videos},
                  lambda: build_report(out, html, title=f"xinc report — {cfg.dataset}, {len(videos)} clip(s)"),
                  xinc_command(["report", out, "--out", html]), after=[s for c in clips.values() for s in c["steps"]])
        resolved.update(steps_run=steps.ran, steps_skipped=steps.skipped, report=str(html))
    write_json(out / "config.json", resolved)
    return resolved


# ----------------------------------------------------------------------------- xinc demo


@dataclass
class DemoConfig:
    """Settings of `xinc demo` (the quick variant shrinks every size and step count)."""

    out: str = "runs/demo"
    seed: int = 0
    quick: bool = False
    device: str = "auto"
    progress: bool = True
    size: list[int] | None = None  # (H, W); default 64x128 (quick: 32x64)
    frames: int | None = None  # synthetic clip length; default 10 (annotated frames 4 and 9)

    def resolved(self) -> dict[str, Any]:
        """Every setting of the demo run, sizes and step counts included."""
        q = self.quick
        size = list(self.size or ([32, 64] if q else [64, 128]))
        frames = int(self.frames or 10)
        ffn = {"steps": 100, "width": 32, "eval_every": 50} if q else {"steps": 1000, "width": 104}
        nerv = ({"epochs": 30, "strides": [2, 2, 2], "fc_dim": 8, "lower_width": 6, "eval_every": 30} if q else
                {"epochs": 300, "strides": [4, 2, 2], "fc_dim": 24, "lower_width": 8, "eval_every": 50})
        analyze = {"analyses": "all", "mode": "linear" if q else "both"}
        if q:
            analyze["sample_neurons"] = 3
        options = {"a6": {"members": 3, "seed_runs": 2}, "a5": {"null": 2}} if q else {"a6": {"members": 6}}
        options["a7"] = {"neurons": 4, "fractions": "0,0.3,1"} if q else {"neurons": 8, "fractions": "0,0.1,0.3,0.6,1"}
        return {"out": self.out, "seed": self.seed, "quick": q, "device": self.device, "size": size,
                "dataset": "cityscapes-vps", "synthetic": {"frames": frames, "videos": 1, "pan": 0.0, "things": None},
                "ffn": ffn, "nerv": nerv, "canvas": {"mode": "paper", "top": 8 if q else 12},
                "analyze": analyze, "analyze_options": options,
                "layers": {"ffn": "layer2,layer3", "nerv": "block3,head"} if q else {}}


def run_demo(cfg: DemoConfig, *, argv: list[str] | None = None) -> dict[str, Any]:
    """Synthetic Cityscapes-VPS clip -> FFN (first annotated frame) + NeRV (clip) -> canvases -> A1-A6 -> report."""
    r = cfg.resolved()
    out = Path(r["out"])
    with claimed_folder(out, kind="demo", what="--out"):
        return _run_demo(cfg, r, out, argv)


def _run_demo(cfg: DemoConfig, r: dict[str, Any], out: Path, argv: list[str] | None) -> dict[str, Any]:
    steps = Steps(out)
    t0 = time.time()
    data = out / "data"
    size = r["size"]
    steps.xinc("synth", data, ["synth", "--out", data, "--format", r["dataset"], "--seed", r["seed"], "--frames",
                               r["synthetic"]["frames"], "--size", f"{size[0]}x{size[1]}", "--videos", "1",
                               "--flo", "False"])
    done = clip_steps(steps, dataset=r["dataset"], root=data, video="0001", out=out, size=size, seed=r["seed"],
                      device=r["device"], models=list(MODELS), ffn=r["ffn"], nerv=r["nerv"], canvas=r["canvas"],
                      analyze=r["analyze"], analyze_options=r["analyze_options"], compare=True, report=False,
                      progress=cfg.progress, prefix=None, layers=r["layers"])
    from xinc.report.html import build_report

    html = out / "report.html"
    resolved = {"demo": r, "command": "xinc demo " + shlex.join(argv or []), "commands": steps.commands
                + [xinc_command(["report", out, "--out", html])], "steps_run": steps.ran,
                "steps_skipped": steps.skipped, "runs": done["runs"], "ffn_frame": done["ffn_frame"]}
    write_json(out / "config.json", resolved)
    build_report(out, html, title="xinc demo — synthetic Cityscapes-VPS clip, FFN and NeRV")
    resolved["report"] = str(html)
    resolved["seconds"] = round(time.time() - t0, 1)
    write_json(out / "config.json", resolved)
    return resolved
