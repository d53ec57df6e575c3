"""A4 — do contribution changes between frames follow the motion? (SPEC §4 A4)

Per layer and consecutive frame pair (t-1, t): the contribution change
M_t(p) = Σ_k |A_k^t(p) − A_k^{t−1}(p)| with A_k = |C_k|, computed by streaming both frames'
canvases chunk by chunk in lockstep (same neuron range together), so no layer is ever held.

The paper shows M_t beside the optical-flow magnitude, visual only. Beyond the paper (every variant):
Pearson and Spearman correlation of M_t with the flow magnitude,
and AUROC of M_t as a detector of moving pixels (flow magnitude above `threshold` pixels), per
layer and frame pair; optionally after compensating global camera motion (a homography fitted
to the flow with OpenCV RANSAC; its induced flow is subtracted before scoring).

Flow comes from ctx.flow ((T-1, 2, H, W), channel 0 = horizontal u, 1 = vertical v, from
frames[i] to frames[i+1]: the synthetic clip's exact flow where the data is synthetic), else
OpenCV DIS on the images. Since forward flow marks an object's *old* position while M_t lights
up at both its old and new positions, the moving region is by default the moving pixels of
frame t-1 united with their destinations in frame t (`region="both"`; `"source"` = flow alone).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from xinc.analysis.registry import AnalysisContext, AnalysisResult, each_variant_layer, register_analysis
from xinc.errors import XincError

AID = "a4"


@dataclass
class MotionOptions:
    """Options of A4: what counts as moving, camera compensation, which frame pairs, where flow comes from."""

    threshold: float = 0.5  # flow magnitude (pixels) above which a pixel counts as moving
    compensate: bool = True  # also score after removing the camera's homography-induced flow
    region: Literal["both", "source"] = "both"  # "both" (source pixels + their destinations) or "source"
    ransac_threshold: float = 0.0  # RANSAC inlier tolerance (px) of the homography fit; 0 = threshold / 2
    max_points: int = 4000  # flow vectors sampled (seeded) for the homography fit
    max_pairs_shown: int = 3  # frame pairs whose maps are kept for the figure (data/a4.npz)
    figures: bool = True  # keep the maps for the figures (False: numbers and tables only)
    pairs: Literal["auto", "given", "previous"] = "auto"  # given = consecutive analysed frames; previous = t-1 -> t
    flow_file: str = ""  # (T-1, 2, H, W) .npy flow of the whole clip (e.g. synthetic flow_gt), used when no ctx.flow
    quantum: float = 0.05  # flow magnitudes are rounded to this step (px, ~optical-flow precision); 0 = off

    def validate(self) -> None:
        if self.threshold < 0 or self.ransac_threshold < 0 or self.quantum < 0:
            raise XincError(f"a4 options threshold={self.threshold}, ransac_threshold={self.ransac_threshold}, "
                            f"quantum={self.quantum}: negative ; must be >= 0 pixels")
        if self.ransac_threshold == 0:  # movers must be outliers of the camera fit, so stay below the moving cut
            self.ransac_threshold = max(self.threshold / 2, 0.05)


# ----------------------------------------------------------------------------- canvas side


def accumulate_change(chunks_prev: Iterator[tuple[int, torch.Tensor]],
                      chunks_next: Iterator[tuple[int, torch.Tensor]], what: str = "layer",
                      progress: Callable[[int], Any] | None = None) -> torch.Tensor:
    """Σ_k | |C_k^next| − |C_k^prev| | over two aligned chunk streams (same neuron ranges), (H, W) on the CPU.

    Runs under no_grad: interleaving two generators that each enter a grad-mode context would
    otherwise leave grad mode switched off for the caller when they finish in the wrong order.
    """
    total: torch.Tensor | None = None
    with torch.no_grad():
        for (s_prev, m_prev), (s_next, m_next) in zip(chunks_prev, chunks_next, strict=True):
            if s_prev != s_next or m_prev.shape != m_next.shape:
                raise RuntimeError(f"{what}: canvas chunks of the two frames are not aligned")
            d = (m_next.abs() - m_prev.abs()).abs()
            d = d.reshape(d.shape[0], -1, *d.shape[-2:]).sum(dim=(0, 1), dtype=torch.float64)
            total = d if total is None else total + d
            if progress is not None:
                progress(2 * m_prev.shape[0])
    if total is None:
        raise RuntimeError(f"{what}: the canvas stream was empty")
    return total.float().cpu()


def change_map(model: torch.nn.Module, layer: str, frame_prev: int, frame_next: int, *, mode: str = "paper",
               chunk_neurons: int | None = None, memory_budget_mb: float | None = None,
               device: torch.device | None = None, progress: Callable[[int], Any] | None = None) -> torch.Tensor:
    """M(p) = Σ_k | |C_k^next(p)| − |C_k^prev(p)| | for one layer of a model, (H, W) float32 on the CPU.

    Both frames' canvases are streamed together (iter_canvas in lockstep, chunk for chunk over the
    same neuron range), so peak memory is two chunks; a memory budget is split between the streams.
    """
    from xinc.canvas import iter_canvas

    budget = None if memory_budget_mb is None else memory_budget_mb / 2
    kw: dict[str, Any] = dict(mode=mode, chunk_neurons=chunk_neurons, memory_budget_mb=budget, device=device)
    return accumulate_change(iter_canvas(model, layer, frame_prev, **kw), iter_canvas(model, layer, frame_next, **kw),
                             layer, progress)


def _given_chunks(maps: torch.Tensor, chunk: int | None) -> Iterator[tuple[int, torch.Tensor]]:
    """Chunks of one frame's given (K, H, W) canvas, like the engine yields them."""
    step = max(1, int(chunk or maps.shape[0]))
    for s in range(0, maps.shape[0], step):
        yield s, maps[s:s + step]


