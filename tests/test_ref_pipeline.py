"""`xinc run` from a TOML config rebuilds exactly the steps whose settings or upstream inputs changed (counted from
the step markers under OUT/.steps), and its report carries the numbers, checked in the parsed DOM."""

from __future__ import annotations

import json
import math
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from xinc.canvas import compute_canvas
from xinc.cli.main import main
from xinc.data.synth import generate_synthetic
from xinc.models.io import load_model

TOML = """\
out = "{out}"
root = "{root}"
dataset = "cityscapes-vps"
size = [32, 64]
device = "cpu"
seed = 0
models = ["ffn"]
compare = false
progress = false
layers = {{ ffn = "layer2" }}

[ffn]
steps = {steps}
width = 16
eval_every = 10
activation = "gelu"  # a real linearisation gap, so the reported residual is a number worth checking

[canvas]
mode = "paper"
top = {top}

[analyze]
analyses = "a1"
mode = "both"
"""


def markers(out: Path) -> dict[str, int]:
    """{step name: marker mtime} for every completion marker (flat '<clip>__<step>.json' or '<clip>/<step>.json')."""
    root = out / ".steps"
    return {p.relative_to(root).with_suffix("").as_posix().replace("__", "/"): p.stat().st_mtime_ns
            for p in root.rglob("*.json")}


def run(tmp_path: Path, *, steps: int, top: int) -> set[str]:
    """Run the pipeline with these settings; return the names of the steps that executed (markers rewritten)."""
    cfg = tmp_path / "pipeline.toml"
    cfg.write_text(TOML.format(out=tmp_path / "out", root=tmp_path / "data", steps=steps, top=top))
    before = markers(tmp_path / "out") if (tmp_path / "out" / ".steps").is_dir() else {}
    assert main(["run", str(cfg)]) == 0
    after = markers(tmp_path / "out")
    return {name for name, t in after.items() if before.get(name) != t}


# ------------------------------------------------------------------ a small DOM


class Node:
    def __init__(self, tag: str, attrs: dict[str, str], parent: Node | None) -> None:
        self.tag, self.attrs, self.parent, self.children, self.text_parts = tag, attrs, parent, [], []

    def text(self) -> str:
        return "".join(p if isinstance(p, str) else p.text() for p in self.text_parts)

    def iter(self, tag: str | None = None):
        for c in self.children:
            if tag is None or c.tag == tag:
                yield c
            yield from c.iter(tag)

    def has_class(self, cls: str) -> bool:
        return cls in (self.attrs.get("class") or "").split()


VOID = {"meta", "br", "img", "hr", "link", "input", "source", "col", "wbr"}


class DOM(HTMLParser):
    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.root = self.cur = Node("#root", {}, None)
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        node = Node(tag, dict(attrs), self.cur)
        self.cur.children.append(node)
        self.cur.text_parts.append(node)
        if tag not in VOID:
            self.cur = node

    def handle_endtag(self, tag):
        n = self.cur
        while n is not None and n.tag != tag:
            n = n.parent
        if n is not None and n.parent is not None:
            self.cur = n.parent

    def handle_data(self, data):
        self.cur.text_parts.append(data)


def numbers_in(text: str) -> list[float]:
    return [float(x) for x in re.findall(r"[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?", text)]


def check_report_dom(html: Path, run_dir: Path) -> None:
    """Key findings, the canvas/residual table and the commands, read from the parsed page."""
    res = json.loads((run_dir / "results.json").read_text())
    dom = DOM(html.read_text()).root
    # key findings: the overview's findings list (the page's first) holds each analysis's first summary line
    sections = [s for s in dom.iter("section") if s.attrs.get("id") == "overview"]
    assert sections, "no overview section"
    overview = [ul for ul in sections[0].iter("ul") if ul.has_class("findings")]
    assert overview, "no key-findings list"
    found = " ".join(li.text() for li in overview[0].iter("li"))
    assert res["a1"]["summary"][0] in found
    # canvas table: one row per (layer, mode) with the exact flag and the residual numbers of results.json
    rows = {}
    for tr in dom.iter("tr"):
        cells = [c for c in tr.children if c.tag in ("th", "td")]
        if cells and cells[0].tag == "th" and cells[0].text() in res["canvas"]:
            rows[(cells[0].text(), cells[1].text())] = [c.text() for c in cells]
    for layer, info in res["canvas"].items():
        for mode, mi in (info.get("modes") or {"": info}).items():
            assert (layer, mode) in rows, f"canvas table lacks {layer} {mode}"
            row = rows[(layer, mode)]
            assert ("approximate" not in " ".join(row)) == bool(mi["exact"])
            shown = numbers_in(" ".join(row))
            for key, v in mi["residual"].items():  # the relative residuals are what the table shows
                if key.endswith("rel") and isinstance(v, float) and v > 0:
                    assert any(math.isclose(s, v, rel_tol=6e-3) for s in shown), f"{layer} {mode} {key} {v} not shown"
    # the residuals and flags in results.json are the engine's, recomputed here from the saved model
    model = load_model(run_dir.parent / "models" / "ffn")
    for mode, mi in res["canvas"]["layer2"]["modes"].items():
        cv = compute_canvas(model, "layer2", 0, mode=mode)
        assert bool(mi["exact"]) == cv.exact, mode
        for key, v in cv.residual.items():
            assert mi["residual"][key] == pytest.approx(v, rel=1e-3, abs=1e-6), (mode, key)
    assert not res["canvas"]["layer2"]["modes"]["linear"]["exact"]  # GELU: the tangent network is not the net
    # commands: how the run and the whole report were produced
    cmds = "\n".join(p.text() for p in dom.iter("pre") if p.has_class("cmd"))
    for what in ("xinc train ffn", "xinc canvas", "xinc analyze"):
        assert what in cmds, f"{what!r} missing from the commands"


def test_run_rebuilds_exactly_the_changed_steps_and_reports_numbers(tmp_path):
    generate_synthetic(tmp_path / "data", "cityscapes-vps", seed=0, frames=5, size=(32, 64), videos=1, flo=False)
    first = run(tmp_path, steps=10, top=3)
    kinds = {k: {n for n in first if k in n.rsplit("/", 1)[-1]} for k in ("train", "canvas", "analyze", "explore",
                                                                              "report")}
    assert all(len(v) == 1 for k, v in kinds.items() if k != "report") and len(kinds["report"]) >= 1, first
    assert set().union(*kinds.values()) == first, first  # one clip, one model: nothing else runs
    check_report_dom(tmp_path / "out" / "report.html", tmp_path / "out" / "0001" / "ffn")
    # a canvas setting changed: the canvas step and the reports downstream of it, nothing else
    assert run(tmp_path, steps=10, top=4) == kinds["canvas"] | kinds["report"]
    # a training setting changed: training and everything that reads the model
    assert run(tmp_path, steps=12, top=4) == first


@pytest.mark.parametrize("bad", ["steps = [", "[ffn]\nstepz = 3"])
def test_bad_toml_config_is_one_line(tmp_path, capsys, bad):
    cfg = tmp_path / "pipeline.toml"
    cfg.write_text(f'out = "{tmp_path / "out"}"\nroot = "{tmp_path}"\n{bad}\n')
    assert main(["run", str(cfg)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("xinc: error:") and len(err.splitlines()) == 1, err
    assert not (tmp_path / "out").exists()
