"""One self-contained HTML report from `xinc analyze` runs (SPEC §4 analyses A1–A6).

Input: an analyze run directory (config.json, results.json, figures/<aid>/*.png, tables/*.csv) or a
folder holding several of them (e.g. the demo's ffn/ and nerv/), rendered as one page with a section
per model. Canvas grids written by `xinc canvas` are picked up from <run>/figures/canvas/*.png or from
<parent>/canvas/<run name>/figures/*.png. A top-level config.json (the demo's or pipeline's) and
comparison.json (A6 across runs) are shown too.

Everything is embedded: images as base64 data URIs, CSV tables as data-URI downloads, inline CSS,
and one small inline script that records whether every image decoded into a hidden status element
(used by the headless-browser test; harmless otherwise). No server, no network, no external files.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xinc.errors import XincError
from xinc.outputs import html_generator_meta, owned_file
from xinc.report.images import IMAGE_SUFFIXES, FigureSet, image_mime  # noqa: F401 (re-exported)
from xinc.report.overview import overview_section
from xinc.utils import read_json

EMBED_CSV_BYTES = 256_000  # larger tables are linked (beside the page) instead of embedded
NON_NUMBERS = ("figures", "summary", "title")


# ----------------------------------------------------------------------------- discovery


def read_results(path: Path) -> dict[str, Any]:
    """results.json of a run: a JSON object whose sections are objects (untrusted input, checked)."""
    res = read_json(path)
    if not isinstance(res, dict):
        raise XincError(f"{path}: malformed (expected a JSON object) ; regenerate it with `xinc analyze`")
    for key, value in res.items():
        if key in ("model", "data", "reconstruction", "canvas", "skipped") or re.fullmatch(r"a\d+", key):
            if value is not None and not isinstance(value, dict):
                raise XincError(f"{path}: malformed ({key!r} is not an object) ; regenerate it with `xinc analyze`")
    return res


def analysis_titles() -> dict[str, str]:
    """{id: title} of every registered analysis (the registry is the one source of ids and titles)."""
    from xinc.analysis.registry import discover

    return {aid: a.title for aid, a in discover().items()}


def run_analysis_ids(res: dict[str, Any]) -> list[str]:
    """The registered ids, then any other analysis section a run's results.json holds (e.g. a newer plug-in)."""
    known = list(analysis_titles())
    return known + [k for k in res if k not in known and isinstance(res[k], dict) and "summary" in res[k]]


def find_runs(path: str | Path) -> list[Path]:
    """The analyze runs under `path`: itself when it holds results.json, else its sub-folders that do."""
    path = Path(path)
    if not path.is_dir():
        raise XincError(f"{path}: not a folder; give an `xinc analyze` output folder (or a folder of them)")
    if (path / "results.json").is_file():
        return [path]
    runs = sorted(p.parent for p in path.glob("*/results.json"))
    if not runs:
        runs = sorted(p.parent for p in path.glob("*/*/results.json"))
    if not runs:
        raise XincError(f"{path}: no results.json here or in its sub-folders; run `xinc analyze ... --out {path}` "
                        "first")
    return runs


def canvas_figures(run: Path) -> list[tuple[Path, str]]:
    """Canvas grids of sampled neurons belonging to a run: (png, caption)."""
    found: list[tuple[Path, str]] = []
    for png in sorted((run / "figures" / "canvas").glob("*.png")):
        if not png.is_symlink():
            found.append((png, png.stem.replace("_", " ")))
    cdir = run.parent / "canvas" / run.name
    cfg = _try_json(cdir / "config.json") or {}
    summary = cfg.get("layers_summary") or {} if isinstance(cfg, dict) else {}
    for layer, info in summary.items():
        png = inside(cdir, info.get("figure", ""), str(cdir / "config.json"))
        if png.is_file():
            cap = (f"{layer}: the strongest neurons by total |C| (signed maps, red = adds, blue = removes; "
                   f"{info.get('num_neurons', '?')} neurons, rule {info.get('rule', '?')}, mode "
                   f"{cfg.get('mode', '?')}, frame {', '.join(str(f) for f in cfg.get('frames', [])[:1])})")
            found.append((png, cap))
    if not summary:
        for png in sorted((cdir / "figures").glob("*.png")):
            if not png.is_symlink():
                found.append((png, png.stem.replace("_", " ")))
    return found


