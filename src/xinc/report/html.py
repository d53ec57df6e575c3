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
from pathlib import Path
from typing import Any

from xinc.errors import XincError
from xinc.outputs import html_generator_meta, owned_file
from xinc.utils import read_json

MAX_CSV_BYTES = 2_000_000  # larger tables are listed, not embedded
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


IMAGE_SUFFIXES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".svg": "image/svg+xml"}


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


def image_mime(path: Path) -> str | None:
    """The image type of a figure file by suffix and content (png, jpeg, svg), else None."""
    mime = IMAGE_SUFFIXES.get(path.suffix.lower())
    try:
        with open(path, "rb") as f:
            head = f.read(256)
    except OSError:
        return None
    if mime == "image/png" and head.startswith(b"\x89PNG\r\n\x1a\n"):
        return mime
    if mime == "image/jpeg" and head.startswith(b"\xff\xd8\xff"):
        return mime
    if mime == "image/svg+xml" and head.lstrip().startswith((b"<svg", b"<?xml")):
        return mime
    return None


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
    return f'<div class="scroll"><table class="grid">{head}{body}</table></div>'


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
    """A figure embedded as a data URI; only regular png/jpeg/svg files (checked by content) are embedded."""
    caption = "" if caption is None else str(caption)
    if not png.is_file():
        return f'<p class="warn">missing figure {esc(png.name)}</p>'
    mime = image_mime(png)
    if mime is None:
        return f'<p class="warn">figure {esc(png.name)} is not a PNG, JPEG or SVG image; not embedded</p>'
    return (f'<figure id="{esc(fid)}"><img src="{data_uri(png, mime)}" alt="{esc(caption or png.stem)}" '
            f'loading="eager"><figcaption>{esc(caption)}</figcaption></figure>')


def tables_html(run: Path, aid: str) -> str:
    links = []
    for csv in sorted((run / "tables").glob(f"{aid}_*.csv")):
        if csv.is_symlink() or not csv.is_file():
            continue
        size = csv.stat().st_size
        if size <= MAX_CSV_BYTES:
            links.append(f'<a download="{esc(run.name)}_{esc(csv.name)}" href="{data_uri(csv, "text/csv")}">'
                         f"{esc(csv.name)}</a> <span class=\"dim\">({size / 1024:.1f} kB)</span>")
        else:
            links.append(f"{esc(csv.name)} <span class=\"dim\">({size / 2**20:.1f} MB, not embedded; in "
                         f"{esc(run / 'tables')})</span>")
    return f'<p class="tables">Tables (CSV): {" · ".join(links)}</p>' if links else ""


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
    dpairs = [(k, d[k]) for k in ("source", "dataset", "video", "src", "frames", "note") if k in d]
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
    if len(frames) > 1 and len(frames) == len(p8):
        cells = "".join(f"<td class=\"num\">{esc(fmt(v))}</td>" for v in p8)
        per = ('<div class="scroll"><table class="grid"><tr><th>frame</th>'
               + "".join(f"<th>{esc(f)}</th>" for f in frames) + f"</tr><tr><th>PSNR 8-bit (dB)</th>{cells}</tr>"
               "</table></div>")
    return f"<h3>Reconstruction quality</h3>{kv_table(pairs)}{per}"


def _canvas_table(res: dict[str, Any]) -> str:
    c = res.get("canvas") or {}
    if not c:
        return ""
    head = ("<tr><th>layer</th><th>mode</th><th>neurons</th><th>rule</th><th>exact</th>"
            "<th>completeness residual (worst frame)</th><th>notes</th></tr>")
    body = []
    for layer, info in c.items():
        modes = info.get("modes") or {"": info}
        for mode, mi in modes.items():
            resid = {k: v for k, v in (mi.get("residual") or {}).items() if k != "per_frame"}
            rtxt = "; ".join(f"{label} [{mi.get(name) or '?'}]: rel {fmt(resid[f'{key}_rel'])}, "
                             f"max |Δ| {fmt(resid.get(f'{key}_max_abs'))}"
                             for key, label, name in (("identity", "identity", "identity"), ("gap", "gap vs", "gap_of"))
                             if f"{key}_rel" in resid) or ", ".join(f"{k} {fmt(v)}" for k, v in resid.items()) or "—"
            flag = "exact" if mi.get("exact") else '<span class="approx">approximate</span>'
            body.append(f"<tr><th>{esc(layer)}</th><td>{esc(mode)}</td><td class=\"num\">"
                        f"{esc(fmt(mi.get('num_neurons')))}</td><td>{esc(mi.get('rule', ''))}</td><td>{flag}</td>"
                        f"<td class=\"num\">{esc(rtxt)}</td><td class=\"dim\">{esc(mi.get('notes', ''))}</td></tr>")
    return ("<h3>Canvases and completeness residuals</h3><p class=\"dim\">Two relative residuals (max |difference| / "
            "max |target|, worst frame): the <em>identity</em> the rule guarantees (e.g. the pre-activation sum, the "
            "PixelShuffle identity) and the output-side <em>gap</em> between Σ<sub>k</sub> C<sub>k</sub> and the "
            "quantity the maps claim to decompose (e.g. the logits, the box-filtered block output). Exact only when "
            "both are finite and within float32 round-off; approximate rules are flagged.</p>"
            f'<div class="scroll"><table class="grid">{head}{"".join(body)}</table></div>')


