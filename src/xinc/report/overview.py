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
MAX_VIDEO_BYTES = 8_000_000  # larger files are linked, not embedded


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
                out.append((path, title))
    return out


def find_videos(top: Path, run: Path) -> Path | None:
    """The `xinc video` folder of a run: TOP/videos/<run name>, RUN/videos or RUN/../videos/<run name>."""
    for cand in (top / "videos" / run.name, run / "videos", run.parent / "videos" / run.name):
        if (cand / "videos.json").is_file():
            return cand
    return None


def video_html(path: Path, caption: str, vid: str) -> str:
    """A <video> element with the MP4 embedded as a data URI (linked when too large)."""
    cap = html.escape(caption)
    if path.stat().st_size > MAX_VIDEO_BYTES:
        return f'<p class="dim">{cap}: <a href="{html.escape(path.as_uri())}">{html.escape(path.name)}</a> ' \
               f"(too large to embed)</p>"
    uri = "data:video/mp4;base64," + base64.b64encode(path.read_bytes()).decode("ascii")
    return (f'<figure class="hero"><video id="{vid}" class="xinc-video" controls loop muted playsinline '
            f'preload="auto" src="{uri}"></video><figcaption>{cap}</figcaption></figure>')


def videos_block(folder: Path, rid: str) -> str:
    """Every MP4 listed in a videos.json, embedded with its caption and the neurons it shows."""
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
        parts.append(video_html(mp4, what, f"{rid}-video-{kind}"))
    return "".join(parts)


def overview_section(top: Path, runs: list[Path], labels: dict[Path, str], figure_html) -> str:
    """The overview at the top of the report (empty when no run has a hero figure or video)."""
    parts = []
    for i, run in enumerate(runs):
        res = read_json(run / "results.json")
        heroes = hero_figures(run, res)
        vids = find_videos(top, run)
        if vids is None:  # no video: the canvas grid of a few neurons leads instead
            from xinc.report.html import canvas_figures

            heroes = [(p, f"The canvas of a few neurons: {c}") for p, c in canvas_figures(run)[:1]] + heroes
        if not heroes and vids is None:
            continue
        parts.append(f"<h3>{html.escape(labels[run])}</h3>")
        if vids is not None:
            parts.append(videos_block(vids, f"ov{i}"))
        parts += [figure_html(p, t, f"ov{i}-hero{j}").replace("<figure", '<figure class="hero"', 1)
                  for j, (p, t) in enumerate(heroes)]
    if not parts:
        return ""
    explorer = top / "explorer.html"
    link = ('<p>Click through the canvases in the <a href="explorer.html">explorer</a> (beside this file): '
            "pick a pixel for its top neurons, a neuron for its map over the frames.</p>") if explorer.is_file() else ""
    return '<section class="run" id="overview"><h2>Overview</h2>' + link + "".join(parts) + "</section>"