def _try_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None


# ----------------------------------------------------------------------------- formatting


def esc(x: Any) -> str:
    return html.escape(str(x), quote=True)


def fmt(v: Any) -> str:
    """Numbers with 4 significant digits (residuals in scientific notation), lists compactly."""
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if math.isnan(v) or math.isinf(v):
            return "—"
        if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e6):
            return f"{v:.2e}"
        return f"{v:.4g}"
    if isinstance(v, list | tuple):
        if len(v) <= 8 and all(not isinstance(x, dict | list) for x in v):
            return "[" + ", ".join(fmt(x) for x in v) + "]"
        return f"[{len(v)} values]"
    if isinstance(v, dict):
        return f"{{{len(v)} entries}}"
    return str(v)


def data_uri(path: Path, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def inside(base: Path, rel: Any, what: str) -> Path:
    """`base/rel` resolved, refused (XincError) unless it stays inside `base` and is a regular file.

    results.json and config.json are untrusted: a path like /etc/passwd or ../../x never gets embedded.
    """
    if not isinstance(rel, str | Path) or str(rel) == "":
        raise XincError(f"{what}: file path {rel!r} is not a relative path ; regenerate the run with xinc")
    root = base.resolve()
    path = (base / rel).resolve()
    if not path.is_relative_to(root):
        raise XincError(f"{what}: file path {str(rel)!r} points outside {base} ; refusing to embed it (the file "
                        "was edited or is not from xinc)")
    if path.exists() and not path.is_file():
        raise XincError(f"{what}: {str(rel)!r} is not a regular file ; refusing to embed it")
    return path


def _scalar(v: Any) -> bool:
    return v is None or isinstance(v, bool | int | float | str)


def kv_table(pairs: list[tuple[str, Any]], cls: str = "kv") -> str:
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(fmt(v))}</td></tr>" for k, v in pairs)
    return f'<table class="{cls}">{rows}</table>' if rows else ""


def _leaves(row: dict[str, Any], limit: int = 8) -> dict[str, Any]:
    """Scalar cells of a row: its scalars, short scalar lists, and one level of nested scalar dicts (a.b)."""
    out: dict[str, Any] = {}
    for k, v in row.items():
        if _scalar(v) or (isinstance(v, list) and len(v) <= limit and all(_scalar(x) for x in v)):
            out[k] = v
        elif isinstance(v, dict) and v and len(v) <= limit and all(_scalar(x) for x in v.values()):
            out.update({f"{k} {kk}": vv for kk, vv in v.items()})
    return out


MAX_COLUMNS = 14


def grid_table(rows: dict[str, dict[str, Any]], first: str = "") -> str:
    """Rows {name: {col: value}} as a table (columns = union of scalar leaves, first-seen order, capped)."""
    flat = {name: _leaves(r) for name, r in rows.items()}
    cols: list[str] = []
    for r in flat.values():
        for k in r:
            if k not in cols:
                cols.append(k)
    cols = cols[:MAX_COLUMNS]
    if not cols:
        return ""
    head = f"<tr><th>{esc(first)}</th>" + "".join(f"<th>{esc(c.replace('_', ' '))}</th>" for c in cols) + "</tr>"
    body = "".join("<tr><th>" + esc(name) + "</th>" + "".join(
        f'<td class="num">{esc(fmt(r.get(c)))}</td>' for c in cols) + "</tr>" for name, r in flat.items())
    return f'<table class="grid">{head}{body}</table>'