def _analysis_section(run: Path, rid: str, aid: str, res: dict[str, Any] | None, skipped: str | None) -> str:
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
    for i, f in enumerate(res.get("figures") or []):
        if not isinstance(f, dict):
            raise XincError(f"{run / 'results.json'}: {aid}.figures[{i}] is not an object ; regenerate the run")
        png = inside(run, f.get("path", ""), str(run / "results.json"))
        parts.append(figure_html(png, f.get("caption", ""), f"{rid}-{aid}-fig{i}"))
    nums = numbers_block(res)
    if nums:
        parts.append(f"<details class=\"numbers\"><summary>Key numbers</summary>{nums}</details>")
    parts.append(tables_html(run, aid))
    parts.append("</section>")
    return "".join(parts)


def _run_section(run: Path, rid: str, label: str) -> tuple[str, list[str]]:
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
        parts.append("<h3>Canvases of sampled neurons</h3>")
        parts += [figure_html(p, cap, f"{rid}-canvas{i}") for i, (p, cap) in enumerate(cfigs)]
    skipped = res.get("skipped") or cfg.get("skipped") or {}
    for aid in ids:
        parts.append(_analysis_section(run, rid, aid, res.get(aid), skipped.get(aid)))
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
             "<p class=\"dim\">Symmetric nearest-neighbour distance between the two sets of neuron vectors "
             "(mean normalised |C| per Gabor texture group; 0 = identical sets); each set's split-half distance "
             "is the scale of 'indistinguishable'. ARI only where the neurons correspond (same weights).</p>"]
    for c in comp.get("comparisons", [comp]):
        rows = {f"{r['layer_a']} vs {r['layer_b']}": {k: v for k, v in r.items() if k not in ("layer_a", "layer_b")}
                for r in c.get("pairs", [])}
        label = c.get("label") or f"{Path(c.get('run_a', '')).name} vs {Path(c.get('run_b', '')).name}"
        parts.append(f"<h3>{esc(label)}</h3>{grid_table(rows, 'layers')}")
    return "".join(parts) + "</section>"