def context_change_map(ctx: AnalysisContext, layer: str, frame_prev: int, frame_next: int,
                       canvas_mode: str) -> torch.Tensor:
    """change_map for an analysis context: the model's canvases, or ctx.canvases when given."""
    if ctx.canvases is None and getattr(ctx, "memo", None) is not None:  # canvases shared with other analyses
        kw: dict[str, Any] = dict(mode=canvas_mode, chunk_neurons=ctx.chunk_neurons,
                                  memory_budget_mb=None if ctx.memory_budget_mb is None else ctx.memory_budget_mb / 2,
                                  device=ctx.device)
        return accumulate_change(ctx.memo.chunks(ctx.model, layer, frame_prev, **kw),
                                 ctx.memo.chunks(ctx.model, layer, frame_next, **kw), layer,
                                 getattr(ctx, "progress", None))
    if ctx.canvases is None:
        return change_map(ctx.model, layer, frame_prev, frame_next, mode=canvas_mode, chunk_neurons=ctx.chunk_neurons,
                          memory_budget_mb=ctx.memory_budget_mb, device=ctx.device,
                          progress=getattr(ctx, "progress", None))
    given = ctx.canvases.get(canvas_mode, ctx.canvases)
    if layer not in given:
        raise XincError(f"canvases: no {canvas_mode!r} maps for layer {layer!r}; give them or use a model")
    maps = torch.as_tensor(given[layer])
    rows = ctx.frames.index(frame_prev), ctx.frames.index(frame_next)
    return accumulate_change(_given_chunks(maps[rows[0]], ctx.chunk_neurons),
                             _given_chunks(maps[rows[1]], ctx.chunk_neurons), layer)


# ----------------------------------------------------------------------------- flow side


def homography_flow(flow: np.ndarray, *, seed: int = 0, max_points: int = 4000,
                    ransac_threshold: float = 1.0) -> tuple[np.ndarray, np.ndarray | None, float]:
    """Fit a homography to a (2, H, W) flow field with RANSAC; return (induced flow, H, inlier share).

    The induced flow H(p) − p is the part of the motion explained by a global (camera) motion of a
    planar scene; subtracting it leaves the independently moving things. Returns zeros, None, 0
    when no homography can be fitted (e.g. fewer than 4 points).
    """
    import cv2

    _, h, w = flow.shape
    ys, xs = np.mgrid[0:h, 0:w]
    src_all = np.stack([xs.ravel(), ys.ravel()], 1).astype(np.float32)
    dst_all = src_all + np.stack([flow[0].ravel(), flow[1].ravel()], 1).astype(np.float32)
    rng = np.random.default_rng(seed)
    take = rng.choice(src_all.shape[0], size=min(max_points, src_all.shape[0]), replace=False)
    if take.size < 4:
        return np.zeros_like(flow), None, 0.0
    cv2.setRNGSeed(int(seed) % (2**31))
    H, inliers = cv2.findHomography(src_all[take], dst_all[take], cv2.RANSAC, ransac_threshold)
    if H is None:
        return np.zeros_like(flow), None, 0.0
    proj = cv2.perspectiveTransform(src_all[None], H)[0]
    induced = (proj - src_all).T.reshape(2, h, w).astype(np.float32)
    return induced, H, float(inliers.mean()) if inliers is not None else 0.0


