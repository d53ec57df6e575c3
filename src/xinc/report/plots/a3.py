"""Figures of A3 (contributions to objects, over time or in one frame): sampled neurons per segment, things vs stuff."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from xinc.analysis.registry import AnalysisResult, sub_arrays
from xinc.report.figures import category_legend, category_palette, new_figure
from xinc.report.plots import FigureRef, register_plot, save_figure

AID = "a3"
UNLABELLED = "unlabelled"
OTHER = "other (union of segments)"
STYLES = {"other": ":", "unlabelled": "--"}


def _tracks(rows: list[dict[str, Any]]) -> dict[tuple, list[tuple[int, float]]]:
    """{(kind, segment id, name): [(frame, normalised value)]} of one neuron's cells, sorted by frame."""
    tracks: dict[tuple, list] = {}
    for r in rows:
        tracks.setdefault((r["kind"], str(r["segment_id"]), r["category"]), []).append(
            (int(r["frame"]), float(r["normalised"])))
    return {k: sorted(v) for k, v in tracks.items()}


def _segments_figure(variant: str, cmode: str, section: dict, rows: list[dict], names: list[str], n_show: int):
    layers = list(section)
    palette = category_palette(sorted(set(names)) + [UNLABELLED, OTHER],
                               {UNLABELLED: (0.55, 0.55, 0.55), OTHER: (0.0, 0.0, 0.0)})
    used = set()
    single = len({int(x["frame"]) for x in rows}) <= 1  # one image (FFN): bars per segment, no time axis
    what = "in the frame" if single else "over frames"
    fig, axes = new_figure(len(layers), max(1, n_show), panel=(2.6, 1.9),
                           title=f"A3 normalised mean |C| per segment {what} — {variant} ({cmode} canvas)")
    for r, layer in enumerate(layers):
        sample = section[layer].get("sampled_neurons", [])
        for j in range(max(1, n_show)):
            ax = axes[r, j]
            if j >= len(sample):
                ax.axis("off")
                continue
            k = sample[j]
            mine = [x for x in rows if x["layer"] == layer and int(x["neuron"]) == k]
            ax.set_title(f"{layer}: neuron {k}")
            if single:
                used |= _bars(ax, _tracks(mine), palette, label=j == 0)
                continue
            for (kind, _, name), pts in _tracks(mine).items():
                x, y = zip(*pts)
                ax.plot(x, y, STYLES.get(kind, "-"), marker="o", ms=2.5, lw=1, color=palette[name], alpha=0.85)
                used.add(name)
            frames = sorted({int(x["frame"]) for x in mine})
            ax.set_ylim(-0.05, 1.05)
            if len(frames) > 1:
                ax.set_xticks(frames)
            ax.set_xlabel("frame")
            if j == 0:
                ax.set_ylabel("normalised mean |C|")
    shown = {n: c for n, c in palette.items() if n in used}
    category_legend(fig, shown, title="category", loc="upper left", bbox_to_anchor=(1.0, 0.95), max_cols=3,
                    styles={UNLABELLED: "--", OTHER: ":"})
    fig.tight_layout()
    return fig


def _bars(ax, tracks: dict[tuple, list[tuple[int, float]]], palette: dict, label: bool) -> set[str]:
    """One frame: a horizontal bar per segment (strongest on top), coloured by category."""
    items = sorted(((pts[0][1], name, kind) for (kind, _, name), pts in tracks.items()), reverse=True)
    ax.barh(range(len(items)), [v for v, _, _ in items], color=[palette[n] for _, n, _ in items],
            hatch=None, edgecolor=["0.3" if kind in STYLES else "none" for _, _, kind in items])
    ax.invert_yaxis()
    ax.set_yticks([])
    ax.set_xlim(0, 1.05)
    ax.set_xlabel("normalised mean |C|")
    if label:
        ax.set_ylabel("segments")
    return {n for _, n, _ in items}


def _ts_figure(variant: str, cmode: str, per_layer: dict[str, dict[str, Any]]):
    fig, axes = new_figure(1, 1, panel=(max(3.5, 1.6 * len(per_layer)), 2.8),
                           title=f"A3 things vs stuff vs unlabelled — {variant} ({cmode} canvas)")
    ax = axes[0, 0]
    data, labels, colors = [], [], []
    for layer, per in per_layer.items():
        for i, kind in enumerate(("things", "stuff", "unlabelled")):
            if per.get(kind) is not None:
                data.append(per[kind])
                labels.append(f"{layer}\n{kind}")
                colors.append(("C3", "C2", "0.6")[i])
    if data:
        bp = ax.boxplot(data, patch_artist=True, showfliers=False)
        for patch, c in zip(bp["boxes"], colors):
            patch.set_facecolor(c)
        ax.set_xticks(range(1, len(labels) + 1))
        ax.set_xticklabels(labels, fontsize=6)
    ax.set_ylabel("per-neuron mean normalised |C|")
    fig.tight_layout()
    return fig


@register_plot(AID)
def plot(result: AnalysisResult, out: Path) -> list[FigureRef]:
    """Per variant: sampled neurons' normalised mean |C| per segment over frames, and things vs stuff boxes."""
    figs = []
    n_show = int(result.numbers.get("sampling", {}).get("neurons_per_layer", 6))
    cells = result.tables.get("sampled_cells", [])
    cats = result.tables.get("categories", [])
    for variant, cmode in result.numbers.get("canvas_modes", {}).items():
        section = result.numbers.get(variant, {})
        rows = [r for r in cells if r["variant"] == variant]
        names = [r["category"] for r in cats if r["variant"] == variant and r["kind"] == "segment"]
        if n_show > 0:
            one = len({int(r["frame"]) for r in rows}) <= 1
            how = ("inside each segment of the one frame (a bar per segment, strongest first; outlined = unlabelled "
                   "area or the original's union 'other')" if one else "inside each segment across frames "
                   "(dashed = unlabelled area, dotted = the original's union 'other')")
            figs.append(save_figure(_segments_figure(variant, cmode, section, rows, names, n_show), out, AID,
                                    f"segments_over_time_{variant}", f"Seeded sample of {n_show} neurons per layer: "
                                    f"normalised mean |C| {how}, coloured by category ({variant})."))
        per_layer = {la: sub_arrays(result.arrays, f"{variant}/{la}") for la in section}
        figs.append(save_figure(_ts_figure(variant, cmode, per_layer), out, AID, f"things_stuff_{variant}",
                                f"Per-neuron mean normalised |C| over thing, stuff and unlabelled cells ({variant})."))
    return figs