def numbers_block(res: dict[str, Any]) -> str:
    """Key numbers of an analysis result: scalars (and small scalar dicts) as key/value rows, dicts of
    dicts as grids (one row per entry, e.g. per layer); anything deeper goes to a JSON details block."""
    scalars, grids, rest = [], [], {}
    for k, v in res.items():
        if k in NON_NUMBERS:
            continue
        name = k.replace("_", " ")
        if _scalar(v) or (isinstance(v, list) and len(v) <= 12 and all(_scalar(x) for x in v)):
            scalars.append((name, v))
        elif isinstance(v, dict) and v and len(v) <= 8 and all(_scalar(x) for x in v.values()):
            scalars.append((name, " · ".join(f"{kk.replace('_', ' ')} {fmt(vv)}" for kk, vv in v.items())))
        elif isinstance(v, dict) and v and all(isinstance(x, dict) for x in v.values()):
            grids.append((name, v))
            flat_keys = {rk: set(_leaves(rv)) for rk, rv in v.items()}
            left = {rk: {ck: cv for ck, cv in rv.items() if ck not in flat_keys[rk]
                         and not any(c.startswith(f"{ck} ") for c in flat_keys[rk])} for rk, rv in v.items()}
            if any(left.values()):
                rest[k] = {rk: lv for rk, lv in left.items() if lv}
        else:
            rest[k] = v
    parts = []
    if scalars:
        parts.append(kv_table(scalars))
    for name, g in grids:
        table = grid_table(g, first="")
        if table:
            parts.append(f"<h4>{esc(name)}</h4>{table}")
    if rest:
        text = json.dumps(rest, indent=1, default=str)
        if len(text) > 60_000:
            text = text[:60_000] + "\n… (truncated; see results.json)"
        parts.append(f"<details><summary>more numbers (JSON)</summary><pre>{esc(text)}</pre></details>")
    return "".join(parts)


def figure_html(png: Path, caption: Any, fid: str) -> str:
    """One figure embedded on its own (a page uses a FigureSet, which embeds each figure once)."""
    return FigureSet().html(png, caption, fid)


def tables_html(run: Path, aid: str, page_dir: Path | None = None) -> str:
    """Download links of an analysis' CSV tables: small ones embedded, larger ones linked beside the page."""
    links = []
    for csv in sorted((run / "tables").glob(f"{aid}_*.csv")):
        if csv.is_symlink() or not csv.is_file():
            continue
        size = csv.stat().st_size
        rel = relative_href(csv, page_dir)
        if size <= EMBED_CSV_BYTES:
            links.append(f'<a download="{esc(run.name)}_{esc(csv.name)}" href="{data_uri(csv, "text/csv")}">'
                         f"{esc(csv.name)}</a> <span class=\"dim\">({size / 1024:.1f} kB)</span>")
        elif rel is not None:
            links.append(f'<a href="{esc(rel)}">{esc(csv.name)}</a> <span class="dim">({size / 2**20:.1f} MB, '
                         "beside this page, not embedded)</span>")
        else:
            links.append(f"{esc(csv.name)} <span class=\"dim\">({size / 2**20:.1f} MB, not embedded; in "
                         f"{esc(run / 'tables')})</span>")
    return f'<p class="tables">Tables (CSV): {" · ".join(links)}</p>' if links else ""


def relative_href(path: Path, page_dir: Path | None) -> str | None:
    """`path` relative to the page's folder (URL form) when it lies inside it, else None."""
    if page_dir is None:
        return None
    try:
        rel = path.resolve().relative_to(page_dir.resolve())
    except ValueError:
        return None
    from urllib.parse import quote

    return quote(rel.as_posix())


# ----------------------------------------------------------------------------- sections


def _model_summary(name: str, res: dict[str, Any], cfg: dict[str, Any]) -> str:
    m = res.get("model", {}) or {}
    mc = m.get("config", {}) or {}
    arch = []
    if m.get("kind") == "ffn":
        arch = [("size", f"{mc.get('height')}×{mc.get('width')}"), ("layers", mc.get("layers")),
                ("width", mc.get("hidden")), ("encoding", mc.get("encoding")), ("σ", mc.get("sigma")),
                ("activation", mc.get("activation"))]
    elif m:
        arch = [("size", f"{mc.get('height')}×{mc.get('width')}"), ("frames", mc.get("num_frames")),
                ("embedding", mc.get("embed")), ("fc", f"{mc.get('fc_dim')} × {mc.get('fc_hw')}"),
                ("strides", mc.get("strides")), ("kernels", mc.get("kernel_sizes")), ("widths", mc.get("widths"))]
    pairs = [("kind", m.get("kind")), ("parameters", m.get("params")),
             ("canvas layers", ", ".join(m.get("layers", [])))]
    pairs += [(k, v) for k, v in arch if v is not None]
    pairs.append(("model directory", m.get("dir")))
    d = res.get("data", {}) or {}
    dpairs = [(k, d[k]) for k in ("source", "dataset", "video", "src", "frames", "sampled", "note") if k in d]
    clip = d.get("clip") or {}
    for k in ("num_frames", "annotated", "size", "num_tracks", "num_vanished"):
        if k in clip:
            dpairs.append((f"clip {k.replace('_', ' ')}", clip[k]))
    dpairs += [("analysis mode", cfg.get("mode")), ("seed", cfg.get("seed")),
               ("analyses run", ", ".join(cfg.get("analyses", [])))]
    return (f'<div class="two"><div><h3>Model</h3>{kv_table(pairs)}</div>'
            f'<div><h3>Data</h3>{kv_table(dpairs)}</div></div>')