def motion_magnitude(flow: np.ndarray, region: str = "both", quantum: float = 0.0) -> np.ndarray:
    """Per-pixel motion magnitude (H, W) of a (2, H, W) flow; 'both' also marks each pixel's destination.

    With 'both', a pixel p of frame t-1 moving by f(p) gives |f(p)| to p and to round(p + f(p))
    (maximum where several land), so the region covers the object in both frames of the pair.
    `quantum` > 0 rounds magnitudes to that step (px), so noise below the flow's precision (e.g. a
    camera fit's residue on static pixels) does not enter rank statistics.
    """
    mag = np.sqrt(flow[0] ** 2 + flow[1] ** 2)
    if quantum > 0:
        mag = np.round(mag / quantum) * quantum
    mag = mag.astype(np.float32)
    if region == "source":
        return mag
    h, w = mag.shape
    ys, xs = np.mgrid[0:h, 0:w]
    tx = np.rint(xs + flow[0]).astype(np.int64)
    ty = np.rint(ys + flow[1]).astype(np.int64)
    ok = (tx >= 0) & (tx < w) & (ty >= 0) & (ty < h)
    out = mag.copy().ravel()
    np.maximum.at(out, (ty[ok] * w + tx[ok]), mag[ok])
    return out.reshape(h, w)


def score_change(change: np.ndarray, magnitude: np.ndarray, threshold: float) -> dict[str, float | None]:
    """Pearson/Spearman of the change map with the motion magnitude, and AUROC for moving pixels.

    AUROC is None when every pixel is on the same side of the threshold (the score is undefined);
    correlations are None for constant inputs.
    """
    from scipy.stats import spearmanr
    from sklearn.metrics import roc_auc_score

    x = np.asarray(change, dtype=np.float64).ravel()
    y = np.asarray(magnitude, dtype=np.float64).ravel()
    moving = y > threshold
    constant = x.std() == 0 or y.std() == 0
    pearson = None if constant else float(np.corrcoef(x, y)[0, 1])
    spearman = None if constant else float(spearmanr(x, y).statistic)
    auroc = float(roc_auc_score(moving, x)) if 0 < moving.sum() < moving.size else None
    return {"pearson": pearson, "spearman": spearman, "auroc": auroc, "moving_fraction": float(moving.mean())}


def _as_numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _dis(images: list[torch.Tensor]) -> tuple[np.ndarray, str]:
    """OpenCV DIS flow between consecutive images of the list (the weight-free default estimator)."""
    from xinc.data.flow import compute_flow

    field = compute_flow(torch.stack([im.detach().cpu() for im in images]), method="dis")
    return _as_numpy(field.flow).astype(np.float32), f"{getattr(field, 'method', 'dis')} (computed by A4)"


def _clip_frames(ctx: AnalysisContext) -> tuple[torch.Tensor | None, str]:
    """All frames of the clip (panoptic clip frames), else None."""
    clip = ctx.panoptic
    frames = getattr(clip, "frames", None) if clip is not None else None
    return (frames, "clip") if isinstance(frames, torch.Tensor) and frames.dim() == 4 else (None, "")


def _flow_file(ctx: AnalysisContext, opts: MotionOptions) -> np.ndarray | None:
    """The (T-1, 2, H, W) flow of the whole clip from opts.flow_file, checked against the model's size."""
    if not opts.flow_file:
        return None
    path = Path(opts.flow_file)
    if not path.is_file():
        raise XincError(f"{path}: a4 flow_file not found ; give a (T-1, 2, H, W) .npy flow of the clip")
    full = np.load(path, allow_pickle=False).astype(np.float32)
    if full.ndim != 4 or full.shape[1] != 2 or full.shape[-2:] != tuple(ctx.images.shape[-2:]):
        raise XincError(f"{path}: flow has shape {tuple(full.shape)} ; expected (T-1, 2, "
                        f"{ctx.images.shape[-2]}, {ctx.images.shape[-1]}) at the model's resolution")
    return full


def _given_pairs(ctx: AnalysisContext, full: np.ndarray | None, name: str, consecutive: bool):
    """Consecutive analysed frames; flow from ctx.flow, else the flow file, else DIS."""
    frames = list(ctx.frames)
    pairs = list(zip(frames[:-1], frames[1:]))
    images = {f: ctx.images[i] for i, f in enumerate(frames)}
    if ctx.flow is not None:
        return pairs, images, _as_numpy(ctx.flow).astype(np.float32), ctx.flow_method
    if full is not None and consecutive and frames[-1] <= full.shape[0]:
        return pairs, images, full[frames[:-1]], f"file {name}"
    return (pairs, images, *_dis([images[f] for f in frames]))


