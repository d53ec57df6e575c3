"""The whole pipeline as a Python API: data -> train -> canvas -> analyze -> compare -> report.

Every step is one library call on a config dataclass (the one its `xinc` command parses: `CanvasConfig`,
`AnalyzeConfig`, ...) writing one output folder atomically; the resolved config is recorded in the step's
output and in its completion marker (<out>/.steps/<clip>/<step>.json), with the equivalent `xinc` command
line for the report. A step is skipped when its output exists and its marker holds the same config hash
(and the same upstream hashes); with a different config the output is rebuilt. So re-running a config after
an interruption (or after adding clips) only does the missing work.

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
import functools
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import tyro

from xinc.config import as_json, command_line, with_options
from xinc.data.datasets import discover as discover_datasets
from xinc.errors import XincError
from xinc.fields import OptionalHW
from xinc.outputs import check_output_dir, claimed_folder
from xinc.utils import read_json, to_jsonable, write_json
from xinc.validate import hw, optional, plain_name, positive_int

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


_SET_BY_PIPELINE = {"image", "out", "size", "seed", "device", "dataset", "root", "video", "model_dir", "frame",
                    "frames", "layers", "progress", "option", "data", "overwrite", "resume"}
STEP_OPTIONS = ("ffn", "nerv", "canvas", "analyze")  # the config tables that override a step's config fields


# complexity accepted: one line per setting of the config file
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
    for key in STEP_OPTIONS:
        if not isinstance(getattr(cfg, key), dict):
            raise XincError(f"{where}: {key} must be a table of `xinc` options, got {getattr(cfg, key)!r}")
    if not isinstance(cfg.analyze_options, dict) or not all(isinstance(v, dict) for v in cfg.analyze_options.values()):
        raise XincError(f"{where}: analyze_options must be {{analysis id: {{name: value}}}}")
    if not isinstance(cfg.layers, dict):
        raise XincError(f"{where}: layers must be {{model: \"layer,...\"}}, e.g. {{\"nerv\": \"block3,head\"}}")
    if isinstance(cfg.videos, list):
        for v in cfg.videos:
            plain_name(v, f"{where}: videos: clip id")
    check_values(cfg, where)


def check_values(cfg: PipelineConfig, where: str = "config") -> None:
    """Every step's config built (typed, checked by the configs' own validation) before any data is generated or
    any step runs; paths are placeholders inside OUT that are never made."""
    from xinc.analysis.registry import discover, make_options

    probe = Path(cfg.out) / ".xinc-validate"
    try:
        if cfg.synthetic is not None:
            synth_config(cfg.synthetic, probe, cfg.dataset, cfg.size)
        for kind in cfg.models:
            train_config(kind, getattr(cfg, kind), dataset=cfg.dataset, root=Path("probe"), video="probe",
                         image=Path("probe.png"), out=probe, size=cfg.size, seed=cfg.seed, device=cfg.device,
                         progress=False, check=True)
        canvas_config(cfg.canvas, model_dir=probe, out=probe, frames="0", device=cfg.device, progress=False)
        analyze_config(cfg.analyze, model_dir=probe, out=probe, dataset=cfg.dataset, root=probe, video="probe",
                       frame=None, layers=None, seed=cfg.seed, device=cfg.device, progress=False)
        discover()
        for aid, given in cfg.analyze_options.items():
            make_options(aid, given)
    except XincError as e:
        msg = str(e)
        raise XincError(msg if msg.startswith(where) else f"{where}: {msg}") from None


# ----------------------------------------------------------------------------- step configs


def synth_config(s: SyntheticSpec, out: Path, dataset: str, size: list[int]):
    """The `xinc synth` config (`xinc.data.config.SynthDatasetConfig`) of the pipeline's generated data."""
    from xinc.data.config import SynthDatasetConfig

    hw = s.size or size
    return SynthDatasetConfig(out=Path(out), format=dataset, seed=s.seed, frames=s.frames, size=(hw[0], hw[1]),
                              videos=s.videos, pan=s.pan, things=s.things, flo=False)


def train_config(kind: str, options: dict[str, Any], *, dataset: str, root: Path, video: str, image: Path | None,
                 out: Path, size: list[int], seed: int, device: str, progress: bool, check: bool = False):
    """`xinc.train.TrainFFNConfig` / `TrainNeRVConfig` of a train step (the configs `xinc train <kind>` parses):
    the pipeline's fields, the `ffn`/`nerv` table applied (option names as on the command line, e.g. `width`)."""
    from xinc.train import TrainFFNConfig, TrainNeRVConfig, validate_config

    common = {"out": str(out), "size": (int(size[0]), int(size[1])), "seed": seed, "device": device,
              "progress": progress}
    if kind == "ffn":
        base = TrainFFNConfig(image=None if image is None else str(image), **common)
    else:
        base = TrainNeRVConfig(video=video, dataset=dataset, root=str(root), **common)
    cfg = with_options(base, options, f"{kind}", fixed=_SET_BY_PIPELINE)
    if check:
        validate_config(cfg)
    return cfg