def _reconstruction(res: dict[str, Any]) -> str:
    r = res.get("reconstruction")
    if not r:
        return ""
    pairs = [("mean PSNR (8-bit)", f"{fmt(r.get('mean_psnr_8bit'))} dB"),
             ("mean PSNR (float)", f"{fmt(r.get('mean_psnr_float'))} dB")]
    per = ""
    frames, p8 = r.get("frames") or [], r.get("psnr_8bit") or []
    if len(frames) > 1 and len(frames) == len(p8):  # one row of at most 12 frames each: fits the page width
        rows = []
        for i in range(0, len(frames), 12):
            fs, ps = frames[i:i + 12], p8[i:i + 12]
            rows.append("<tr><th>frame</th>" + "".join(f"<th>{esc(f)}</th>" for f in fs) + "</tr><tr><th>dB</th>"
                        + "".join(f'<td class="num">{esc(fmt(v))}</td>' for v in ps) + "</tr>")
        per = f'<table class="grid psnr">{"".join(rows)}</table>'
    return f"<h3>Reconstruction quality</h3>{kv_table(pairs)}{per}"


CANVAS_METHOD = ("Two relative residuals (max |difference| / max |target|, over the analysed frames the worst): the "
                 "<em>identity</em> the rule guarantees (e.g. the pre-activation sum, the PixelShuffle identity) and "
                 "the output-side <em>gap</em> between Σ<sub>k</sub> C<sub>k</sub> and the quantity the maps claim to "
                 "decompose (e.g. the logits, the box-filtered block output). Exact only when both are finite and "
                 "within float32 round-off; approximate rules are flagged.")


def _residual_text(mi: dict[str, Any]) -> str:
    resid = {k: v for k, v in (mi.get("residual") or {}).items() if k != "per_frame"}
    return "; ".join(f"{label} [{mi.get(name) or '?'}]: rel {fmt(resid[f'{key}_rel'])}, "
                     f"max |Δ| {fmt(resid.get(f'{key}_max_abs'))}"
                     for key, label, name in (("identity", "identity", "identity"), ("gap", "gap vs", "gap_of"))
                     if f"{key}_rel" in resid) or ", ".join(f"{k} {fmt(v)}" for k, v in resid.items()) or "—"


def _canvas_table(res: dict[str, Any]) -> str:
    c = res.get("canvas") or {}
    if not c:
        return ""
    head = ("<tr><th>layer</th><th>mode</th><th>neurons</th><th>rule</th><th>exact</th>"
            "<th>completeness residual</th></tr>")
    body, notes = [], {}
    for layer, info in c.items():
        modes = info.get("modes") or {"": info}
        for mode, mi in modes.items():
            flag = "exact" if mi.get("exact") else '<span class="approx">approximate</span>'
            body.append(f"<tr><th>{esc(layer)}</th><td>{esc(mode)}</td><td class=\"num\">"
                        f"{esc(fmt(mi.get('num_neurons')))}</td><td>{esc(mi.get('rule', ''))}</td><td>{flag}</td>"
                        f"<td>{esc(_residual_text(mi))}</td></tr>")
            if mi.get("notes"):
                notes.setdefault(str(mi.get("notes")), []).append(f"{layer} {mode}".strip())
    note_list = "".join(f"<li><b>{esc(', '.join(w))}</b>: {esc(n)}</li>" for n, w in notes.items())
    return ("<h3>Canvases and completeness residuals</h3>"
            f'<table class="grid canvas">{head}{"".join(body)}</table>'
            f"<details class=\"method\"><summary>What the residuals and rules mean</summary><p>{CANVAS_METHOD}</p>"
            + (f"<ul>{note_list}</ul>" if note_list else "") + "</details>")