def _previous_pairs(ctx: AnalysisContext, full: np.ndarray | None, name: str):
    """Each analysed frame t >= 1 with t-1; images from the clip (or the model); flow from the file, else DIS."""
    pairs = [(t - 1, t) for t in ctx.frames if t >= 1]
    clip, _ = _clip_frames(ctx)
    need = sorted({f for p in pairs for f in p})
    if clip is not None and clip.shape[0] > max(need, default=0):
        images = {f: clip[f] for f in need}
    else:
        with torch.no_grad():
            out = ctx.model(need) if hasattr(ctx.model, "embed") else None
        if out is None:
            raise XincError("a4 pairs=previous: needs the clip's frames or a video model ; give a panoptic clip")
        images = {f: out[i].detach().cpu().clamp(0, 1) for i, f in enumerate(need)}
    if full is not None and all(t <= full.shape[0] for _, t in pairs):
        return pairs, images, full[[a for a, _ in pairs]], f"file {name}"
    if pairs:
        parts = [_dis([images[a], images[b]]) for a, b in pairs]
        return pairs, images, np.concatenate([f for f, _ in parts]), parts[0][1]
    return pairs, images, np.zeros((0, 2, *ctx.images.shape[-2:]), np.float32), "none"


def frame_pairs(ctx: AnalysisContext, opts: MotionOptions
                ) -> tuple[list[tuple[int, int]], dict[int, torch.Tensor], np.ndarray, str]:
    """(pairs, {frame: image}, flow (n_pairs, 2, H, W), flow source) for the analysed frames.

    pairs='given': consecutive entries of ctx.frames (ctx.flow is the flow between them);
    pairs='previous': each analysed frame t >= 1 with model frame t-1 (e.g. the annotated frames
    4, 9, ... of a clip, whose neighbours are 5 frames apart), images from the clip (or the model's
    reconstruction); 'auto' = given when ctx.flow is set or the frames are consecutive.
    Flow: ctx.flow, else `flow_file` (a (T-1, 2, H, W) .npy of the whole clip, e.g. the synthetic
    generator's exact flow_gt/<video>/flow.npy), else DIS.
    """
    frames = list(ctx.frames)
    consecutive = all(b == a + 1 for a, b in zip(frames[:-1], frames[1:]))
    kind = opts.pairs if opts.pairs != "auto" else ("given" if ctx.flow is not None or consecutive else "previous")
    full, name = _flow_file(ctx, opts), Path(opts.flow_file).name
    if kind == "given":
        pairs, images, flow, method = _given_pairs(ctx, full, name, consecutive)
    else:
        pairs, images, flow, method = _previous_pairs(ctx, full, name)
    expect = (len(pairs), 2, *ctx.images.shape[-2:])
    if flow.shape != expect:
        raise XincError(f"a4: flow has shape {tuple(flow.shape)} but the analysed frame pairs need {expect} ; "
                        "give flow between consecutive analysed frames at the model's resolution")
    return pairs, images, flow, method


def _mean(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(vals)) if vals else None


# ----------------------------------------------------------------------------- the analysis


def _magnitudes(flow: np.ndarray, opts: MotionOptions, seed: int):
    """Per pair: flow magnitude, camera-compensated magnitude (or None) and the camera fit's numbers."""
    mags, comp, camera = [], [], []
    for i in range(flow.shape[0]):
        mags.append(motion_magnitude(flow[i], opts.region, opts.quantum))
        if opts.compensate:
            induced, _, inl = homography_flow(flow[i], seed=seed + i, max_points=opts.max_points,
                                              ransac_threshold=opts.ransac_threshold)
            comp.append(motion_magnitude(flow[i] - induced, opts.region, opts.quantum))
            camera.append({"inlier_share": inl, "mean_induced_px": float(np.sqrt((induced**2).sum(0)).mean())})
    return mags, comp, camera