def canvas_config(options: dict[str, Any], **fixed):
    """`xinc.canvas.CanvasConfig` of a canvas step: the pipeline's fields, the `canvas` table applied."""
    from xinc.canvas.config import CanvasConfig

    return with_options(CanvasConfig(**fixed), options, "canvas", fixed=_SET_BY_PIPELINE)


def analyze_config(options: dict[str, Any], **fixed):
    """`xinc.analysis.AnalyzeConfig` of an analyze step: the pipeline's fields, the `analyze` table applied."""
    from xinc.analysis.config import AnalyzeConfig

    return with_options(AnalyzeConfig(**fixed), options, "analyze", fixed=_SET_BY_PIPELINE)


# ----------------------------------------------------------------------------- steps


@dataclass
class Step:
    """One unit of pipeline work: `fn()` writes `output`. Completed when OUT/.steps/<clip>/<name>.json holds
    `key` (a hash of the params and of every upstream step's key, fixed when the plan is made), so serial and
    Ray runs skip exactly the same steps. `fn` must be picklable (module-level functions, partials)."""

    name: str
    clip: str | None
    output: Path
    params: dict[str, Any]
    deps: list[str]
    fn: Callable[[], Any]
    command: str | None = None  # the shell command that reproduces it (recorded in config.json)
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    key: str = ""
    confined: bool = True  # output must lie inside the pipeline folder (False: the user's synthetic data root)

    @property
    def id(self) -> str:
        return self.name if self.clip is None else f"{self.clip}/{self.name}"


class Plan:
    """Builds the pipeline's steps in dependency order (each step's key chains its upstream keys)."""

    def __init__(self, root: Path, device: str = "cpu") -> None:
        self.root = Path(root)
        self.steps: dict[str, Step] = {}
        self.gpus = 1.0 if str(device).startswith("cuda") or (device == "auto" and _cuda()) else 0.0

    def add(self, name: str, clip: str | None, output: Path, params: dict[str, Any], fn: Callable[[], Any],
            command: str | None = None, deps: list[str] | None = None, gpu: bool = False,
            confined: bool = True) -> Step:
        deps = [d for d in (deps or []) if d in self.steps]
        body = {"params": to_jsonable(params), "after": [[d, self.steps[d].key] for d in deps]}
        key = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]
        st = Step(name, clip, Path(output), params, deps, fn, command, 1.0, self.gpus if gpu else 0.0, key, confined)
        if st.id in self.steps:
            raise XincError(f"pipeline: step {st.id} planned twice; clip ids must be unique")
        self.steps[st.id] = st
        return st


def confine(root: Path, path: Path, what: str) -> Path:
    """`path` must lie inside the pipeline folder `root` (or be the dataset `root` given by the user)."""
    if not Path(path).resolve().is_relative_to(Path(root).resolve()):
        raise XincError(f"{what}: output {path} lies outside the pipeline folder {root} ; use plain clip ids")
    return Path(path)


def _cuda() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:  # noqa: BLE001 - no torch CUDA runtime: a CPU plan
        return False


def marker(root: Path, step: Step) -> Path:
    """OUT/.steps/<clip>/<name>.json (pipeline-wide steps: OUT/.steps/<name>.json)."""
    base = Path(root) / ".steps"
    return (base if step.clip is None else base / step.clip) / f"{step.name}.json"


def is_done(root: Path, step: Step) -> bool:
    """The step's output exists and its marker holds the same key."""
    mark = marker(root, step)
    if not (step.output.exists() and mark.is_file()):
        return False
    try:
        return json.loads(mark.read_text()).get("key") == step.key
    except (OSError, json.JSONDecodeError):
        return False


WORKER_MEMORY_MB = 3000.0  # Ray backend: memory budget per worker (issue 20: under 3 GB at 128x256)
MARKER_FORMAT = 2  # markers of the Steps class before issue 20 have no "format" (see adopt_legacy)


def _legacy_record(root: Path, step_id: str) -> dict[str, Any] | None:
    """The previous release's marker of a step id: OUT/.steps/<clip>__<name>.json (pipeline), <name>.json (the
    demo's clip steps and pipeline-wide steps); a new-format marker there yields the legacy record it kept."""
    base = Path(root) / ".steps"
    for name in dict.fromkeys([step_id.replace("/", "__"), step_id.split("/")[-1]]):
        try:
            rec = json.loads((base / f"{name}.json").read_text())
        except (OSError, json.JSONDecodeError):
            continue
        rec = rec.get("legacy") if "format" in rec else rec
        if isinstance(rec, dict) and rec.get("step") in (step_id, name):
            return rec
    return None