def analysis_method(aid: str) -> str:
    """The method text of a registered analysis: its module's docstring (empty for unknown ids)."""
    import inspect

    from xinc.analysis.registry import discover

    a = discover().get(aid)
    mod = inspect.getmodule(a.fn) if a is not None else None
    return inspect.cleandoc(mod.__doc__) if mod is not None and mod.__doc__ else ""


def _analysis_section(page: Page, run: Path, rid: str, aid: str, res: dict[str, Any] | None,
                      skipped: str | None) -> str:
    title = (res or {}).get("title") or analysis_titles().get(aid, aid)
    head = f'<section class="analysis" id="{esc(rid)}-{esc(aid)}"><h3>{esc(aid.upper())} — {esc(title)}</h3>'
    if res is None:
        why = skipped or "not run (ask `xinc analyze --analyses all`)"
        return head + f'<p class="skip">Not available for this model: {esc(why)}</p></section>'
    if res.get("skipped"):
        return head + f'<p class="skip">Skipped: {esc(res["skipped"])}</p></section>'
    parts = [head]
    if res.get("summary"):
        parts.append("<ul class=\"findings\">" + "".join(f"<li>{esc(s)}</li>" for s in res["summary"]) + "</ul>")
    method = analysis_method(aid)
    if method:
        parts.append(f'<details class="method"><summary>How it is computed</summary><pre class="text">'
                     f"{esc(method)}</pre></details>")
    for i, f in enumerate(res.get("figures") or []):
        if not isinstance(f, dict):
            raise XincError(f"{run / 'results.json'}: {aid}.figures[{i}] is not an object ; regenerate the run")
        png = inside(run, f.get("path", ""), str(run / "results.json"))
        parts.append(page.figs.html(png, f.get("caption", ""), f"{rid}-{aid}-fig{i}"))
    nums = numbers_block(res)
    if nums:
        parts.append(f"<details class=\"numbers\"><summary>Key numbers</summary>{nums}</details>")
    parts.append(tables_html(run, aid, page.folder))
    parts.append("</section>")
    return "".join(parts)


def _run_section(page: Page, run: Path, rid: str, label: str) -> tuple[str, list[str]]:
    res = read_results(run / "results.json")
    cfg = _try_json(run / "config.json") or {}
    cfg = cfg if isinstance(cfg, dict) else {}
    ids = run_analysis_ids(res)
    findings = [f"<b>{esc(aid.upper())}</b> {esc(s)}" for aid in ids
                for s in ((res.get(aid) or {}).get("summary") or [])[:1]]
    parts = [f'<section class="run" id="{rid}"><h2>{esc(label)}</h2>', _model_summary(label, res, cfg),
             _reconstruction(res), _canvas_table(res)]
    cfigs = canvas_figures(run)
    if cfigs:
        parts.append("<h3>Canvases of the strongest neurons</h3>")
        parts += [page.figs.html(p, cap, f"{rid}-canvas{i}") for i, (p, cap) in enumerate(cfigs)]
    skipped = res.get("skipped") or cfg.get("skipped") or {}
    for aid in ids:
        parts.append(_analysis_section(page, run, rid, aid, res.get(aid), skipped.get(aid)))
    cmd = cfg.get("command")
    parts.append("<h3>How this run was produced</h3>")
    if cmd:
        parts.append(f"<pre class=\"cmd\">{esc(cmd)}</pre>")
    parts.append(f"<details><summary>resolved configuration ({esc(run / 'config.json')})</summary>"
                 f"<pre>{esc(json.dumps(cfg, indent=1))}</pre></details></section>")
    return "".join(parts), findings