def _layer(ctx, variant, cmode, layer, pairs, mags, comp, opts: MotionOptions) -> dict[str, Any]:
    """Change maps of one layer for every pair, their scores (raw, compensated) and the table rows."""
    maps, rows, scores, comp_scores = [], [], [], []
    for i, (fa, fb) in enumerate(pairs):
        m = context_change_map(ctx, layer, fa, fb, cmode).numpy()
        maps.append(m)
        s = score_change(m, mags[i], opts.threshold)
        scores.append(s)
        row = {"layer": layer, "variant": variant, "canvas_mode": cmode, "frame_prev": fa, "frame_next": fb,
               "mean_change": float(m.mean()), **s}
        if opts.compensate:
            c = score_change(m, comp[i], opts.threshold)
            comp_scores.append(c)
            row.update({f"{k}_compensated": v for k, v in c.items()})
        rows.append(row)
    summary = {k: _mean([s[k] for s in scores]) for k in ("auroc", "pearson", "spearman")}
    if opts.compensate:
        summary.update({f"{k}_compensated": _mean([s[k] for s in comp_scores]) for k in ("auroc", "pearson",
                                                                                        "spearman")})
    return {"maps": maps, "rows": rows, "summary": summary}


def _lines(per_layer: dict[str, dict[str, Any]], opts: MotionOptions) -> list[str]:
    lines = []
    for key, s in per_layer.items():
        if s["auroc"] is not None:
            text = f"{key}: AUROC {s['auroc']:.3f} of M_t for moving pixels, Spearman {s['spearman']:.3f}"
            if opts.compensate and s.get("auroc_compensated") is not None:
                text += f" (camera-compensated AUROC {s['auroc_compensated']:.3f})"
            lines.append(text)
    return lines or [f"no frame pair has both moving and static pixels at threshold {opts.threshold} px"]


def _shown(pairs, images, mags, comp, changes: dict[str, list[np.ndarray]], opts: MotionOptions) -> dict:
    """Arrays of the frame pairs with the most motion (at most max_pairs_shown), for the figure."""
    order = np.argsort([-float((m > opts.threshold).mean()) for m in mags])[:min(opts.max_pairs_shown, len(pairs))]
    shown = sorted(int(i) for i in order)
    use = comp if opts.compensate else mags
    out = {"shown/pairs": np.array([pairs[i] for i in shown], dtype=np.int64).reshape(-1, 2)}
    for j, i in enumerate(shown):
        out[f"shown/{j}/image"] = images[pairs[i][1]].detach().cpu().clamp(0, 1).numpy().astype(np.float32)
        out[f"shown/{j}/magnitude"] = np.asarray(use[i], dtype=np.float32)
        out.update({f"shown/{j}/change/{k}": v[i].astype(np.float32) for k, v in changes.items()})
    return out


@register_analysis(AID, "Motion: contribution change vs optical flow", options=MotionOptions, needs_flow=True,
                   needs_video=True)
def run(ctx: AnalysisContext, opts: MotionOptions) -> AnalysisResult:
    """A4 on every layer of ctx: change maps, flow scores (raw and camera-compensated)."""
    if not hasattr(ctx.model, "embed") and ctx.canvases is None:
        return AnalysisResult({"skipped": "A4 needs a video model (NeRV/HNeRV)"})
    pairs, images, flow, method = frame_pairs(ctx, opts)
    if not pairs:
        return AnalysisResult({"skipped": "A4 needs a frame pair (an analysed frame t >= 1)"})
    mags, comp, camera = _magnitudes(flow, opts, ctx.seed)
    modes = ctx.variants()
    grid = each_variant_layer(ctx, lambda v, cm, la: _layer(ctx, v, cm, la, pairs, mags, comp, opts))
    key = (lambda v, la: la) if len(modes) == 1 else (lambda v, la: f"{la}/{v}")
    per_layer = {key(v, la): r["summary"] for v, layers in grid.items() for la, r in layers.items()}
    res = AnalysisResult({
        "flow_method": method, "threshold_px": opts.threshold, "region": opts.region, "quantum_px": opts.quantum,
        "compensated": opts.compensate, "ransac_threshold_px": opts.ransac_threshold if opts.compensate else None,
        "canvas_modes": dict(modes), "pairs": len(pairs),
        "moving_fraction": _mean([float((m > opts.threshold).mean()) for m in mags]),
        "camera": {"mean_induced_px": _mean([c["mean_induced_px"] for c in camera]),
                   "inlier_share": _mean([c["inlier_share"] for c in camera])} if camera else None,
        "layers": per_layer}, summary=_lines(per_layer, opts))
    res.tables["scores"] = [row for layers in grid.values() for r in layers.values() for row in r["rows"]]
    if opts.figures:
        changes = {key(v, la): r["maps"] for v, layers in grid.items() for la, r in layers.items()}
        res.arrays = _shown(pairs, images, mags, comp, changes, opts)
    return res
