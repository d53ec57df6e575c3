"""A7 — do the canvases tell the truth? Maps checked against ablations, and deletion/insertion curves.

Per layer and canvas mode (paper, linear), for a seeded sample of neurons (all with neurons=0): the neuron is
removed (its weight slice and its bias share, as the rules split the bias; in linear mode also its 1/K share of
the downstream biases, which that rule splits over the neurons too) and the true change of the output
logits, summed over RGB, is compared per pixel with the neuron's map: Pearson correlation and relative error
||C - Δ|| / ||Δ||. Ablations are batched (many neurons per pass through the downstream layers only).
Deletion / insertion curves: remove neurons in order of total |C| (per mode), of the weight L1 of their
slice (NeRV's pruning criterion) and at random; PSNR vs the fraction removed, and its area (mean PSNR over the
curve). Region-restricted deletion: neurons ranked by |C| inside a region (a panoptic segment of the run's
labels, by id, category or the largest, or a pixel box), PSNR change inside vs outside. Where a layer's whole
canvas is unaffordable in a mode (a7.rank_modes), only the sampled neurons' maps are computed.
Figures: xinc.report.plots.a7.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from xinc.analysis.estimates import mean_estimate, median_interval
from xinc.analysis.registry import AnalysisContext, AnalysisResult, register_analysis
from xinc.canvas.ablation import ablation_effects, logits_without, num_neurons, weight_l1
from xinc.canvas.reduce import GroupSums, NeuronTotals, Reducer
from xinc.errors import XincError

AID = "a7"
RANKINGS = ("magnitude", "random")  # besides contribution:<mode>


@dataclass
class A7Options:
    """Options of A7 (`--option a7.neurons=256`)."""

    neurons: int = 16  # neurons per layer checked against their ablation (0 = every neuron)
    frames: int = 1  # analysed frames A7 uses (evenly spaced over the run's frames)
    batch: int = 16  # neurons ablated per downstream pass
    fractions: str = "0,0.05,0.1,0.2,0.3,0.5,0.7,1"  # fractions removed for the deletion/insertion curves
    region: str = "auto"  # region deletion: see region_spec (box, segment:ID, category:NAME, largest, auto, none)
    rank_modes: str = "paper,linear"  # modes whose whole canvas ranks neurons by |C|; others: sampled maps only

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Counts in range, well-formed fractions, region and ranking modes (checked against the data later)."""
        if self.neurons < 0 or self.frames < 1 or self.batch < 1:
            raise XincError("a7 options: neurons >= 0, frames >= 1 and batch >= 1 ; fix the --option a7.* values")
        parse_fractions(self.fractions)
        region_spec(self.region)
        parse_rank_modes(self.rank_modes)


def parse_rank_modes(text: str) -> set[str]:
    """The canvas modes of a7.rank_modes ('paper,linear', 'paper', 'linear' or 'none')."""
    modes = {m.strip() for m in str(text).split(",") if m.strip()} - {"none"}
    if not modes <= {"paper", "linear"}:
        raise XincError(f"a7.rank_modes {text!r}: not a list of canvas modes ; give paper,linear, paper, linear "
                        "or none")
    return modes


def canvas_need(opts: A7Options, num_frames: int, mode: str, num_neurons: int) -> tuple[int, int]:
    """(maps per frame, frames) of `mode`'s canvas that A7 computes: the whole layer in the ranking modes
    (a7.rank_modes), only the sampled neurons in the others, over a7.frames of the run's frames (cost estimate)."""
    frames = min(opts.frames, num_frames)
    if mode in parse_rank_modes(opts.rank_modes) or opts.neurons == 0:
        return num_neurons, frames
    return min(opts.neurons, num_neurons), frames


def parse_fractions(text: str) -> np.ndarray:
    """Sorted unique fractions in [0, 1] from '0,0.1,...' (at least two)."""
    try:
        f = sorted({float(v) for v in str(text).split(",") if v.strip()})
    except ValueError:
        f = []
    if len(f) < 2 or f[0] < 0 or f[-1] > 1:
        raise XincError(f"a7.fractions {text!r}: need at least two comma-separated fractions in [0, 1] ; "
                        "e.g. 0,0.1,0.3,1")
    return np.asarray(f, dtype=np.float64)