def _comparison(top: Path) -> str:
    comp = _try_json(top / "comparison.json")
    if not comp:
        return ""
    parts = ['<section class="run" id="comparison"><h2>Across models — A6 neuron clusters compared</h2>',
             '<details class="method"><summary>What the distance means</summary><p>'
             "Symmetric nearest-neighbour distance between the two sets of neuron vectors "
             "(mean normalised |C| per Gabor texture group; 0 = identical sets); each set's split-half distance "
             "is the scale of 'indistinguishable'. ARI only where the neurons correspond (same weights).</p></details>"]
    for c in comp.get("comparisons", [comp]):
        rows = {f"{r['layer_a']} vs {r['layer_b']}": {k: v for k, v in r.items() if k not in ("layer_a", "layer_b")}
                for r in c.get("pairs", [])}
        label = c.get("label") or f"{Path(c.get('run_a', '')).name} vs {Path(c.get('run_b', '')).name}"
        parts.append(f"<h3>{esc(label)}</h3>{grid_table(rows, 'layers')}")
    return "".join(parts) + "</section>"


def _all_exact(info: Any) -> bool:
    modes = (info or {}).get("modes") or {"": info}
    return all((mi or {}).get("exact") for mi in modes.values())


def glance_table(runs: list[Path], labels: dict[Path, tuple[str, str]]) -> str:
    """One row per run (label, anchor): the model, its size, frames, reconstruction PSNR and its canvas layers
    (starred when approximate in some canvas mode)."""
    head = ("<tr><th>run</th><th>model</th><th>parameters</th><th>size</th><th>frames analysed</th>"
            "<th>PSNR (8-bit)</th><th>canvas layers</th></tr>")
    rows = []
    for run in runs:
        res = read_results(run / "results.json")
        m, d, r = res.get("model") or {}, res.get("data") or {}, res.get("reconstruction") or {}
        mc = m.get("config") or {}
        frames = d.get("frames") or r.get("frames") or []
        layers = [f"{la}{'' if _all_exact(v) else '*'}" for la, v in (res.get("canvas") or {}).items()]
        psnr = r.get("mean_psnr_8bit")
        n = len(frames) if isinstance(frames, list) else frames
        cells = [m.get("kind", "?"), fmt(m.get("params")), f"{mc.get('height')}×{mc.get('width')}",
                 f"{n} of {mc['num_frames']}" if mc.get("num_frames") else n,
                 f"{fmt(psnr)} dB" if psnr is not None else "—", ", ".join(layers) or "—"]
        name, rid = labels[run]
        rows.append(f'<tr><th><a href="#{esc(rid)}">{esc(name)}</a></th>'
                    + "".join(f"<td>{esc(c)}</td>" for c in cells) + "</tr>")
    return (f'<table class="grid glance">{head}{"".join(rows)}</table><p class="dim">* approximate in at least one '
            "canvas mode (see the run's completeness table).</p>")