def adopt_legacy(root: Path, step: Step) -> bool:
    """A step completed by the previous release counts as done: its old marker names the same output and the
    same parameters, every upstream step it recorded still holds the key it recorded, and every upstream step
    of the plan finished before it (none rebuilt since). Then the step's marker is written in today's format
    (keeping the old record), so later runs need no migration. Old marker files are never removed."""
    old = None
    for sid in (step.id, step.name):
        rec = _legacy_record(root, sid)
        if rec and rec.get("output") == str(step.output) and step.output.exists():
            old = rec
            break
    if old is None or not isinstance(old.get("params"), dict):
        return False
    params = {k: v for k, v in old["params"].items() if k != "after"}
    same_command = bool(step.command) and old.get("command") == step.command  # the recorded command line
    if params != to_jsonable(step.params) and not same_command:
        return False
    for entry in old["params"].get("after", []):
        up = _legacy_record(root, str(entry[0]))
        if up is None or up.get("key") != entry[1]:
            return False
    for dep in step.deps:
        try:
            mark = json.loads(marker(root, _dep_step(step, dep)).read_text())
        except OSError:
            continue  # a step that is never executed (the plan's "data" key carrier): the recorded keys decide
        except json.JSONDecodeError:
            return False
        if str(mark.get("finished", "")) > str(old.get("finished", "")) and "legacy" not in mark:
            return False  # rebuilt after this step's output was made
    _write_marker(root, step, old.get("seconds", 0.0), legacy=old)
    return True


def _dep_step(step: Step, dep: str) -> Step:
    """A stand-in Step for an upstream id (only its clip and name are used, to find its marker)."""
    clip, _, name = dep.rpartition("/")
    return Step(name, clip or None, step.output, {}, [], _nothing)