CSS = """
:root { --fg:#1d232b; --dim:#5c6773; --line:#d9dee4; --bg:#ffffff; --soft:#f5f7f9; --accent:#1f5fa8; }
* { box-sizing: border-box; }
body { margin:0; font:15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color:var(--fg); background:var(--bg); }
header { background:#14243a; color:#fff; padding:22px 32px 18px; }
header h1 { margin:0 0 4px; font-size:24px; font-weight:600; }
header p { margin:0; color:#c7d3e0; font-size:13px; }
main { max-width:1180px; margin:0 auto; padding:8px 32px 48px; }
nav.toc { background:var(--soft); border:1px solid var(--line); border-radius:6px; padding:10px 16px; margin:18px 0;
          font-size:14px; }
nav.toc a { color:var(--accent); text-decoration:none; margin-right:10px; white-space:nowrap; }
nav.toc div { margin:2px 0; }
h2 { font-size:21px; border-bottom:2px solid #14243a; padding-bottom:4px; margin-top:42px; }
h3 { font-size:17px; margin:26px 0 8px; }
h4 { font-size:14px; margin:14px 0 4px; color:var(--dim); text-transform:capitalize; }
section.analysis { border-top:1px solid var(--line); margin-top:22px; }
table { border-collapse:collapse; font-size:13px; margin:6px 0 10px; }
table.kv th { text-align:left; font-weight:500; color:var(--dim); padding:2px 14px 2px 0; vertical-align:top;
              white-space:nowrap; }
table.kv td { padding:2px 0; }
table.grid th, table.grid td { border:1px solid var(--line); padding:3px 8px; text-align:left; }
table.grid tr:first-child th { background:var(--soft); font-weight:600; }
table.grid tr:nth-child(even) td { background:#fafbfc; }
td.num { font-variant-numeric: tabular-nums; white-space:nowrap; }
.scroll { overflow-x:auto; }
.two { display:flex; gap:40px; flex-wrap:wrap; }
.two > div { flex:1 1 420px; }
figure { margin:14px 0 20px; }
figure img { max-width:100%; height:auto; border:1px solid var(--line); background:#fff; }
figcaption { font-size:13px; color:var(--dim); margin-top:4px; max-width:900px; }
ul.findings { background:#eef4fb; border-left:4px solid var(--accent); padding:8px 12px 8px 30px; margin:8px 0;
              font-size:14px; }
.overview li { margin:2px 0; }
.skip { color:var(--dim); font-style:italic; }
.warn { color:#a40000; }
.approx { color:#9a5b00; font-weight:600; }
.dim { color:var(--dim); font-size:13px; }
pre { background:var(--soft); border:1px solid var(--line); padding:10px; font-size:12px; overflow-x:auto;
      max-height:420px; }
pre.cmd { max-height:none; white-space:pre-wrap; }
details { margin:8px 0; }
summary { cursor:pointer; color:var(--accent); font-size:14px; }
p.tables { font-size:13px; }
p.tables a { color:var(--accent); }
footer { color:var(--dim); font-size:12px; text-align:center; padding:20px; }
figure.hero img { width:100%; max-width:1116px; }
figure.hero video { max-width:100%; height:auto; }
section.analysis figure img { max-width:min(100%, 900px); }
table.grid { font-size:12px; max-width:100%; }
table.grid td, table.grid th { max-width:22em; overflow-wrap:anywhere; }
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


def build_report(run_dir: str | Path, out: str | Path, *, title: str | None = None) -> Path:
    """Write one self-contained HTML file for the analyze run(s) under `run_dir`; return its path."""
    from xinc import __version__

    top = Path(run_dir)
    runs = find_runs(top)
    multi = not (top / "results.json").is_file()
    label = {r: (r.relative_to(top).as_posix() if multi else r.name) for r in runs}
    sections, toc, overview = [], [], []
    for i, run in enumerate(runs):
        rid = f"run{i}"
        res = read_results(run / "results.json")
        try:
            kind = str((res.get("model") or {}).get("kind", "model"))
            name = f"{label[run]} ({kind.upper()})"
            body, findings = _run_section(run, rid, name)
        except (AttributeError, TypeError, KeyError, ValueError, IndexError) as e:
            raise XincError(f"{run / 'results.json'}: malformed ({type(e).__name__}: {e}) ; regenerate it with "
                            "`xinc analyze`") from None
        sections.append(body)
        links = " ".join(f'<a href="#{esc(rid)}-{esc(aid)}">{esc(aid.upper())}</a>' for aid in run_analysis_ids(res)
                         if res.get(aid))
        toc.append(f'<div><a href="#{rid}"><b>{esc(name)}</b></a> {links}</div>')
        if findings:
            overview.append(f"<li><b>{esc(name)}</b><ul>" + "".join(f"<li>{f}</li>" for f in findings) + "</ul></li>")
    from xinc.report.overview import overview_section

    try:
        overview_html = overview_section(top, runs, {r: f"{label[r]}" for r in runs}, figure_html)
    except (AttributeError, TypeError, KeyError, ValueError, IndexError) as e:
        raise XincError(f"{top}: malformed results.json or videos.json ({type(e).__name__}: {e}) ; regenerate "
                        "them with `xinc analyze` / `xinc video`") from None
    if overview_html:
        toc.insert(0, '<div><a href="#overview"><b>Overview: hero figures and videos</b></a></div>')
    try:
        comparison = _comparison(top) if multi else ""
    except (AttributeError, TypeError, KeyError, ValueError, IndexError) as e:
        raise XincError(f"{top / 'comparison.json'}: malformed ({type(e).__name__}: {e}) ; regenerate it") from None
    if comparison:
        toc.append('<div><a href="#comparison"><b>Across models (A6)</b></a></div>')
    top_cfg = _try_json(top / "config.json") if multi else None
    produced = ""
    if isinstance(top_cfg, dict) and top_cfg:
        cmds = top_cfg.get("commands") or []
        cmd_text = "\n".join(str(c) for c in cmds) if isinstance(cmds, list) and cmds else str(
            top_cfg.get("command", ""))
        produced = ('<section class="run" id="produced"><h2>How this report was produced</h2>'
                    + (f"<pre class=\"cmd\">{esc(cmd_text)}</pre>" if cmd_text else "")
                    + f"<details><summary>resolved configuration ({esc(top / 'config.json')})</summary>"
                    f"<pre>{esc(json.dumps(top_cfg, indent=1))}</pre></details></section>")
        toc.append('<div><a href="#produced"><b>Commands and configuration</b></a></div>')
    when = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    title = title or f"xinc report — {top.resolve().name}"
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
{html_generator_meta()}
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)}</title><style>{CSS}</style></head>
<body>
<header><h1>{esc(title)}</h1>
<p>Implicit neural canvases: every neuron's contribution map to every output pixel, and the analyses A1–A6 of
"Explaining the Implicit Neural Canvas" (CVPR 2024) with corrected forms. Generated {esc(when)} by xinc
{esc(__version__)} from {esc(top)}.</p></header>
<main>
<nav class="toc">{"".join(toc)}</nav>
{overview_html}
{('<h2>Key findings</h2><ul class="overview">' + "".join(overview) + "</ul>") if overview else ""}
{"".join(sections)}
{comparison}
{produced}
</main>
<footer>Self-contained file: images are embedded; nothing is loaded from the network.</footer>
<div id="xinc-status" hidden></div>
<script>{STATUS_JS}</script>
</body></html>
"""
    with owned_file(out, inputs=[run_dir], kind="report") as tmp:
        tmp.write_text(page, encoding="utf-8")
    return Path(out)