CSS = """
:root { --fg:#1d232b; --dim:#5c6773; --line:#d9dee4; --bg:#ffffff; --soft:#f5f7f9; --accent:#1f5fa8; }
* { box-sizing: border-box; }
body { margin:0; font:15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color:var(--fg); background:var(--bg); }
header { background:#14243a; color:#fff; padding:22px 32px 18px; }
header h1 { margin:0 0 4px; font-size:24px; font-weight:600; }
header p { margin:0; color:#c7d3e0; font-size:13px; max-width:1116px; }
main { max-width:1180px; margin:0 auto; padding:8px 32px 48px; }
nav.toc { background:var(--soft); border:1px solid var(--line); border-radius:6px; padding:10px 16px; margin:18px 0;
          font-size:14px; }
nav.toc a { color:var(--accent); text-decoration:none; margin-right:10px; white-space:nowrap; }
nav.toc div { margin:2px 0; }
h2 { font-size:21px; border-bottom:2px solid #14243a; padding-bottom:4px; margin-top:42px; }
h3 { font-size:17px; margin:26px 0 8px; }
h3.runhead { font-size:19px; margin-top:30px; padding-top:8px; border-top:1px solid var(--line); }
h4 { font-size:14px; margin:14px 0 4px; color:var(--dim); text-transform:capitalize; }
section.analysis { border-top:1px solid var(--line); margin-top:22px; }
table { border-collapse:collapse; font-size:13px; margin:6px 0 10px; max-width:100%; }
table.kv th { text-align:left; font-weight:500; color:var(--dim); padding:2px 14px 2px 0; vertical-align:top; }
table.kv td { padding:2px 0; overflow-wrap:anywhere; }
table.grid { font-size:12px; }
table.grid th, table.grid td { border:1px solid var(--line); padding:3px 6px; text-align:left; vertical-align:top;
                               overflow-wrap:break-word; }
table.grid td.long { overflow-wrap:anywhere; }
table.grid tr:first-child th, table.psnr tr:nth-child(odd) th { background:var(--soft); font-weight:600; }
table.grid tr:nth-child(even) td { background:#fafbfc; }
table.glance { font-size:13px; }
table.canvas { width:100%; }
td.num { font-variant-numeric: tabular-nums; }
.two { display:flex; gap:40px; flex-wrap:wrap; }
.two > div { flex:1 1 420px; min-width:0; }
figure { margin:14px 0 20px; }
figure img { max-width:100%; height:auto; border:1px solid var(--line); background:#fff; }
figure.hero img { width:100%; height:auto; }
figure.hero video { max-width:100%; height:auto; display:block; }
figcaption { font-size:13px; color:var(--dim); margin-top:4px; max-width:1000px; }
ul.findings { background:#eef4fb; border-left:4px solid var(--accent); padding:8px 12px 8px 30px; margin:8px 0;
              font-size:14px; }
.skip { color:var(--dim); font-style:italic; }
.warn { color:#a40000; }
.approx { color:#9a5b00; font-weight:600; }
.dim { color:var(--dim); font-size:13px; }
p.seen { margin:6px 0; }
pre { background:var(--soft); border:1px solid var(--line); padding:10px; font-size:12px; max-height:420px;
      overflow-y:auto; white-space:pre-wrap; overflow-wrap:anywhere; }
pre.cmd { max-height:none; }
pre.text { font:13px/1.45 system-ui, sans-serif; max-height:none; background:#fbfbfc; }
details { margin:8px 0; }
details.method { font-size:14px; }
summary { cursor:pointer; color:var(--accent); font-size:14px; }
p.tables { font-size:13px; overflow-wrap:anywhere; }
p.tables a { color:var(--accent); }
footer { color:var(--dim); font-size:12px; text-align:center; padding:20px; }
"""

# Records image decode status into #xinc-status (read by tests through the DOM); no effect on the page.
STATUS_JS = """
(function () {
  var errors = [];
  window.addEventListener('error', function (e) { errors.push(String(e.message || 'error')); });
  function record() {
    var imgs = Array.prototype.slice.call(document.images);
    var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; });
    var bad = imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0); })
                  .map(function (i) { return i.alt.slice(0, 60); });
    var s = document.getElementById('xinc-status');
    s.setAttribute('data-images', String(imgs.length));
    s.setAttribute('data-loaded', String(ok.length));
    s.setAttribute('data-broken', JSON.stringify(bad));
    s.setAttribute('data-errors', JSON.stringify(errors));
    var vids = Array.prototype.slice.call(document.querySelectorAll('video'));
    s.setAttribute('data-videos', String(vids.length));
    s.setAttribute('data-done', '1');
  }
  window.addEventListener('load', record);
})();
"""


@dataclass
class Page:
    """What the sections of one page share: its figures (each embedded once), its folder (large tables and
    videos are referenced relative to it) and each run's first findings (shown in the overview)."""

    figs: FigureSet = field(default_factory=FigureSet)
    folder: Path | None = None
    findings: dict[Path, list[str]] = field(default_factory=dict)


def _first_findings(res: dict[str, Any]) -> list[str]:
    return [f"<b>{esc(aid.upper())}</b> {esc(s)}" for aid in run_analysis_ids(res)
            for s in ((res.get(aid) or {}).get("summary") or [])[:1]]


def _malformed(where: Path, e: Exception, how: str = "`xinc analyze`") -> XincError:
    return XincError(f"{where}: malformed ({type(e).__name__}: {e}) ; regenerate it with {how}")