def region_spec(spec: str) -> tuple[str, object]:
    """Parsed a7.region: ('none'|'auto'|'largest', None), ('box', (y0, y1, x0, x1)), ('segment', id) or
    ('category', name or id). Checked against the model's size and the panoptic labels at run time."""
    s = str(spec).strip()
    if s in ("none", "auto", "largest"):
        return s, None
    kind, _, arg = s.partition(":")
    if kind == "segment" and arg.strip().isdigit():
        return "segment", int(arg)
    if kind == "category" and arg.strip():
        return "category", arg.strip()
    vals = s.split(",")
    if len(vals) == 4 and all(v.strip().lstrip("-").isdigit() for v in vals):
        return "box", tuple(int(v) for v in vals)
    raise XincError(f"a7.region {spec!r}: not a region ; give y0,y1,x0,x1, segment:ID, category:NAME, largest, "
                    "auto or none")


def region_box(spec: str, H: int, W: int) -> tuple[int, int, int, int] | None:
    """(y0, y1, x0, x1) of a box spec ('auto' = the centre half in each direction) or None ('none')."""
    if spec == "none":
        return None
    if spec == "auto":
        return H // 4, H - H // 4, W // 4, W - W // 4
    kind, box = region_spec(spec)
    y0, y1, x0, x1 = box if kind == "box" else (-1, -1, -1, -1)
    if not (0 <= y0 < y1 <= H and 0 <= x0 < x1 <= W) or (y1 - y0) * (x1 - x0) == H * W:
        raise XincError(f"a7.region {spec!r}: need y0,y1,x0,x1 with 0 <= y0 < y1 <= {H}, 0 <= x0 < x1 <= {W}, "
                        "not the whole image ; or use auto / none")
    return y0, y1, x0, x1


def largest_segment(labels: dict, frames: list[int], H: int, W: int) -> int | None:
    """Track id present (not everywhere) in every frame with the largest area summed over them (ties: the
    smallest id), or None when no segment is."""
    area: dict[int, int] = {}
    for j, f in enumerate(frames):
        here = {seg.id: int(seg.area) for seg in labels[f][1] if 0 < int(seg.area) < H * W}
        area = {k: v + here[k] for k, v in area.items() if k in here} if j else here
    return min(area, key=lambda k: (-area[k], k)) if area else None


def _segment_masks(kind: str, arg, labels: dict, frames: list[int]) -> tuple[dict[int, torch.Tensor], str]:
    """Per-frame masks of one segment id or of every segment of a category (name or id), and a label."""
    masks, names = {}, set()
    for f in frames:
        ids, segs = labels[f]
        ids = torch.as_tensor(ids)
        if kind == "segment":
            chosen = [s for s in segs if s.id == arg]
        else:
            chosen = [s for s in segs if s.name.lower() == str(arg).lower() or str(s.category_id) == str(arg)]
        names.update(s.name for s in chosen)
        masks[f] = torch.isin(ids, torch.tensor([s.id for s in chosen] or [-1], dtype=ids.dtype))
    what = f"segment {arg}" if kind == "segment" else f"category {arg}"
    return masks, f"{what} ({', '.join(sorted(names)) or 'absent'})"


