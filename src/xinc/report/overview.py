"""The report's overview: the paper-style hero figures of each run shown large (canvas of sampled neurons, A1
heat/difference maps, A2 neurons per pixel, A4 flow vs fluctuation), the contribution videos embedded, and a
link to the explorer page. Reads what the analyses and `xinc video` wrote; computes nothing."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from xinc.utils import read_json

# (analysis id, figure file-name prefix, what the hero shows)
HEROES = (("a1", "maps", "A1 — where the contribution goes: heat map, intensity and their difference"),
          ("a2", "neurons_per_pixel", "A2 — how many neurons carry each pixel"),
          ("a4", "change_maps", "A4 — flow against the fluctuation of contributions between frames"))
VIDEO_KINDS = {"neurons": "Source beside the contribution maps of seeded sampled neurons (head and last block; "
                          "one colour scale per neuron over all frames)",
               "flow": "Source, optical flow (colour wheel) and the fluctuation M_t of each layer",
               "grid": "The strongest neurons of a layer"}
EMBED_VIDEO_BYTES = 4_000_000  # larger MP4s are referenced beside the page instead of embedded


def hero_figures(run: Path, res: dict[str, Any]) -> list[tuple[Path, str]]:
    """(png, title) of each hero figure the run has (the first figure of the analysis whose name matches)."""
    from xinc.report.html import inside

    out = []
    for aid, prefix, title in HEROES:
        figs = [f for f in ((res.get(aid) or {}).get("figures") or []) if isinstance(f, dict) and f.get("path")]
        pick = next((f for f in figs if Path(str(f["path"])).name.startswith(prefix)), None)
        if pick is not None:
            path = inside(run, pick["path"], f"{run / 'results.json'} [{aid}]")  # untrusted: never outside the run
            if path.is_file():
                out.append((path, f"{title}. {pick.get('caption', '')}".strip()))
    return out


def find_videos(top: Path, run: Path) -> Path | None:
    """The `xinc video` folder of a run: TOP/videos/<run name>, RUN/videos or RUN/../videos/<run name>."""
    for cand in (top / "videos" / run.name, run / "videos", run.parent / "videos" / run.name):
        if (cand / "videos.json").is_file():
            return cand
    return None


def video_html(path: Path, caption: str, vid: str, page_dir: Path | None) -> str:
    """A <video> element: the MP4 embedded as a data URI when small (the page stays self-contained), else
    referenced by its path relative to the page (the videos folder lies beside it), else a link."""
    from xinc.report.html import relative_href

    cap = html.escape(caption)
    size = path.stat().st_size
    if size <= EMBED_VIDEO_BYTES:
        src = "data:video/mp4;base64," + base64.b64encode(path.read_bytes()).decode("ascii")
    else:
        src = relative_href(path, page_dir)
        if src is None:
            return f'<p class="dim">{cap}: {html.escape(str(path))} ({size / 2**20:.1f} MB, not embedded)</p>'
        cap += f" ({size / 2**20:.1f} MB: played from {html.escape(src)} beside this page)"
    return (f'<figure class="hero video"><video id="{vid}" class="xinc-video" controls loop muted playsinline '
            f'preload="auto" src="{html.escape(src)}"></video><figcaption>{cap}</figcaption></figure>')


def videos_block(folder: Path, rid: str, page_dir: Path | None = None) -> str:
    """Every MP4 listed in a videos.json, with its caption and the neurons it shows."""
    from xinc.report.html import inside

    meta = read_json(folder / "videos.json")
    parts = []
    for kind, v in (meta.get("videos") or {}).items():
        name = next((f for f in v.get("files", []) if str(f).endswith(".mp4")), None)
        mp4 = None if name is None else inside(folder, name, f"{folder / 'videos.json'}")  # untrusted file names
        if mp4 is None or not mp4.is_file():
            continue
        what = VIDEO_KINDS.get(kind, kind)
        if kind == "neurons":
            what += "; neurons " + "; ".join(f"{la}: {', '.join(map(str, e.get('neurons', [])))} ({e.get('how', '')})"
                                             for la, e in (v.get("layers") or {}).items())
        parts.append(video_html(mp4, what, f"{rid}-video-{kind}", page_dir))
    return "".join(parts)


def run_heroes(run: Path, res: dict[str, Any]) -> list[tuple[Path, str]]:
    """The canvas of a few neurons (the output layer's strongest), then the A1, A2 and A4 heroes."""
    from xinc.report.html import canvas_figures

    canvas = canvas_figures(run)
    lead = [(canvas[-1][0], f"The canvas of a few neurons — {canvas[-1][1]}")] if canvas else []
    return lead + hero_figures(run, res)


def overview_section(top: Path, runs: list[Path], labels: dict[Path, str], page) -> str:
    """The overview at the top of the report: per run its first findings, its videos and its hero figures
    (embedded once; the analysis sections below link back to them). Empty when no run has any."""
    from xinc.report.html import esc

    parts = []
    for i, run in enumerate(runs):
        res = read_json(run / "results.json")
        heroes = run_heroes(run, res)
        vids = find_videos(top, run)
        if not heroes and vids is None:
            continue
        parts.append(f'<h3 class="runhead">{esc(labels[run])}</h3>')
        findings = page.findings.get(run) or []
        if findings:
            parts.append('<ul class="findings">' + "".join(f"<li>{f}</li>" for f in findings) + "</ul>")
        if vids is not None:
            parts.append(videos_block(vids, f"ov{i}", page.folder))
        parts += [page.figs.html(p, t, f"ov{i}-hero{j}", hero=True) for j, (p, t) in enumerate(heroes)]
    if not parts:
        return ""
    explorer = top / "explorer.html"
    link = ('<p>Click through the canvases in the <a href="explorer.html">explorer</a> (beside this file): '
            "pick a pixel for its top neurons, a neuron for its map over the frames.</p>") if explorer.is_file() else ""
    return '<section class="run" id="overview"><h2>Overview</h2>' + link + "".join(parts) + "</section>"