def build_report(run_dir: str | Path, out: str | Path, *, title: str | None = None) -> Path:
    """Write one self-contained HTML file for the analyze run(s) under `run_dir`; return its path."""
    top = Path(run_dir)
    runs = find_runs(top)
    multi = not (top / "results.json").is_file()
    label = {r: (r.relative_to(top).as_posix() if multi else r.name) for r in runs}
    page = Page(folder=Path(out).parent)
    names, toc = {}, []
    for i, run in enumerate(runs):
        res = read_results(run / "results.json")
        try:
            names[run] = f"{label[run]} ({str((res.get('model') or {}).get('kind', 'model')).upper()})"
            page.findings[run] = _first_findings(res)
        except (AttributeError, TypeError, KeyError, ValueError, IndexError) as e:
            raise _malformed(run / "results.json", e) from None
        links = " ".join(f'<a href="#run{i}-{esc(aid)}">{esc(aid.upper())}</a>' for aid in run_analysis_ids(res)
                         if res.get(aid))
        toc.append(f'<div><a href="#run{i}"><b>{esc(names[run])}</b></a> {links}</div>')
    try:  # the overview first: its hero figures are embedded there, the sections below link to them
        glance = glance_table(runs, {r: (names[r], f"run{i}") for i, r in enumerate(runs)})
        overview_html = overview_section(top, runs, names, page)
    except (AttributeError, TypeError, KeyError, ValueError, IndexError) as e:
        raise _malformed(top, e, "`xinc analyze` / `xinc video`") from None
    sections = []
    for i, run in enumerate(runs):
        try:
            sections.append(_run_section(page, run, f"run{i}", names[run])[0])
        except (AttributeError, TypeError, KeyError, ValueError, IndexError) as e:
            raise _malformed(run / "results.json", e) from None
    toc.insert(0, '<div><a href="#overview"><b>Overview: findings, videos and hero figures</b></a></div>')
    try:
        comparison = _comparison(top) if multi else ""
    except (AttributeError, TypeError, KeyError, ValueError, IndexError) as e:
        raise _malformed(top / "comparison.json", e, "`xinc run`") from None
    if comparison:
        toc.append('<div><a href="#comparison"><b>Across models (A6)</b></a></div>')
    produced = _produced(top) if multi else ""
    if produced:
        toc.append('<div><a href="#produced"><b>Commands and configuration</b></a></div>')
    if not overview_html:
        overview_html = '<section class="run" id="overview"><h2>Overview</h2></section>'
    overview_html = overview_html.replace("<h2>Overview</h2>", "<h2>Overview</h2>" + glance, 1)
    body = f"{overview_html}{''.join(sections)}{comparison}{produced}"
    page_html = _page(title or f"xinc report — {top.resolve().name}", top, toc, body, page)
    with owned_file(out, inputs=[run_dir], kind="report") as tmp:
        tmp.write_text(page_html, encoding="utf-8")
    return Path(out)


def _produced(top: Path) -> str:
    """The commands and resolved configuration of a folder of runs (a demo's or pipeline's config.json)."""
    top_cfg = _try_json(top / "config.json")
    if not isinstance(top_cfg, dict) or not top_cfg:
        return ""
    cmds = top_cfg.get("commands") or []
    cmd_text = "\n".join(str(c) for c in cmds) if isinstance(cmds, list) and cmds else str(top_cfg.get("command", ""))
    return ('<section class="run" id="produced"><h2>How this report was produced</h2>'
            + (f"<pre class=\"cmd\">{esc(cmd_text)}</pre>" if cmd_text else "")
            + f"<details><summary>resolved configuration ({esc(top / 'config.json')})</summary>"
            f"<pre>{esc(json.dumps(top_cfg, indent=1))}</pre></details></section>")


def _page(title: str, top: Path, toc: list[str], body: str, page: Page) -> str:
    from xinc import __version__

    when = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    kb = page.figs.bytes / 1024
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
{html_generator_meta()}
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)}</title><style>{CSS}</style></head>
<body>
<header><h1>{esc(title)}</h1>
<p>Implicit neural canvases: every neuron's contribution map to every output pixel, and the analyses of
"Explaining the Implicit Neural Canvas" (CVPR 2024) with corrected forms. Generated {esc(when)} by xinc
{esc(__version__)} from {esc(top)}.</p></header>
<main>
<nav class="toc">{"".join(toc)}</nav>
{body}
</main>
<footer>Self-contained file: figures ({kb:,.0f} kB, WebP at display size; the runs keep the PNG/PDF originals),
small tables and videos are embedded; nothing is loaded from the network.</footer>
<div id="xinc-status" hidden></div>
<script>{STATUS_JS}</script>
</body></html>
"""