def region_masks(ctx: AnalysisContext, spec: str, frames: list[int], H: int, W: int
                 ) -> tuple[dict[int, torch.Tensor] | None, dict]:
    """Bool (H, W) region mask per A7 frame and its description, from a7.region: a pixel box, or a panoptic
    segment of the run's labels (by id, by category, or the largest); 'auto' = the largest segment when every
    A7 frame is labelled, else the centre box."""
    from xinc.analysis.objects import labelled_frames

    kind, arg = region_spec(spec)
    labels = labelled_frames(ctx) if ctx.panoptic is not None else {}
    if kind == "auto":
        labelled = bool(frames) and all(f in labels for f in frames)
        kind = "largest" if labelled and largest_segment(labels, frames, H, W) is not None else "box"
    if kind == "none":
        return None, {"kind": "none"}
    if kind == "box":
        y0, y1, x0, x1 = region_box("auto" if arg is None else spec, H, W)
        m = torch.zeros(H, W, dtype=torch.bool)
        m[y0:y1, x0:x1] = True
        return {f: m for f in frames}, {"kind": "box", "box": [y0, y1, x0, x1],
                                        "label": f"box y {y0}:{y1}, x {x0}:{x1}"}
    missing = [f for f in frames if f not in labels]
    if missing:
        raise XincError(f"a7.region {spec}: frames {missing} have no panoptic labels ; give --dataset/--root/--video "
                        "and annotated --frames, or a pixel box y0,y1,x0,x1")
    if kind == "largest":
        kind, arg = "segment", largest_segment(labels, frames, H, W)
        if arg is None:
            raise XincError(f"a7.region {spec}: no segment is present in every A7 frame {frames} ; pick fewer "
                            "--frames, a segment:ID or a pixel box")
    masks, label = _segment_masks(kind, arg, labels, frames)
    for f, m in masks.items():
        n = int(m.sum())
        if tuple(m.shape) != (H, W) or n in (0, H * W):
            raise XincError(f"a7.region {spec}: the {label} region covers {n} of {H}x{W} pixels of frame {f} ; "
                            "pick a segment present (not everywhere) in every A7 frame, or other --frames")
    if region_spec(spec)[0] in ("largest", "auto"):
        label = "largest " + label
    return masks, {"kind": kind, "spec": spec, "label": label, "pixels": {f: int(m.sum()) for f, m in masks.items()},
                   **({"segment_id": arg} if kind == "segment" else {"category": arg})}


def pearson_from_sums(s: torch.Tensor) -> torch.Tensor:
    """Pearson r per row of sufficient statistics [n, Σc, Σd, Σc², Σd², Σcd, Σ(c-d)²] (NaN where constant)."""
    n, sc, sd, scc, sdd, scd = (s[:, j] for j in range(6))
    cov = scd - sc * sd / n
    var = (scc - sc * sc / n).clamp_min(0) * (sdd - sd * sd / n).clamp_min(0)
    return torch.where(var > 0, cov / var.sqrt(), torch.full_like(cov, float("nan")))


class AblationCheck(Reducer):
    """Compares the maps of sampled neurons with their true ablation effect, chunk by chunk (no maps kept).

    Per neuron, over every streamed frame: Pearson r of map and Δ and the relative error ||C - Δ|| / ||Δ||."""

    def __init__(self, model, layer: str, traces: dict, sample: torch.Tensor, batch: int,
                 downstream_bias: bool = False) -> None:
        self.model, self.layer, self.traces, self.batch = model, layer, traces, batch
        self.downstream_bias = downstream_bias
        self.sample = torch.as_tensor(sample, dtype=torch.long)
        self.stats = torch.zeros(len(self.sample), 7, dtype=torch.float64)
        self.exact: list[bool] = []

    def update(self, start: int, maps: torch.Tensor) -> None:
        hit = ((self.sample >= start) & (self.sample < start + maps.shape[0])).nonzero().flatten()
        if not len(hit):
            return
        idx = self.sample[hit]
        delta = ablation_effects(self.model, self.layer, self.traces[self.frame], idx, self.batch,
                                 self.downstream_bias).double()
        c = maps[idx - start].reshape(len(idx), -1).double().cpu()
        d = delta.reshape(len(idx), -1)
        self.stats[hit] += torch.stack([torch.full((len(idx),), float(c.shape[1]), dtype=torch.float64),
                                        c.sum(1), d.sum(1), (c * c).sum(1), (d * d).sum(1), (c * d).sum(1),
                                        ((c - d) ** 2).sum(1)], 1)

    def end_frame(self) -> None:
        self.exact.append(bool(self.info.exact))

    def result(self) -> dict[str, torch.Tensor]:
        s = self.stats
        return {"pearson": pearson_from_sums(s), "rel_error": (s[:, 6] / s[:, 4].clamp_min(1e-300)).sqrt()}