def _write_marker(root: Path, step: Step, seconds: float, legacy: dict[str, Any] | None = None) -> None:
    rec = {"format": MARKER_FORMAT, "key": step.key, "step": step.id, "output": str(step.output),
           "params": to_jsonable(step.params), "command": step.command, "seconds": seconds,
           "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if legacy is not None:
        rec["legacy"] = legacy
    write_json(marker(root, step), rec)


def run_step(root: Path, step: Step, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run one step unless it is done; write its marker. Returns {"id", "ran", "seconds"}. Same code for every
    backend (the Ray backend calls it inside a task)."""
    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    if is_done(root, step) or adopt_legacy(root, step):
        log(f"[xinc] {step.id}: done before, skipped ({step.output})")
        return {"id": step.id, "ran": False, "seconds": 0.0}
    if step.confined:
        confine(root, step.output, step.id)
    ours = marker(root, step).is_file() or any(
        (rec := _legacy_record(root, sid)) and rec.get("output") == str(step.output) for sid in (step.id, step.name))
    if step.output.exists() and not ours:  # never a folder/file no step of ours wrote
        raise XincError(f"{step.output}: exists but no earlier pipeline step wrote it ; move it away or choose "
                        "another `out`/`root`")
    log(f"[xinc] {step.id}: {step.command or 'running'}")
    t0 = time.time()
    step.fn()
    seconds = round(time.time() - t0, 2)
    _write_marker(root, step, seconds)
    return {"id": step.id, "ran": True, "seconds": seconds}


def _bar(total: int, progress: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="pipeline steps", unit="step", disable=not progress, file=sys.stderr,
                dynamic_ncols=True)


def run_serial(root: Path, steps: list[Step], progress: bool = True) -> list[dict[str, Any]]:
    """Run steps one after another in plan (dependency) order."""
    out = []
    with _bar(len(steps), progress) as bar:
        for st in steps:
            out.append(run_step(root, st))
            bar.update(1)
    return out


def run_ray(root: Path, steps: list[Step], *, address: str | None = None, max_retries: int = 2,
            progress: bool = True, worker_memory_mb: float | None = WORKER_MEMORY_MB) -> list[dict[str, Any]]:
    """One Ray task per step (each clip's steps depend on their upstream tasks' results, so Ray runs them in
    dependency order and independent clips in parallel). Tasks declare num_cpus/num_gpus and, with a worker
    memory budget, `memory=` (so Ray starts no more tasks than memory holds) and run under that budget
    (xinc.memory: analysis steps lower their canvas memo); a failed task is retried max_retries times;
    completed steps are skipped by the same markers as the serial backend."""
    try:
        import ray
    except ImportError:
        raise XincError("--backend ray: Ray is not installed; pip install 'xinc[ray]' (or use --backend serial)") \
            from None
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        # a fresh worker process per step (max_calls=1): a worker's peak memory is one step's, not the sum of
        # what earlier steps left in its heap (freed chunks are kept for reuse, see xinc.threads)
        task = ray.remote(max_calls=1)(_ray_step)
        refs: dict[str, Any] = {}
        memory = _ray_memory(ray, worker_memory_mb)
        for st in steps:
            opts = {"num_cpus": st.num_cpus, "num_gpus": st.num_gpus, "max_retries": max_retries,
                    "retry_exceptions": True, **({"memory": memory} if memory else {})}
            refs[st.id] = task.options(**opts).remote(str(root), st, worker_memory_mb,
                                                      *[refs[d] for d in st.deps if d in refs])
        results: dict[Any, dict[str, Any]] = {}
        failed: list[BaseException] = []
        pending = list(refs.values())
        with _bar(len(steps), progress) as bar:
            while pending:  # after a failure the other clips still finish (their work is kept for a re-run)
                done, pending = ray.wait(pending, num_returns=1)
                for ref in done:
                    try:
                        results[ref] = ray.get(ref)
                    except ray.exceptions.RayTaskError as e:
                        failed.append(e)
                bar.update(len(done))
        if failed:
            cause = failed[0].as_instanceof_cause()
            if isinstance(cause, XincError):
                raise XincError(str(cause)) from None
            raise failed[0]
        return [results[refs[st.id]] for st in steps]
    finally:
        if started:
            ray.shutdown()


def _ray_memory(ray, worker_memory_mb: float | None) -> int | None:
    """Bytes of Ray's `memory` resource each task declares: the worker budget, at most what the cluster has
    (a task asking for more than any node holds would never start)."""
    if not worker_memory_mb:
        return None
    have = float(ray.cluster_resources().get("memory", 0))
    want = float(worker_memory_mb) * 2**20
    return int(min(want, have)) if have > 0 else None


def _ray_step(root: str, step: Step, worker_memory_mb: float | None, *upstream) -> dict[str, Any]:
    """Body of a Ray task: the upstream results only order the tasks. Runs the step under the worker memory
    budget (xinc.memory) and adds the worker's peak RSS (VmHWM: the step's, as each step has its own worker)."""
    from xinc.memory import peak_rss_mb, set_budget_mb
    from xinc.threads import configure_threads

    configure_threads()
    set_budget_mb(worker_memory_mb)
    res = run_step(Path(root), step)
    res["worker_peak_rss_mb"] = round(peak_rss_mb(), 1)
    res["worker_pid"] = os.getpid()
    return res


def execute(root: Path, steps: list[Step], backend: str = "serial", *, address: str | None = None,
            max_retries: int = 2, progress: bool = True,
            worker_memory_mb: float | None = WORKER_MEMORY_MB) -> tuple[list[str], list[str]]:
    """Run the steps with a backend; returns (ids run, ids skipped) in plan order."""
    if backend == "serial":
        res = run_serial(root, steps, progress)
    elif backend == "ray":
        res = run_ray(root, steps, address=address, max_retries=max_retries, progress=progress,
                      worker_memory_mb=worker_memory_mb)
        peaks = {r["id"]: r["worker_peak_rss_mb"] for r in res if r["ran"]}
        if peaks:
            write_json(Path(root) / "ray_workers.json", {
                "worker_peak_rss_mb": peaks, "worker_memory_mb": worker_memory_mb or None,
                "max_peak_rss_mb": max(peaks.values()),
                "worker_pid": {r["id"]: r.get("worker_pid") for r in res if r["ran"]}})
    else:
        raise XincError(f"backend {backend!r}: choose serial or ray")
    return [r["id"] for r in res if r["ran"]], [r["id"] for r in res if not r["ran"]]


# ----------------------------------------------------------------------------- one clip


def clip_steps(plan: Plan, *, dataset: str, root: Path, video: str, out: Path, size: list[int], seed: int,
               device: str, models: list[str], ffn: dict[str, Any], nerv: dict[str, Any], canvas: dict[str, Any],
               analyze: dict[str, Any], analyze_options: dict[str, dict[str, Any]], compare: bool, report: bool,
               progress: bool, layers: dict[str, str] | None = None, after: list[str] | None = None,
               title: str | None = None) -> dict[str, Any]:
    """Plan train, canvas, analyze (and compare, report) of the models of one clip into `out` (nothing runs)."""
    from xinc.data.panoptic import load_panoptic_clip

    clip = load_panoptic_clip(dataset, root, video, size=(size[0], size[1]))
    if not clip.annotated:
        raise XincError(f"{dataset} clip {video}: no annotated frame; choose a clip with panoptic labels")
    j = clip.annotated[0]  # the FFN learns the first annotated frame (SPEC 3.1)
    options = _analysis_options(analyze_options, Path(root) / "flow_gt" / video / "flow.npy")
    done: dict[str, Any] = {"video": video, "ffn_frame": j, "runs": {}}
    common = {"seed": seed, "device": device, "progress": progress}
    ids = []
    for kind in models:
        mdir, cdir, adir = out / "models" / kind, out / "canvas" / kind, out / kind
        image = clip.files[j] if clip.files else None
        if kind == "ffn" and image is None:
            raise XincError(f"{dataset} clip {video}: frame files unknown; cannot train the FFN")
        opts = train_config(kind, ffn if kind == "ffn" else nerv, dataset=dataset, root=root, video=video,
                            image=image, out=mdir, size=size, **common)
        train = plan.add(f"train-{kind}", video, mdir, {"config": as_json(opts)},
                         functools.partial(_train_step, kind, opts, _train_command(kind, opts)),
                         _train_command(kind, opts), deps=list(after or []), gpu=True).id
        ccfg = canvas_config(canvas, model_dir=mdir, out=cdir, frames="0" if kind == "ffn" else str(j),
                             device=device, progress=progress)
        ids.append(config_step(plan, f"canvas-{kind}", video, ccfg, _canvas_step, "xinc canvas", deps=[train]).id)
        acfg = analyze_config(analyze, model_dir=mdir, out=adir, dataset=dataset, root=Path(root), video=video,
                              frame=j if kind == "ffn" else None, layers=(layers or {}).get(kind) or None, **common)
        ids.append(config_step(plan, f"analyze-{kind}", video, acfg, functools.partial(_analyze_step, options=options),
                               "xinc analyze", deps=[train], extra={"options": options}).id)
        done["runs"][kind] = str(adir)
    done["media"] = media_steps(plan, out, models, video=video, seed=seed, device=device)
    ids += done["media"]
    if compare and {"ffn", "nerv"} <= set(models):
        comp = out / "comparison.json"
        ids.append(plan.add("compare", video, comp, {"a": done["runs"]["ffn"], "b": done["runs"]["nerv"], "frame": j},
                            functools.partial(write_comparison, out / "ffn", out / "nerv", comp, seed),
                            f"python: xinc.pipeline.write_comparison({out / 'ffn'}, {out / 'nerv'})",
                            deps=[f"{video}/analyze-{k}" for k in models]).id)
    if report:
        ids.append(report_step(plan, video, out, title or f"xinc report — {dataset} clip {video}", list(ids)).id)
    done["steps"] = ids
    return done


def _analysis_options(given: dict[str, dict[str, Any]], flow_file: Path) -> dict[str, dict[str, Any]]:
    """The per-analysis options of a clip: the config's, plus A4's exact flow of a synthetic clip."""
    options = {k: dict(v) for k, v in given.items()}
    if flow_file.is_file():  # synthetic data: A4 scores against the exact flow
        options.setdefault("a4", {}).setdefault("flow_file", str(flow_file))
    return options


def config_step(plan: Plan, name: str, clip: str | None, cfg: Any, fn: Callable[..., Any], prog: str,
                deps: list[str] | None = None, extra: dict[str, Any] | None = None, gpu: bool = True) -> Step:
    """A step that runs the library function `fn(cfg, command=...)` writing cfg.out; its key hashes the resolved
    config (and `extra`), and its command is the equivalent `xinc` command line (recorded, never parsed)."""
    command = command_line(prog, cfg, positional=_POSITIONAL)
    params = {"config": as_json(cfg), **(extra or {})}
    return plan.add(name, clip, Path(cfg.out), params, functools.partial(_config_step, fn, cfg, command), command,
                    deps, gpu)


_POSITIONAL = ("model_dir", "run_dir", "src")


def _config_step(fn: Callable[..., Any], cfg: Any, command: str) -> None:
    """Run `fn` on `cfg`; a stale output of ours (run_step checked its marker) is replaced by the function."""
    exists = Path(cfg.out).exists()
    fn(dataclasses.replace(cfg, overwrite=exists) if exists else cfg, command=command)


def _canvas_step(cfg, *, command: str) -> None:
    from xinc.canvas.write import run_canvas

    run_canvas(cfg, command=command)


def _analyze_step(cfg, *, command: str, options: dict[str, dict[str, Any]]) -> None:
    from xinc.analysis.runner import analyze

    analyze(cfg, command=command, options=options)


def _train_command(kind: str, cfg) -> str:
    return command_line(f"xinc train {kind}", cfg)


def _train_step(kind: str, cfg, command: str) -> None:
    """Train model `kind` with the library function `xinc train <kind>` calls."""
    from xinc.train import train_ffn, train_nerv

    if Path(cfg.out).exists():  # a stale output of ours (run_step checked its marker)
        cfg = dataclasses.replace(cfg, overwrite=True)
    (train_ffn if kind == "ffn" else train_nerv)(cfg, command=command)


def report_step(plan: Plan, clip: str | None, folder: Path, title: str, deps: list[str]) -> Step:
    """The HTML report of `folder` (`xinc.report.write_report`)."""
    from xinc.report.config import ReportConfig

    cfg = ReportConfig(run_dir=Path(folder), out=Path(folder) / "report.html", title=title)
    command = command_line("xinc report", cfg, positional=_POSITIONAL)
    return plan.add("report", clip, cfg.target(), {"runs": str(folder), "config": as_json(cfg)},
                    functools.partial(_report_step, cfg), command, deps=deps)


def _report_step(cfg) -> None:
    from xinc.report.config import write_report

    write_report(cfg)


def media_steps(plan: Plan, out: Path, models: list[str], *, video: str, seed: int, device: str) -> list[str]:
    """The NeRV's contribution videos (OUT/videos/nerv) and the explorer page of the clip's runs
    (OUT/explorer.html), both cheap at the pipeline's sizes; returns the step ids."""
    from xinc.explore.config import ExploreConfig
    from xinc.video.config import VideoDirConfig

    ids = []
    if "nerv" in models:
        vcfg = VideoDirConfig(model_dir=out / "models" / "nerv", out=out / "videos" / "nerv", seed=seed, device=device,
                              progress=False)
        ids.append(config_step(plan, "video-nerv", video, vcfg, _video_step, "xinc video",
                               deps=[f"{video}/train-nerv"]).id)
    ecfg = ExploreConfig(run_dir=out, out=out / "explorer.html", title=f"xinc explorer — {out.name}", progress=False)
    command = command_line("xinc explore", ecfg, positional=_POSITIONAL)
    ids.append(plan.add("explore", video, ecfg.target(), {"runs": [str(out / k) for k in models],
                                                          "config": as_json(ecfg)},
                        functools.partial(_explore_step, ecfg), command,
                        deps=[f"{video}/analyze-{k}" for k in models]).id)
    return ids


def _video_step(cfg, *, command: str) -> None:
    from xinc.video.config import write_videos

    write_videos(cfg, command=command)


def _explore_step(cfg) -> None:
    from xinc.explore.config import write_explorer

    write_explorer(cfg)


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


@dataclass
class RunConfig:
    """Run the whole pipeline (train, canvas, analyze, compare, report) for many clips of a dataset from one
    config file (JSON, or TOML). Completed steps are skipped when re-run; changed settings rebuild only the
    affected steps. Keys: out, dataset, root | synthetic {videos, frames, seed, pan, things, size}, videos,
    size, seed, device, models, ffn {...}, nerv {...}, canvas {...}, analyze {...}, analyze_options
    {aid: {name: value}}, compare, report, progress (see the docs, "Report, demo and pipeline")."""

    config: tyro.conf.Positional[Path]
    """pipeline config file (.json or .toml)"""
    out: Path | None = None
    """override the config's output folder"""
    backend: Literal["serial", "ray"] = "serial"
    """serial: one step after another; ray: one Ray task per clip and step (pip install 'xinc[ray]')"""
    address: str | None = None
    """Ray only: an existing cluster's address (default: a local Ray started for this run)"""
    max_retries: int = 2
    """Ray only: times a failed task is retried"""
    worker_memory_mb: float = WORKER_MEMORY_MB
    """Ray only: memory budget per worker in MiB (declared to Ray as `memory`; analysis steps lower their canvas
    memo to a quarter of what it leaves above 3000 MiB, explicit chunk budgets to 1/64; xinc.memory); 0: none"""

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise XincError(f"--max-retries {self.max_retries}: must be >= 0")
        if not (0 <= self.worker_memory_mb < float("inf")):
            raise XincError(f"--worker-memory-mb {self.worker_memory_mb}: not a size in MiB ; give >= 0 (0: no "
                            "budget)")
        if self.address is not None and self.backend != "ray":
            raise XincError("--address: only with --backend ray")


def run_config_file(run: RunConfig, *, command: str | None = None) -> dict[str, Any]:
    """`xinc run`: load the pipeline config file, apply the overrides, run it; returns the summary."""
    cfg = load_config(run.config)
    if run.out is not None:
        cfg.out = str(run.out)
    return run_pipeline(cfg, backend=run.backend, address=run.address, max_retries=run.max_retries,
                        command=command, worker_memory_mb=run.worker_memory_mb)


def run_pipeline(cfg: PipelineConfig, *, backend: str = "serial", address: str | None = None, max_retries: int = 2,
                 command: str | None = None, worker_memory_mb: float | None = WORKER_MEMORY_MB) -> dict[str, Any]:
    """Run the whole pipeline for every clip of the config with a backend ("serial" or "ray": one task per clip
    and step, in dependency order); returns a summary (also OUT/config.json). Re-runs skip completed steps."""
    validate(cfg)
    if backend not in ("serial", "ray"):
        raise XincError(f"--backend {backend!r}: choose serial or ray")
    out = Path(cfg.out)
    root = Path(cfg.root) if cfg.root else out / "data"
    if cfg.synthetic is not None and cfg.root:  # generated data never goes over a folder xinc did not write
        check_output_dir(root, overwrite=True, what="root")
    if cfg.synthetic is None:  # the clip ids of a given dataset are checked before anything is written
        from xinc.data.panoptic import list_videos

        if not root.is_dir():
            raise XincError(f"{root}: dataset root not found; fix `root` in the config (or use `synthetic`)")
        for v in list_videos(cfg.dataset, root) if cfg.videos == "all" else cfg.videos:
            plain_name(v, f"{root}: clip id")
    with claimed_folder(out, inputs=[] if cfg.synthetic else [root], kind="run", what="out"):
        return _run_pipeline(cfg, out, root, command, backend, address, max_retries, worker_memory_mb)


def _run_pipeline(cfg: PipelineConfig, out: Path, root: Path, command: str | None, backend: str,
                  address: str | None, max_retries: int, worker_memory_mb: float | None) -> dict[str, Any]:
    from xinc.data.panoptic import list_videos

    ran, skipped = [], []
    if cfg.synthetic is not None:  # the data the clips are planned from: generated first, in this process
        pre = Plan(out, cfg.device)
        synth_step(pre, synth_config(cfg.synthetic, root, cfg.dataset, cfg.size))
        r, k = execute(out, list(pre.steps.values()), "serial", progress=False)
        ran, skipped = ran + r, skipped + k
        synth_key = pre.steps["synth"].key
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
    plan = Plan(out, cfg.device)
    if cfg.synthetic is not None:  # clips depend on the generated data's key (a regenerated dataset rebuilds)
        plan.add("data", None, root, {"synth": synth_key}, _nothing, confined=False)
    clips = {}
    for video in videos:
        clips[video] = clip_steps(
            plan, dataset=cfg.dataset, root=root, video=video, out=out / video, size=cfg.size,
            seed=cfg.seed, device=cfg.device, models=cfg.models, ffn=cfg.ffn, nerv=cfg.nerv, canvas=cfg.canvas,
            analyze=cfg.analyze, analyze_options=cfg.analyze_options, compare=cfg.compare, report=cfg.report,
            progress=cfg.progress and backend == "serial", layers=cfg.layers,
            after=["data"] if cfg.synthetic is not None else None)
    if cfg.report:
        report_step(plan, None, out, f"xinc report — {cfg.dataset}, {len(videos)} clip(s)",
                    [s for c in clips.values() for s in c["steps"]])
    steps = [st for st in plan.steps.values() if st.name != "data"]
    resolved = {"pipeline": to_jsonable(cfg), "root": str(root), "videos": videos, "backend": backend,
                "worker_memory_mb": (worker_memory_mb or None) if backend == "ray" else None,
                "commands": [st.command for st in steps if st.command],
                "command": command or "python: xinc.pipeline.run_pipeline(...)", "steps_run": ran,
                "steps_skipped": skipped, "clips": clips}
    write_json(out / "config.json", resolved)  # before the steps: the report shows its commands
    r, k = execute(out, steps, backend, address=address, max_retries=max_retries, progress=cfg.progress,
                   worker_memory_mb=worker_memory_mb)
    resolved.update(steps_run=ran + r, steps_skipped=skipped + k)
    if cfg.report:
        resolved["report"] = str(out / "report.html")
    write_json(out / "config.json", resolved)
    return resolved


def _nothing() -> None:
    """The data step of a plan: its key carries the generated dataset's key to every clip (run beforehand)."""


def synth_step(plan: Plan, cfg) -> Step:
    """Generate the synthetic dataset `cfg` (`xinc.data.config.write_synthetic`); the user's root stays unconfined."""
    command = command_line("xinc synth", cfg)
    return plan.add("synth", None, Path(cfg.out), {"config": as_json(cfg)}, functools.partial(_synth_step, cfg),
                    command, confined=False)


def _synth_step(cfg) -> None:
    from xinc.data.config import write_synthetic

    write_synthetic(dataclasses.replace(cfg, overwrite=Path(cfg.out).exists()))


# ----------------------------------------------------------------------------- xinc demo


@dataclass
class DemoConfig:
    """The whole pipeline end to end on generated data: a synthetic Cityscapes-VPS clip (exact flow and panoptic
    labels), the FFN trained on its first annotated frame and a NeRV on the clip, canvases, analyses A1-A6, the
    A6 comparison of the two architectures and one self-contained HTML report. About ten minutes on a 2-core CPU
    (--quick: tiny sizes, about a minute). Re-running skips finished steps. Everything is seeded from --seed."""

    out: Path = Path("runs/demo")
    """output folder (config.json, data/, models/, canvas/, ffn/, nerv/, report.html)"""
    seed: int = 0
    """seed of the data, the training and every analysis"""
    quick: bool = False
    """tiny sizes and step counts (the test suite runs this)"""
    device: str = "auto"
    """auto, cpu or cuda[:i]"""
    size: OptionalHW = None
    """HxW of the clip and models (default 64x128; quick 32x64)"""
    frames: int | None = None
    """frames of the synthetic clip (default 10: annotated frames 4 and 9)"""
    progress: bool = True
    """show progress bars on stderr"""

    def __post_init__(self) -> None:
        if self.size is not None:
            h, w = hw(self.size, "--size")
            if min(h, w) < 16:
                raise XincError(f"--size {h}x{w}: both sides must be >= 16 ; e.g. --size 32x64")
        optional(positive_int, self.frames, "--frames")

    def resolved(self) -> dict[str, Any]:
        """Every setting of the demo run, sizes and step counts included."""
        q = self.quick
        size = list(self.size or ([32, 64] if q else [64, 128]))
        frames = 10 if self.frames is None else int(self.frames)
        ffn = {"steps": 100, "width": 32, "eval_every": 50} if q else {"steps": 1000, "width": 104}
        nerv = ({"epochs": 30, "strides": [2, 2, 2], "fc_dim": 8, "lower_width": 6, "eval_every": 30} if q else
                {"epochs": 300, "strides": [4, 2, 2], "fc_dim": 24, "lower_width": 8, "eval_every": 50})
        analyze = {"analyses": "all", "mode": "linear" if q else "both"}
        if q:
            analyze["sample_neurons"] = 3
        options = {"a6": {"members": 3, "seed_runs": 2}, "a5": {"null": 2}} if q else {"a6": {"members": 6}}
        options["a7"] = {"neurons": 4, "fractions": "0,0.3,1"} if q else {"neurons": 8, "fractions": "0,0.1,0.3,0.6,1"}
        options["a2"] = {"neurons_needed": True}  # the opt-in statistic too: the demo shows every analysis
        return {"out": str(self.out), "seed": self.seed, "quick": q, "device": self.device, "size": size,
                "dataset": "cityscapes-vps", "synthetic": {"frames": frames, "videos": 1, "pan": 0.0, "things": None},
                "ffn": ffn, "nerv": nerv, "canvas": {"mode": "paper", "top": 8 if q else 12},
                "analyze": analyze, "analyze_options": options,
                "layers": {"ffn": "layer2,layer3", "nerv": "block3,head"} if q else {}}


def run_demo(cfg: DemoConfig, *, command: str | None = None) -> dict[str, Any]:
    """Synthetic Cityscapes-VPS clip -> FFN (first annotated frame) + NeRV (clip) -> canvases -> A1-A6 -> report."""
    r = cfg.resolved()
    out = Path(r["out"])
    validate(PipelineConfig(out=r["out"], dataset=r["dataset"], synthetic=SyntheticSpec(
        videos=1, frames=r["synthetic"]["frames"], seed=r["seed"]), size=r["size"], ffn=r["ffn"], nerv=r["nerv"],
        canvas=r["canvas"], analyze=r["analyze"], analyze_options=r["analyze_options"], layers=r["layers"]),
        "xinc demo")
    with claimed_folder(out, kind="demo", what="--out"):
        return _run_demo(cfg, r, out, command or command_line("xinc demo", cfg))


def _run_demo(cfg: DemoConfig, r: dict[str, Any], out: Path, command: str) -> dict[str, Any]:
    t0 = time.time()
    data = out / "data"
    size = r["size"]
    plan = Plan(out, r["device"])
    synth_step(plan, synth_config(SyntheticSpec(videos=1, frames=r["synthetic"]["frames"], seed=r["seed"]), data,
                                  r["dataset"], size))
    ran, skipped = execute(out, list(plan.steps.values()), "serial", progress=False)
    done = clip_steps(plan, dataset=r["dataset"], root=data, video="0001", out=out, size=size, seed=r["seed"],
                      device=r["device"], models=list(MODELS), ffn=r["ffn"], nerv=r["nerv"], canvas=r["canvas"],
                      analyze=r["analyze"], analyze_options=r["analyze_options"], compare=True, report=False,
                      progress=cfg.progress, layers=r["layers"], after=["synth"])
    steps = [st for st in plan.steps.values() if st.name != "synth"]
    r2, k2 = execute(out, steps, "serial", progress=False)
    from xinc.report.config import ReportConfig, write_report

    report = ReportConfig(run_dir=out, out=out / "report.html",
                          title="xinc demo — synthetic Cityscapes-VPS clip, FFN and NeRV")
    html = report.target()
    resolved = {"demo": r, "config": as_json(cfg), "command": command,
                "commands": [st.command for st in plan.steps.values() if st.command]
                + [command_line("xinc report", report, positional=_POSITIONAL)], "steps_run": ran + r2,
                "steps_skipped": skipped + k2, "runs": done["runs"], "ffn_frame": done["ffn_frame"]}
    write_json(out / "config.json", resolved)
    write_report(report)
    resolved["report"] = str(html)
    resolved["seconds"] = round(time.time() - t0, 1)
    write_json(out / "config.json", resolved)
    return resolved