def output_image(model, logits: torch.Tensor) -> torch.Tensor:
    """The model's image from its logits (NeRV: 0.5 tanh(z) + 0.5; the FFN outputs its logits)."""
    return model.output_act(logits) if hasattr(model, "output_act") else logits


MSE_FLOOR = 1.0 / (12 * 255**2)  # 8-bit quantisation noise: PSNR is capped at 58.9 dB (finite for the model itself)


def capped_psnr(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """PSNR (dB) of (S, 3, H, W) predictions clamped to [0, 1] against (3, H, W), over `mask` pixels if given;
    MSE floored at 8-bit quantisation noise, so a reference equal to the output (no ground truth) stays finite."""
    err = (pred.clamp(0, 1).double() - gt.double()) ** 2
    mse = err.mean(dim=(1, 2, 3)) if mask is None else err[..., mask].mean(dim=(1, 2))
    return 10 * torch.log10(1.0 / mse.clamp_min(MSE_FLOOR))


def removal_psnr(model, layer: str, traces: dict, images: dict, removed: torch.Tensor,
                 masks: dict[int, torch.Tensor] | None = None, group: int = 8) -> torch.Tensor:
    """Mean PSNR over frames per removal set (S,) — or (S, 2) inside/outside each frame's region mask — from
    downstream passes."""
    out = []
    for f, tr in traces.items():
        rows = []
        mask = None if masks is None else masks[f]
        for a in range(0, removed.shape[0], group):
            pred = output_image(model, logits_without(model, layer, tr, removed[a:a + group])).cpu()
            gt = images[f].cpu()
            rows.append(capped_psnr(pred, gt) if mask is None else torch.stack([capped_psnr(pred, gt, mask),
                                                                                 capped_psnr(pred, gt, ~mask)], -1))
        out.append(torch.cat(rows, 0))
    return torch.stack(out, 0).mean(0)


def removal_sets(order: torch.Tensor, fractions: np.ndarray, insertion: bool = False) -> torch.Tensor:
    """(S, K) bool: the first round(f K) neurons of `order` removed (deletion) or the only ones kept (insertion)."""
    K = order.numel()
    sets = torch.zeros(len(fractions), K, dtype=torch.bool)
    for j, f in enumerate(fractions):
        top = order[: int(round(f * K))]
        sets[j, top] = True
    return ~sets if insertion else sets


def auc(fractions: np.ndarray, psnr: np.ndarray) -> float:
    """Area under a PSNR curve divided by the fraction span: the curve's mean PSNR in dB."""
    y = np.asarray(psnr, dtype=np.float64)
    return float(np.sum((y[1:] + y[:-1]) * np.diff(fractions)) / 2 / (fractions[-1] - fractions[0]))


def _sample(K: int, n: int, gen: torch.Generator) -> torch.Tensor:
    """Sorted seeded sample of n of K neuron indices (all when n is 0 or at least K)."""
    if n == 0 or n >= K:
        return torch.arange(K)
    return torch.randperm(K, generator=gen)[:n].sort().values


def _spaced(frames: list[int], n: int) -> list[int]:
    """n frames evenly spaced over `frames` (all when there are fewer)."""
    if n >= len(frames):
        return list(frames)
    return [frames[int(round(j * (len(frames) - 1) / max(1, n - 1)))] for j in range(n)] if n > 1 else [frames[0]]


def _traces(model, frames: list[int]) -> dict:
    with torch.no_grad():
        return {f: model.trace([f]) if hasattr(model, "blocks") else model.trace() for f in frames}


def mode_summary(res: dict[str, torch.Tensor], exact: bool, population: int | None = None) -> dict[str, Any]:
    """Median/mean/10th-percentile Pearson and median/mean relative error over the checked neurons, and whether
    the canvas was complete (its maps sum exactly to what they decompose: the completeness flag, not ablation).

    With the layer's neuron count `population`, the medians carry their sampling error: a distribution-free
    95 % interval (order statistics; exact when every neuron was checked) and the mean an SE with the FPC.
    """
    r, e = res["pearson"].numpy(), res["rel_error"].numpy()
    ok = np.isfinite(r)

    def q(x, fn):
        return float(fn(x)) if x.size else float("nan")

    out = {"neurons": int(r.size), "constant": int((~ok).sum()), "pearson_median": q(r[ok], np.median),
           "pearson_mean": q(r[ok], np.mean), "pearson_p10": q(r[ok], lambda x: np.percentile(x, 10)),
           "rel_error_median": q(e, np.median), "rel_error_mean": q(e, np.mean), "maps_sum_exact": bool(exact)}
    if population:
        N = max(int(population), int(r.size))
        out.update(pearson_median_ci95=median_interval(r, N)["ci"], rel_error_median_ci95=median_interval(e, N)["ci"],
                   pearson_mean_estimate=mean_estimate(r[ok], N))
    return out


def sample_runs(sample: torch.Tensor) -> list[tuple[int, int]]:
    """Contiguous [a, b) ranges covering a sorted index sample (what the engine's neurons=(a, b) takes)."""
    s = torch.as_tensor(sample, dtype=torch.long).reshape(-1)
    if not s.numel():
        return []
    cut = torch.nonzero(s[1:] != s[:-1] + 1).flatten() + 1
    starts = torch.cat([s[:1], s[cut]]).tolist()
    stops = (torch.cat([s[cut - 1], s[-1:]]) + 1).tolist()
    return list(zip(starts, stops))


def stream_sample(ctx: AnalysisContext, layer: str, cmode: str, frames: list[int], traces: dict,
                  sample: torch.Tensor, reducers: list) -> None:
    """Drive reducers over the sampled neurons' maps only (the engine's neuron ranges, reusing the traces): for
    layers whose whole canvas is unaffordable in a mode (linear block 1 of a NeRV on a CPU)."""
    from xinc.canvas import stream_canvas

    for a, b in sample_runs(sample):
        stream_canvas(ctx.model, layer, frames, reducers, mode=cmode, chunk_neurons=ctx.chunk_neurons,
                      memory_budget_mb=ctx.memory_budget_mb, device=ctx.device, progress=ctx.progress,
                      neurons=(a, b), trace=traces)


def check_layer(ctx: AnalysisContext, layer: str, opts: A7Options, frames: list[int], traces: dict,
                sample: torch.Tensor, labels: dict | None) -> tuple[dict, dict, dict]:
    """Per canvas mode: ablation check of the sampled neurons, and for the ranking modes (a7.rank_modes) total
    |C| per neuron and |C| inside the region (these need the whole canvas; other modes stream the sample only)."""
    per_mode, scores, region = {}, {}, {}
    rank = parse_rank_modes(opts.rank_modes)
    for _, cmode in ctx.variants():
        # the linear rule splits downstream biases over the neurons too: its ablation takes that share along
        check = AblationCheck(ctx.model, layer, traces, sample, opts.batch, downstream_bias=cmode == "linear")
        if cmode in rank or ctx.canvases is not None:
            tot = NeuronTotals()
            reducers = [check, tot] + ([GroupSums(labels, 2)] if labels is not None else [])
            ctx.stream(layer, reducers, canvas_mode=cmode, frames=frames)
            scores[f"contribution-{cmode}"] = sum(v.double() for v in tot.result().values()).reshape(-1)
            if labels is not None:
                region[f"contribution-{cmode}"] = sum(v[..., 1].double() for v in reducers[2].result().values())
        else:
            stream_sample(ctx, layer, cmode, frames, traces, sample, [check])
        res = check.result()
        summary = mode_summary(res, all(check.exact), population=num_neurons(ctx.model, layer))
        per_mode[cmode] = {"summary": {**summary, "ranked": f"contribution-{cmode}" in scores}, **res}
    return per_mode, scores, region


def layer_curves(ctx: AnalysisContext, layer: str, scores: dict, region: dict, traces: dict, images: dict,
                 fractions: np.ndarray, masks: dict[int, torch.Tensor] | None) -> dict[str, np.ndarray]:
    """Deletion/insertion PSNR curves per ranking, and region-restricted deletion (PSNR change in/out)."""
    out = {}
    for name, s in scores.items():
        order = torch.argsort(-s, stable=True)
        both = torch.cat([removal_sets(order, fractions), removal_sets(order, fractions, insertion=True)], 0)
        p = removal_psnr(ctx.model, layer, traces, images, both).numpy()
        out[f"deletion/{name}"], out[f"insertion/{name}"] = p[:len(fractions)], p[len(fractions):]
    if masks is not None:
        K = next(iter(scores.values())).numel()
        base = torch.zeros(1, K, dtype=torch.bool)
        for name, s in {**region, "random": scores["random"]}.items():
            sets = torch.cat([base, removal_sets(torch.argsort(-s, stable=True), fractions)], 0)
            p = removal_psnr(ctx.model, layer, traces, images, sets, masks).numpy()
            d = p[1:] - p[:1]
            out[f"region_in/{name}"], out[f"region_out/{name}"] = d[:, 0], d[:, 1]
    return out


def _ci(rec: dict, key: str) -> str:
    """' [95% CI lo, hi]' of a sampled median, '' when every neuron was checked or n is too small for one."""
    ci = rec.get(f"{key}_ci95")
    return "" if not ci or ci[0] == ci[1] else f" [95% CI {ci[0]:.3f}, {ci[1]:.3f}]"


def finding(layer: str, modes: dict[str, dict]) -> str | None:
    """Which rule predicts the ablations better on this layer, with the numbers (None with one mode)."""
    if not {"paper", "linear"} <= set(modes):
        return None
    p, lin = modes["paper"], modes["linear"]
    numbers = (f"median Pearson {lin['pearson_median']:.3f}{_ci(lin, 'pearson_median')} (linear) vs "
               f"{p['pearson_median']:.3f}{_ci(p, 'pearson_median')} (paper), median relative error "
               f"{lin['rel_error_median']:.3g} vs {p['rel_error_median']:.3g} over {p['neurons']} neurons")
    tie = abs(lin["pearson_median"] - p["pearson_median"]) < 1e-3 and \
        abs(lin["rel_error_median"] - p["rel_error_median"]) <= 1e-3 * max(p["rel_error_median"], 1e-3)
    if tie:  # the same maps (exact layers: the head, the FFN's last layer)
        return f"{layer}: both rules predict ablations equally well — {numbers}"
    better = "linear" if (lin["pearson_median"], -lin["rel_error_median"]) > (p["pearson_median"],
                                                                             -p["rel_error_median"]) else "paper"
    return f"{layer}: the {better} rule predicts ablations better — {numbers}"


@register_analysis(AID, "Faithfulness: canvases vs ablations", options=A7Options)
def run(ctx: AnalysisContext, opts: A7Options) -> AnalysisResult:
    """A7 over ctx.layers and the canvas modes of ctx.mode (see the module docstring)."""
    model = ctx.model
    if model is None:
        raise XincError("a7: needs the model (it removes neurons and reruns the network) ; run it on a model dir")
    fractions = parse_fractions(opts.fractions)
    H, W = model.config.height, model.config.width
    frames = _spaced(list(ctx.frames), opts.frames)
    masks, region = region_masks(ctx, opts.region, frames, H, W)
    traces = _traces(model, frames)
    images = {f: ctx.image(f) for f in frames}
    gen = torch.Generator().manual_seed(int(ctx.seed))
    res = AnalysisResult(numbers={"frames": frames, "fractions": fractions.tolist(), "region": region,
                                  "region_box": region.get("box"), "layers": {}}, arrays={"fractions": fractions})
    if masks is not None:
        res.arrays["region_mask"] = masks[frames[0]].numpy().astype(np.uint8)
    rows, curve_rows = [], []
    for layer in ctx.layers:
        t0 = time.perf_counter()
        K = num_neurons(model, layer)
        sample = _sample(K, opts.neurons, gen)
        per_mode, scores, in_region = check_layer(ctx, layer, opts, frames, traces, sample,
                                                  None if masks is None else {f: m.long() for f, m in masks.items()})
        t_check = time.perf_counter() - t0
        scores.update({"magnitude": weight_l1(model, layer).double(), "random": torch.rand(K, generator=gen).double()})
        curves = layer_curves(ctx, layer, scores, in_region, traces, images, fractions, masks)
        rec = {m: v["summary"] for m, v in per_mode.items()}
        rec.update(num_neurons=K, seconds_check=t_check, seconds_total=time.perf_counter() - t0,
                   deletion_auc={n: auc(fractions, curves[f"deletion/{n}"]) for n in scores},
                   insertion_auc={n: auc(fractions, curves[f"insertion/{n}"]) for n in scores})
        if masks is not None:  # PSNR lost outside minus inside, averaged over the curve: > 0 = it targets the region
            rec["region_selectivity_db"] = {n: auc(fractions, curves[f"region_out/{n}"] - curves[f"region_in/{n}"])
                                            for n in [*in_region, "random"]}
        res.numbers["layers"][layer] = rec
        res.arrays[f"{layer}/neurons"] = sample.numpy()
        for m, v in per_mode.items():
            res.arrays[f"{layer}/pearson/{m}"] = v["pearson"].numpy()
            res.arrays[f"{layer}/rel_error/{m}"] = v["rel_error"].numpy()
            rows.append({"layer": layer, "mode": m, "num_neurons": K, **v["summary"]})
        res.arrays.update({f"{layer}/{k}": v for k, v in curves.items()})
        curve_rows += [{"layer": layer, "ranking": n, "deletion_auc_db": rec["deletion_auc"][n],
                        "insertion_auc_db": rec["insertion_auc"][n],
                        "region_selectivity_db": rec.get("region_selectivity_db", {}).get(n, "")} for n in scores]
        line = finding(layer, rec)
        if line:
            res.summary.append(line)
        if masks is not None:
            sel = rec["region_selectivity_db"]
            top = max(sel, key=sel.get)
            res.summary.append(f"{layer}: inside {region['label']}, removing by {top} costs {sel[top]:.2f} dB more "
                               "PSNR inside than outside (" + ", ".join(f"{n} {v:.2f}" for n, v in sel.items()) + ")")
        best = min(rec["deletion_auc"], key=rec["deletion_auc"].get)
        res.summary.append(f"{layer}: deleting by {best} hurts most (deletion AUC {rec['deletion_auc'][best]:.2f} dB; "
                           + ", ".join(f"{n} {v:.2f}" for n, v in rec["deletion_auc"].items()) + ")")
    res.tables = {"faithfulness": rows, "curves": curve_rows}
    res.numbers.update(report_tables(res.numbers["layers"]))
    return res


def report_tables(layers: dict[str, dict]) -> dict[str, dict]:
    """Flat per-mode and per-ranking tables of the per-layer records (what the report shows as grids)."""
    keys = ("neurons", "pearson_median", "pearson_median_ci95", "pearson_p10", "rel_error_median",
            "rel_error_median_ci95", "maps_sum_exact")
    out: dict[str, dict] = {"faithfulness": {}, "deletion_auc_db": {}, "insertion_auc_db": {}, "seconds": {}}
    for layer, rec in layers.items():
        for mode in ("paper", "linear"):
            if mode in rec:
                row = {k: rec[mode].get(k) for k in keys}
                out["faithfulness"][f"{layer} {mode}"] = {"of": rec["num_neurons"], **row}
        out["deletion_auc_db"][layer] = rec["deletion_auc"]
        out["insertion_auc_db"][layer] = rec["insertion_auc"]
        out["seconds"][layer] = {"ablation check": rec["seconds_check"], "total": rec["seconds_total"]}
        if "region_selectivity_db" in rec:
            out.setdefault("region_selectivity_db", {})[layer] = rec["region_selectivity_db"]
    return out
