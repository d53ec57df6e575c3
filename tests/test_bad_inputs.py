"""Bad inputs to every command: one line on stderr, exit 2, nothing written, no user file changed.

Each case runs in-process through `xinc.cli.main.main(argv)` in a workspace holding user files (frames,
an image, a folder of the user's own, tiny models, an analyze run, a synthetic dataset). The whole
workspace (and its parent, for `..`) is hashed before and after: a refused command must leave every byte,
file name and folder as it was: no `.partial`, no lock file, no half-written output.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from xinc.cli.main import main

# --------------------------------------------------------------------------- the workspace


def _png_header_only(path: Path, w: int, h: int) -> None:
    """A tiny PNG that declares w x h pixels (a decompression bomb for PIL's size limit)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16))
                     + chunk(b"IEND", b""))


def _checkpoint_bomb(path: Path, numel: int = 2**29) -> None:
    """A torch-zip checkpoint whose one float storage declares numel*4 bytes (2 GiB) but holds 1 KiB deflated."""
    import collections
    import io
    import pickle
    import zipfile

    class Storage:
        pass

    class Tensor:
        def __reduce__(self):
            return torch._utils._rebuild_tensor_v2, (Storage(), 0, (numel,), (1,), False, collections.OrderedDict())

    class P(pickle.Pickler):
        def persistent_id(self, obj):
            return ("storage", torch.FloatStorage, "0", "cpu", numel) if isinstance(obj, Storage) else None

    buf = io.BytesIO()
    P(buf, protocol=2).dump({"state_dict": {"w": Tensor()}})
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", buf.getvalue())
        zf.writestr("archive/byteorder", "little")
        zf.writestr("archive/data/0", b"\0" * 1024, compress_type=zipfile.ZIP_DEFLATED)
    raw = bytearray(path.read_bytes())
    size = struct.pack("<I", numel * 4)
    for sig, off in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):  # local and central headers of data/0
        for i in range(len(raw)):
            if raw[i:i + 4] == sig and b"archive/data/0" in raw[i:i + 80]:
                raw[i + off:i + off + 4] = size
    path.write_bytes(bytes(raw))


def _frames(folder: Path, n: int = 3, h: int = 20, w: int = 40) -> None:
    folder.mkdir(parents=True)
    yy, xx = np.mgrid[0:h, 0:w]
    for k in range(n):
        arr = np.stack([127 + 100 * np.sin(2 * math.pi * (xx / w + k / n)), 127 + 100 * np.cos(yy / 3),
                        np.full((h, w), 60.0 + 20 * k)], -1).clip(0, 255).astype(np.uint8)
        Image.fromarray(arr).save(folder / f"{k + 1:04d}.png")


def _run_quiet(argv: list[str]) -> None:
    assert main(argv) == 0, argv


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    """The user's workspace: inputs, a folder of their own, and outputs of earlier xinc runs."""
    ws = tmp_path_factory.mktemp("bad") / "ws"
    ws.mkdir()
    _frames(ws / "frames")
    (ws / "user").mkdir()
    (ws / "user" / "thesis.txt").write_text("years of work\n")
    (ws / "notes.txt").write_text("a file of the user\n")
    (ws / "garbage.pth").write_bytes(b"not a checkpoint at all")
    _checkpoint_bomb(ws / "bomb.pth")
    (ws / "fake.png").write_text("this is not a png")
    (ws / "novideo.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64)
    _png_header_only(ws / "bomb.png", 40000, 40000)
    _frames(ws / "badframes", n=2)
    (ws / "badframes" / "0003.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    (ws / "emptydir").mkdir()
    cwd = os.getcwd()
    os.chdir(ws)
    try:
        _run_quiet(["train", "ffn", "--image", "frames/0001.png", "--out", "ffn", "--size", "16x16", "--width", "8",
                    "--steps", "4", "--eval-every", "2", "--device", "cpu", "--no-progress"])
        _run_quiet(["train", "nerv", "--video", "frames", "--out", "nerv", "--size", "16x32", "--strides", "2", "2",
                    "--fc-dim", "4", "--epochs", "2", "--eval-every", "1", "--device", "cpu", "--no-progress"])
        _run_quiet(["canvas", "ffn", "--out", "canvas", "--device", "cpu", "--no-progress", "--top", "2"])
        _run_quiet(["synth", "--out", "data", "--frames", "5", "--size", "32x64", "--no-flo"])
    finally:
        os.chdir(cwd)
    # a model with a NaN weight, written like any model directory (the user's file, not ours to fix)
    nan = ws / "nanmodel"
    nan.mkdir()
    (nan / "config.json").write_text((ws / "ffn" / "config.json").read_text())
    state = load_file(str(ws / "ffn" / "model.safetensors"))
    name = sorted(k for k in state if k.endswith("weight"))[0]
    state[name] = state[name].clone()
    state[name].view(-1)[0] = float("nan")
    save_file(state, str(nan / "model.safetensors"))
    # analyze runs of an attacker: results.json naming files outside, or malformed
    for name, res in {
        "run_passwd": {"a1": {"figures": [{"path": "/etc/passwd", "caption": "x"}]}},
        "run_dotdot": {"a1": {"figures": [{"path": "../../x.png", "caption": "x"}]}},
        "run_list": [1, 2, 3],
        "run_string": {"model": "not an object"},
        "run_figs": {"a2": {"figures": ["not-an-object"]}},
    }.items():
        (ws / name).mkdir()
        (ws / name / "results.json").write_text(json.dumps(res))
    (ws / "run_badjson").mkdir()
    (ws / "run_badjson" / "results.json").write_text("{not json")
    # a dataset whose JSON names a clip outside the dataset
    evil = ws / "evil_ds"
    evil.mkdir()
    (evil / "panoVIPSeg_categories.json").write_text("[]")
    (evil / "panomasksRGB").mkdir()
    (evil / "panoptic_gt_VIPSeg.json").write_text(json.dumps({"videos": [{"video_id": "../../escape"}],
                                                              "annotations": [], "categories": []}))
    # pipeline configs
    base = {"dataset": "cityscapes-vps", "synthetic": {"videos": 1, "frames": 5}, "size": [32, 64]}
    configs = {
        "cfg_clip.json": {**base, "out": "p1", "videos": ["../../evil"]},
        "cfg_rootuser.json": {**base, "out": "p2", "root": "user"},
        "cfg_outuser.json": {**base, "out": "user"},
        "cfg_steps.json": {**base, "out": "p3", "ffn": {"steps": -1}},
        "cfg_option.json": {**base, "out": "p4", "analyze_options": {"a2": {"nonsense": 1}}},
        "cfg_unknown.json": {**base, "out": "p5", "bogus": 1},
        "cfg_lr.json": {**base, "out": "p6", "ffn": {"lr": float("nan")}},
        "cfg_size.json": {**base, "out": "p7", "size": [0, 0]},
        "cfg_top.json": {**base, "out": "p8", "canvas": {"top": 0}},
        "cfg_epochs.json": {**base, "out": "p9", "nerv": {"epochs": "many"}},
        "cfg_dot.json": {**base, "out": "."},
        "cfg_evilds.json": {"dataset": "vipseg", "root": "evil_ds", "out": "p10", "size": [32, 64]},
        "cfg_chunk.json": {**base, "out": "p11", "analyze": {"chunk_neurons": 0}},
    }
    for name, cfg in configs.items():
        (ws / name).write_text(json.dumps(cfg, allow_nan=True))
    (ws / "cfg_notjson.json").write_text("{out: p}")
    return ws


def _digest(root: Path) -> dict[str, str]:
    """Every file and folder under `root` -> content hash (folders: '<dir>')."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            out[os.path.relpath(os.path.join(dirpath, d), root)] = "<dir>"
        for f in filenames:
            p = os.path.join(dirpath, f)
            out[os.path.relpath(p, root)] = hashlib.sha256(Path(p).read_bytes()).hexdigest() if not os.path.islink(
                p) else "<link>"
    return out


# --------------------------------------------------------------------------- the cases

FFN = ["train", "ffn", "--image", "frames/0001.png", "--size", "16x16", "--steps", "2", "--device", "cpu",
       "--no-progress"]
NERV = ["train", "nerv", "--video", "frames", "--size", "16x32", "--strides", "2", "2", "--fc-dim", "4",
        "--epochs", "1", "--device", "cpu", "--no-progress"]
REC = ["reconstruct", "nerv", "--device", "cpu"]
CANVAS = ["canvas", "ffn", "--device", "cpu", "--no-progress"]
ANALYZE = ["analyze", "ffn", "--device", "cpu", "--no-progress", "--analyses", "a1"]
SYNTH = ["synth", "--frames", "5", "--size", "32x64"]
FLOW = ["flow", "frames", "--size", "16x32"]
LONG = "x" * 300

# (id, argv, a piece of the expected message or None); every case must exit 2 with one line
CASES: list[tuple[str, list[str], str | None]] = [
    # ---- data loss: outputs that are inputs, ancestors, foreign folders, special paths
    ("ffn-out-dot", [*FFN, "--out", "."], "current folder"),
    ("ffn-out-dotdot", [*FFN, "--out", ".."], "current folder"),
    ("ffn-out-root", [*FFN, "--out", "/"], "current folder"),
    ("ffn-out-input-folder", [*FFN, "--out", "frames"], "holds the input"),
    ("ffn-out-input-file", [*FFN, "--out", "frames/0001.png"], None),
    ("ffn-out-foreign", [*FFN, "--out", "user"], "not written by xinc"),
    ("ffn-out-foreign-overwrite", [*FFN, "--out", "user", "--overwrite"], "even with --overwrite"),
    ("ffn-out-ours-no-overwrite", [*FFN, "--out", "nerv"], "--overwrite"),
    ("ffn-out-file", [*FFN, "--out", "notes.txt"], "is a file"),
    ("ffn-out-inside-file", [*FFN, "--out", "notes.txt/x"], "is a file"),
    ("ffn-out-too-long", [*FFN, "--out", LONG], "too long"),
    ("ffn-out-empty", [*FFN, "--out", ""], None),
    ("nerv-out-input", [*NERV, "--out", "frames"], "input"),
    ("nerv-out-inside-input", [*NERV, "--out", "frames/sub"], "inside the input"),
    ("nerv-out-dot", [*NERV, "--out", "."], "current folder"),
    ("nerv-out-foreign-overwrite", [*NERV, "--out", "user", "--overwrite"], "not written by xinc"),
    ("nerv-out-ancestor", [*NERV, "--out", ".", "--video", "frames"], None),
    ("rec-out-input", [*REC, "--out", "nerv"], "input"),
    ("rec-out-inside-input", [*REC, "--out", "nerv/frames"], "inside the input"),
    ("rec-out-foreign", [*REC, "--out", "user", "--overwrite"], "not written by xinc"),
    ("rec-out-dot", [*REC, "--out", "."], "current folder"),
    ("canvas-out-input", [*CANVAS, "--out", "ffn", "--overwrite"], "input"),
    ("canvas-out-foreign", [*CANVAS, "--out", "user", "--overwrite"], "not written by xinc"),
    ("canvas-out-ours", [*CANVAS, "--out", "canvas"], "--overwrite"),
    ("canvas-out-inside", [*CANVAS, "--out", "ffn/canvas"], "inside the input"),
    ("analyze-out-input", [*ANALYZE, "--out", "ffn", "--overwrite"], "input"),
    ("analyze-out-foreign", [*ANALYZE, "--out", "user", "--overwrite"], "not written by xinc"),
    ("analyze-out-dot", [*ANALYZE, "--out", "."], "current folder"),
    ("analyze-out-data-root", [*ANALYZE, "--out", "data", "--overwrite", "--dataset", "cityscapes-vps", "--root",
                               "data", "--video", "0001"], "input"),
    ("synth-out-foreign", [*SYNTH, "--out", "user", "--overwrite"], "not written by xinc"),
    ("synth-out-ours", [*SYNTH, "--out", "data"], "--overwrite"),
    ("synth-out-dot", [*SYNTH, "--out", "."], "current folder"),
    ("synth-out-frames", [*SYNTH, "--out", "frames", "--overwrite"], "not written by xinc"),
    ("flow-out-input", [*FLOW, "--out", "frames", "--overwrite"], "input"),
    ("flow-out-foreign", [*FLOW, "--out", "user", "--overwrite"], "not written by xinc"),
    ("flow-out-dot", [*FLOW, "--out", "."], "current folder"),
    ("import-out-foreign", ["import", "xinc-ffn", "garbage.pth", "--out", "user", "--overwrite"], "not written"),
    ("import-out-ckpt", ["import", "nerv", "garbage.pth", "--out", "garbage.pth"], None),
    ("import-out-dot", ["import", "hnerv-quant", "garbage.pth", "--out", "."], "current folder"),
    ("report-out-user-file", ["report", "canvas", "--out", "notes.txt"], None),
    ("report-out-folder", ["report", "canvas", "--out", "user"], None),
    ("report-out-input-file", ["report", "canvas", "--out", "frames/0001.png"], None),
    ("demo-out-foreign", ["demo", "--quick", "--out", "user", "--device", "cpu"], "not written by xinc"),
    ("demo-out-dot", ["demo", "--quick", "--out", ".", "--device", "cpu"], "current folder"),
    ("demo-out-file", ["demo", "--quick", "--out", "notes.txt", "--device", "cpu"], None),
    ("run-clip-id", ["run", "cfg_clip.json"], "plain name"),
    ("run-root-user-synthetic", ["run", "cfg_rootuser.json"], None),
    ("run-out-user", ["run", "cfg_outuser.json"], "not written by xinc"),
    ("run-out-dot", ["run", "cfg_dot.json"], "current folder"),
    ("run-dataset-clip-escape", ["run", "cfg_evilds.json"], None),
    ("run-override-out-user", ["run", "cfg_steps.json", "--out", "user"], None),
    # ---- numbers and ranges
    ("ffn-steps-0", [*FFN, "--out", "o", "--steps", "0"], "--steps"),
    ("ffn-steps-neg", [*FFN, "--out", "o", "--steps", "-5"], "--steps"),
    ("ffn-lr-nan", [*FFN, "--out", "o", "--lr", "nan"], "--lr"),
    ("ffn-lr-inf", [*FFN, "--out", "o", "--lr", "inf"], "--lr"),
    ("ffn-sigma-neg", [*FFN, "--out", "o", "--sigma", "-1"], "--sigma"),
    ("ffn-width-0", [*FFN, "--out", "o", "--width", "0"], "--width"),
    ("ffn-size-0", [*FFN, "--out", "o", "--size", "0x16"], "--size"),
    ("ffn-size-text", [*FFN, "--out", "o", "--size", "big"], "--size"),
    ("ffn-crop-0", [*FFN, "--out", "o", "--crop", "0x0"], "--crop"),
    ("ffn-size-huge", [*FFN, "--out", "o", "--size", "100000x100000"], "GiB"),
    ("ffn-steps-text", [*FFN, "--out", "o", "--steps", "abc"], "--steps"),
    ("ffn-unknown-option", [*FFN, "--out", "o", "--bogus", "1"], "Unrecognized"),
    ("ffn-activation", [*FFN, "--out", "o", "--activation", "swish"], "--activation"),
    ("ffn-device", [*FFN, "--out", "o", "--device", "tpu"], "--device"),
    ("nerv-frames-0", [*NERV, "--out", "o", "--frames", "0"], "--frames"),
    ("nerv-epochs-0", [*NERV, "--out", "o", "--epochs", "0"], "--epochs"),
    ("nerv-batch-neg", [*NERV, "--out", "o", "--batch", "-1"], "--batch"),
    ("nerv-warmup", [*NERV, "--out", "o", "--warmup", "1.5"], "--warmup"),
    ("nerv-warmup-nan", [*NERV, "--out", "o", "--warmup", "nan"], "--warmup"),
    ("nerv-strides-0", [*NERV, "--out", "o", "--strides", "0"], "--strides"),
    ("nerv-reduce-0", [*NERV, "--out", "o", "--reduce", "0"], "--reduce"),
    ("nerv-modelsize-inf", [*NERV, "--out", "o", "--modelsize", "inf"], "--modelsize"),
    ("nerv-size-huge", [*NERV, "--out", "o", "--size", "60000x80000"], "GiB"),
    ("nerv-dataset-no-root", [*NERV, "--out", "o", "--dataset", "vipseg"], "--root"),
    ("rec-frames-reversed", [*REC, "--out", "o", "--frames", "5-2"], "reversed"),
    ("rec-frames-outside", [*REC, "--out", "o", "--frames", "99"], "outside"),
    ("rec-frames-comma", [*REC, "--out", "o", "--frames", ","], "--frames"),
    ("rec-frames-text", [*REC, "--out", "o", "--frames", "abc"], "--frames"),
    ("rec-batch-0", [*REC, "--out", "o", "--batch", "0"], "--batch"),
    ("canvas-layers-comma", [*CANVAS, "--out", "o", "--layers", ","], "--layers"),
    ("canvas-layers-unknown", [*CANVAS, "--out", "o", "--layers", "block9"], "block9"),
    ("canvas-frames-reversed", ["canvas", "nerv", "--out", "o", "--frames", "2-1"], "reversed"),
    ("canvas-top-0", [*CANVAS, "--out", "o", "--top", "0"], "--top"),
    ("canvas-chunk-0", [*CANVAS, "--out", "o", "--chunk-neurons", "0"], "--chunk-neurons"),
    ("canvas-budget-nan", [*CANVAS, "--out", "o", "--memory-budget-mb", "nan"], "--memory-budget-mb"),
    ("canvas-budget-neg", [*CANVAS, "--out", "o", "--memory-budget-mb", "-1"], "--memory-budget-mb"),
    ("canvas-mode", [*CANVAS, "--out", "o", "--mode", "fast"], "--mode"),
    ("canvas-dtype", [*CANVAS, "--out", "o", "--dtype", "int8"], "--dtype"),
    ("analyze-option-misspelt", [*ANALYZE, "--out", "o", "--option", "a2.nonsense=1"], "nonsense"),
    ("analyze-option-unknown-aid", [*ANALYZE, "--out", "o", "--option", "a9.x=1"], "a9"),
    ("analyze-option-no-equals", [*ANALYZE, "--out", "o", "--option", "a2.topk"], "--option"),
    ("analyze-analyses-comma", ["analyze", "ffn", "--out", "o", "--analyses", ","], "--analyses"),
    ("analyze-analyses-unknown", ["analyze", "ffn", "--out", "o", "--analyses", "a99"], "a99"),
    ("analyze-layers-comma", [*ANALYZE, "--out", "o", "--layers", ","], "--layers"),
    ("analyze-frames-reversed", ["analyze", "nerv", "--out", "o", "--frames", "3-1"], "reversed"),
    ("analyze-sample-0", [*ANALYZE, "--out", "o", "--sample-neurons", "0"], "--sample-neurons"),
    ("analyze-budget-inf", [*ANALYZE, "--out", "o", "--memory-budget-mb", "inf"], "--memory-budget-mb"),
    ("analyze-chunk-neg", [*ANALYZE, "--out", "o", "--chunk-neurons", "-1"], "--chunk-neurons"),
    ("analyze-frame-neg", [*ANALYZE, "--out", "o", "--frame", "-2"], "--frame"),
    ("analyze-mode", [*ANALYZE, "--out", "o", "--mode", "fast"], "--mode"),
    ("synth-frames-0", [*SYNTH, "--out", "o", "--frames", "0"], "--frames"),
    ("synth-frames-range", [*SYNTH, "--out", "o", "--frames", "3"], "--frames"),
    ("synth-videos-0", [*SYNTH, "--out", "o", "--videos", "0"], "--videos"),
    ("synth-pan-nan", [*SYNTH, "--out", "o", "--pan", "nan"], "--pan"),
    ("synth-pan-inf", [*SYNTH, "--out", "o", "--pan", "inf"], "--pan"),
    ("synth-things-neg", [*SYNTH, "--out", "o", "--things", "-1"], "--things"),
    ("synth-size-huge", [*SYNTH, "--out", "o", "--size", "100000x100000"], "GiB"),
    ("synth-size-tiny", [*SYNTH, "--out", "o", "--size", "8x8"], "--size"),
    ("flow-frames-reversed", [*FLOW, "--out", "o", "--frames", "2-0"], "reversed"),
    ("flow-size-0", [*FLOW, "--out", "o", "--size", "0x10"], "--size"),
    ("flow-crop-0", [*FLOW, "--out", "o", "--crop", "0x0"], "--crop"),
    ("import-nerv-frames-0", ["import", "nerv", "garbage.pth", "--out", "o", "--frames", "0"], "--frames"),
    ("import-nerv-frames-neg", ["import", "nerv", "garbage.pth", "--out", "o", "--frames", "-3"], "--frames"),
    ("import-hnerv-frames-0", ["import", "hnerv-quant", "garbage.pth", "--out", "o", "--frames", "0"], "--frames"),
    ("demo-size-0", ["demo", "--quick", "--out", "o", "--size", "0x4"], "--size"),
    ("demo-frames-0", ["demo", "--quick", "--out", "o", "--frames", "0"], "--frames"),
    ("run-steps-neg", ["run", "cfg_steps.json"], "steps"),
    ("run-option-misspelt", ["run", "cfg_option.json"], "nonsense"),
    ("run-unknown-key", ["run", "cfg_unknown.json"], "bogus"),
    ("run-lr-nan", ["run", "cfg_lr.json"], "lr"),
    ("run-size-0", ["run", "cfg_size.json"], "size"),
    ("run-top-0", ["run", "cfg_top.json"], "top"),
    ("run-epochs-text", ["run", "cfg_epochs.json"], "epochs"),
    ("run-chunk-0", ["run", "cfg_chunk.json"], "chunk"),
    # ---- files we read: missing, unreadable, malformed, hostile
    ("ffn-image-missing", [*FFN, "--out", "o", "--image", "missing.png"], "missing.png"),
    ("ffn-image-not-png", [*FFN, "--out", "o", "--image", "fake.png"], "fake.png"),
    ("ffn-image-bomb", [*FFN, "--out", "o", "--image", "bomb.png"], "bomb.png"),
    ("ffn-image-folder", [*FFN, "--out", "o", "--image", "user"], None),
    ("nerv-video-missing", [*NERV, "--out", "o", "--video", "nothere"], "nothere"),
    ("nerv-frames-unreadable", [*NERV, "--out", "o", "--video", "badframes"], "0003.png"),
    ("nerv-video-no-stream", [*NERV, "--out", "o", "--video", "novideo.mp4"], "novideo.mp4"),
    ("nerv-video-empty-dir", [*NERV, "--out", "o", "--video", "emptydir"], "emptydir"),
    ("rec-model-missing", ["reconstruct", "nomodel", "--out", "o"], "nomodel"),
    ("rec-model-foreign", ["reconstruct", "user", "--out", "o"], None),
    ("rec-model-nan", ["reconstruct", "nanmodel", "--out", "o", "--device", "cpu"], "non-finite"),
    ("canvas-model-nan", ["canvas", "nanmodel", "--out", "o", "--device", "cpu"], "non-finite"),
    ("analyze-model-nan", ["analyze", "nanmodel", "--out", "o", "--device", "cpu"], "non-finite"),
    ("analyze-data-missing", [*ANALYZE, "--out", "o", "--data", "nothere"], "nothere"),
    ("analyze-root-missing", [*ANALYZE, "--out", "o", "--dataset", "vipseg", "--root", "nothere", "--video", "x"],
     "nothere"),
    ("analyze-data-bomb", [*ANALYZE, "--out", "o", "--data", "bomb.png"], "bomb.png"),
    ("import-ffn-garbage", ["import", "xinc-ffn", "garbage.pth", "--out", "o"], "garbage.pth"),
    ("import-nerv-garbage", ["import", "nerv", "garbage.pth", "--out", "o"], "garbage.pth"),
    ("import-hnerv-garbage", ["import", "hnerv-quant", "garbage.pth", "--out", "o"], "garbage.pth"),
    ("import-ckpt-missing", ["import", "xinc-ffn", "nothere.pth", "--out", "o"], "nothere.pth"),
    ("import-ckpt-folder", ["import", "nerv", "user", "--out", "o"], "user"),
    ("import-ckpt-bomb", ["import", "nerv", "bomb.pth", "--out", "o"], "decompression bomb"),
    ("import-ffn-ckpt-bomb", ["import", "xinc-ffn", "bomb.pth", "--out", "o"], "decompression bomb"),
    ("flow-src-missing", [*FLOW, "nothere", "--out", "o"], "nothere"),
    ("flow-no-stream", ["flow", "novideo.mp4", "--out", "o"], "novideo.mp4"),
    ("flow-unreadable-frame", ["flow", "badframes", "--out", "o"], "0003.png"),
    ("report-passwd", ["report", "run_passwd", "--out", "r.html"], "outside"),
    ("report-dotdot", ["report", "run_dotdot", "--out", "r.html"], "outside"),
    ("report-results-list", ["report", "run_list", "--out", "r.html"], "malformed"),
    ("report-results-string", ["report", "run_string", "--out", "r.html"], "malformed"),
    ("report-results-figure", ["report", "run_figs", "--out", "r.html"], "figures"),
    ("report-results-badjson", ["report", "run_badjson", "--out", "r.html"], "JSON"),
    ("report-missing", ["report", "nothere", "--out", "r.html"], "nothere"),
    ("report-no-results", ["report", "user", "--out", "r.html"], "results.json"),
    ("run-config-missing", ["run", "nothere.json"], "nothere.json"),
    ("run-config-not-json", ["run", "cfg_notjson.json"], "JSON"),
    ("prune-out-foreign", ["prune", "ffn", "--out", "user", "--overwrite", "--device", "cpu"], "not written by xinc"),
    ("prune-out-input", ["prune", "ffn", "--out", "ffn", "--overwrite", "--device", "cpu"], "input"),
    ("prune-out-dot", ["prune", "ffn", "--out", ".", "--device", "cpu"], "current folder"),
    ("prune-amount-text", ["prune", "ffn", "--out", "o", "--amount", "abc", "--device", "cpu"], "--amount"),
    ("prune-frames-reversed", ["prune", "nerv", "--out", "o", "--frames", "2-0", "--device", "cpu"], "reversed"),
    ("prune-model-nan", ["prune", "nanmodel", "--out", "o", "--device", "cpu"], "non-finite"),
    ("prune-model-missing", ["prune", "nothere", "--out", "o", "--device", "cpu"], "nothere"),
    ("video-out-foreign", ["video", "nerv", "--out", "user", "--overwrite", "--device", "cpu"], "not written by xinc"),
    ("video-out-input", ["video", "nerv", "--out", "nerv", "--overwrite", "--device", "cpu"], "input"),
    ("video-model-nan", ["video", "nanmodel", "--out", "o", "--device", "cpu"], "non-finite"),
    ("video-model-missing", ["video", "nothere", "--out", "o", "--device", "cpu"], "nothere"),
    ("explore-out-user-file", ["explore", "canvas", "--out", "notes.txt"], None),
    ("explore-missing", ["explore", "nothere", "--out", "e.html"], "nothere"),
    ("explore-no-results", ["explore", "user", "--out", "e.html"], None),
    ("unknown-command", ["frobnicate"], "frobnicate"),
    ("unknown-subcommand", ["train", "gan"], "gan"),
]


def test_enough_cases_over_every_command():
    from xinc.cli.main import COMMANDS

    assert len(CASES) >= 100 and len({c[0] for c in CASES}) == len(CASES)
    covered = {argv[0] for _, argv, _ in CASES}
    assert set(COMMANDS) <= covered, set(COMMANDS) - covered


def _remove_new(root: Path, before: dict[str, str]) -> None:
    """Delete what a failed case added (so one failure does not cascade into the next cases)."""
    import shutil

    for p in sorted(root.rglob("*"), key=lambda q: len(q.parts)):
        if p.exists() and os.path.relpath(p, root) not in before:
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()


@pytest.mark.parametrize("argv,needle", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_changes_nothing(ws, argv, needle, capsys, monkeypatch):
    monkeypatch.chdir(ws)
    before = _digest(ws.parent)
    capsys.readouterr()
    try:
        rc = main(list(argv))
        after = _digest(ws.parent)
    finally:
        _remove_new(ws.parent, before)
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2, (rc, err[-2000:])
    assert len(lines) == 1 and lines[0].startswith("xinc: error: ") and "Traceback" not in err, err
    if needle:
        assert needle in lines[0], lines[0]
    changed = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
    assert not changed, sorted(changed)


# --------------------------------------------------------------------------- outputs we own


def test_overwrite_replaces_our_output_only(ws, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    argv = ["reconstruct", str(ws / "ffn"), "--out", "rec", "--device", "cpu"]
    assert main(argv) == 0
    marker = json.loads((tmp_path / "rec" / ".xinc-output.json").read_text())
    assert marker["kind"] == "reconstruct" and marker["xinc"]
    (tmp_path / "rec" / "stale.txt").write_text("old")
    assert main(argv) == 2  # ours, but no --overwrite
    assert main([*argv, "--overwrite"]) == 0
    assert not (tmp_path / "rec" / "stale.txt").exists() and (tmp_path / "rec" / "0000.png").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rec"]  # no .partial, no lock, no trash


def test_legacy_output_is_recognised(ws, tmp_path, monkeypatch):
    """Outputs of xinc 0.1 have no marker; their config.json names xinc, so --overwrite may replace them."""
    from xinc.outputs import is_owned

    monkeypatch.chdir(tmp_path)
    legacy = tmp_path / "old"
    legacy.mkdir()
    (legacy / "config.json").write_text(json.dumps({"command": "xinc flow frames --out old"}))
    (legacy / "flow.npy").write_bytes(b"x")
    assert is_owned(legacy)
    foreign = tmp_path / "theirs"
    foreign.mkdir()
    (foreign / "config.json").write_text(json.dumps({"command": "make all"}))
    assert not is_owned(foreign)
    assert main(["flow", str(ws / "frames"), "--out", "old", "--size", "16x32", "--overwrite"]) == 0
    assert (legacy / ".xinc-output.json").is_file() and (legacy / "flow.npy").stat().st_size > 1


def test_second_writer_is_refused_and_stale_lock_taken_over(tmp_path, capsys):
    from xinc.errors import XincError
    from xinc.outputs import lock_path, owned_output

    out = tmp_path / "o"
    with owned_output(out, kind="test") as stage:
        (stage / "a.txt").write_text("first")
        with pytest.raises(XincError, match=r"another xinc command is writing it \(pid \d+"):
            with owned_output(out, overwrite=True):
                pass
    assert (out / "a.txt").read_text() == "first" and not lock_path(out).exists()
    # a lock file left by a process that died (no live holder): taken over
    lock_path(out).write_text(json.dumps({"pid": 2**22 + 12345, "host": "gone", "started": "then"}))
    with owned_output(out, overwrite=True) as stage:
        (stage / "b.txt").write_text("second")
    assert (out / "b.txt").is_file() and not (out / "a.txt").exists() and not lock_path(out).exists()


def test_failed_write_leaves_no_stage_and_keeps_old_output(tmp_path):
    from xinc.outputs import owned_output, partial_dir

    out = tmp_path / "o"
    with owned_output(out) as stage:
        (stage / "v1").write_text("1")
    with pytest.raises(RuntimeError):
        with owned_output(out, overwrite=True) as stage:
            (stage / "v2").write_text("2")
            raise RuntimeError("boom")
    assert (out / "v1").is_file() and not partial_dir(out).exists()


def test_owned_file_refuses_foreign_and_replaces_marked(tmp_path):
    from xinc.errors import XincError
    from xinc.outputs import html_generator_meta, owned_file

    page = tmp_path / "page.html"
    page.write_text("<html>my own page</html>")
    with pytest.raises(XincError, match="not written by xinc"):
        with owned_file(page):
            pass
    assert page.read_text() == "<html>my own page</html>"
    ours = tmp_path / "ours.html"
    for text in ("one", "two"):
        with owned_file(ours) as tmp:
            tmp.write_text(f"<html><head>{html_generator_meta()}</head>{text}</html>")
    assert "two" in ours.read_text()
    video = tmp_path / "v.mp4"
    with owned_file(video) as tmp:
        tmp.write_bytes(b"1")
    with owned_file(video) as tmp:  # the sidecar marks it ours
        tmp.write_bytes(b"2")
    assert video.read_bytes() == b"2" and (tmp_path / "v.mp4.xinc.json").is_file()


def test_os_errors_are_one_line(tmp_path, capsys, monkeypatch):
    """A full disk / read-only output becomes one line, exit 2 (the boundary in xinc.cli.main)."""
    import errno

    import xinc.data.synth as data

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "o"))

    monkeypatch.setattr(data, "generate_synthetic", full)
    assert main(["synth", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no space left" in err[0]
    monkeypatch.setattr(data, "generate_synthetic", lambda *a, **k: (_ for _ in ()).throw(
        OSError(errno.EROFS, "Read-only file system", "/ro")))
    assert main(["synth", "--out", str(tmp_path / "o")]) == 2
    assert "read-only" in capsys.readouterr().err


def test_unexpected_error_is_one_line_exit_1_and_debug_shows_it(tmp_path, capsys, monkeypatch):
    import xinc.data.synth as data

    monkeypatch.setattr(data, "generate_synthetic", lambda *a, **k: 1 / 0)
    assert main(["synth", "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("xinc: internal error in synth: ZeroDivisionError")
    assert "--debug" in err[0]
    with pytest.raises(ZeroDivisionError):
        main(["synth", "--out", str(tmp_path / "o"), "--debug"])


# --------------------------------------------------------------------------- silent wrong results


def test_nan_weights_refused_at_load(ws):
    from xinc.errors import XincError
    from xinc.models.io import load_model

    with pytest.raises(XincError, match="non-finite"):
        load_model(ws / "nanmodel")


def test_nan_quantisation_scale_refused_at_import(tmp_path, capsys):
    from tests.test_import_nerv import _quantize, to_original

    from xinc.models import NeRV, NeRVConfig

    torch.manual_seed(1)
    cfg = NeRVConfig(kind="hnerv", height=24, width=48, num_frames=4, embed="table", embed_shape=[5, 2, 4],
                     fc_hw=[2, 4], fc_dim=9, strides=[3, 2, 2], kernel_sizes=[1, 3, 5], widths=[8, 7, 6])
    model = NeRV(cfg).eval()
    packed = {"embed": _quantize(model.embeddings.detach(), 1),
              "model": {k: _quantize(v, 0 if v.dim() == 4 else None) for k, v in to_original(model).items()}}
    packed["model"]["head_layer.weight"]["scale"] = torch.tensor(float("nan"))
    path = tmp_path / "q.pth"
    torch.save(packed, path)
    assert main(["import", "hnerv-quant", str(path), "--out", str(tmp_path / "h")]) == 2
    err = capsys.readouterr().err
    assert "non-finite" in err and "head" in err and not (tmp_path / "h").exists()


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path):
    from xinc.data.frames import load_frames

    ramp = (np.linspace(0, 65535, 16 * 16).reshape(16, 16)).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I;16")
    x = load_frames(tmp_path / "g16.png", None, None, None)
    assert x.shape == (1, 3, 16, 16)
    ref = torch.from_numpy(ramp.astype(np.float64) / 65535.0).float()
    assert torch.allclose(x[0, 0], ref, atol=1e-4) and torch.equal(x[0, 0], x[0, 2])
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    assert torch.allclose(load_frames(tmp_path / "rgba.png", None, None, None)[0, 0], torch.full((8, 8), 200 / 255))


# --------------------------------------------------------------------------- security


def test_checkpoint_bomb_refused_before_inflating(ws):
    import tracemalloc

    from xinc.errors import XincError
    from xinc.models.importers.safe_pickle import load_checkpoint

    tracemalloc.start()
    with pytest.raises(XincError, match="decompression bomb"):
        load_checkpoint(ws / "bomb.pth")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 32 * 2**20  # nothing near the declared 2 GiB was allocated


HOSTILE = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'


def _hostile_run(folder: Path) -> Path:
    """An analyze run whose results.json carries markup in every kind of value the report prints."""
    run = folder / "hostile"
    (run / "figures" / "a1").mkdir(parents=True)
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(run / "figures" / "a1" / "ok.png")
    res = {
        "model": {"kind": HOSTILE, "dir": HOSTILE, "params": HOSTILE, "layers": [HOSTILE],
                  "config": {"height": HOSTILE}},
        "data": {"source": HOSTILE, "frames": [HOSTILE]},
        "reconstruction": {"frames": [0, 1], "psnr_8bit": [HOSTILE, HOSTILE], "mean_psnr_8bit": HOSTILE},
        "canvas": {HOSTILE: {"exact": HOSTILE, "rule": HOSTILE, "num_neurons": HOSTILE, "notes": HOSTILE,
                             "residual": {HOSTILE: HOSTILE}}},
        "skipped": {"a2": HOSTILE},
        "a1": {"title": HOSTILE, "summary": [HOSTILE], HOSTILE: HOSTILE, "nested": {HOSTILE: {HOSTILE: HOSTILE}},
               "figures": [{"path": "figures/a1/ok.png", "caption": HOSTILE}]},
        "a7": {"title": HOSTILE, "summary": [HOSTILE]},
        'a8"><script>x()</script>': {"summary": [HOSTILE]},
    }
    (run / "results.json").write_text(json.dumps(res))
    (run / "config.json").write_text(json.dumps({"command": HOSTILE, "mode": HOSTILE, "analyses": [HOSTILE]}))
    return run


def test_report_escapes_every_value(tmp_path, capsys):
    run = _hostile_run(tmp_path)
    assert main(["report", str(run), "--out", str(tmp_path / "r.html")]) == 0
    page = (tmp_path / "r.html").read_text()
    assert "<script>alert" not in page and "<img src=x" not in page and "<script>x()" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert page.count("<script>") == 1  # the report's own status script only
    assert page.count("<img ") == 1 and 'src="data:image/' in page  # the one real figure, embedded
    assert '<meta name="generator" content="xinc' in page


@pytest.mark.parametrize("path", ["/etc/passwd", "../../x.png", "../hostile2/figures/a1/ok.png", "figures"])
def test_report_embeds_only_files_inside_the_run(tmp_path, path, capsys):
    run = _hostile_run(tmp_path)
    res = json.loads((run / "results.json").read_text())
    res["a1"]["figures"] = [{"path": path, "caption": "c"}]
    (run / "results.json").write_text(json.dumps(res))
    (tmp_path / "x.png").write_bytes((run / "figures" / "a1" / "ok.png").read_bytes())
    assert main(["report", str(run), "--out", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "refusing to embed" in err[0] and not (tmp_path / "r.html").exists()


def test_report_skips_symlinked_and_non_image_figures(tmp_path, capsys):
    run = _hostile_run(tmp_path)
    fig = run / "figures" / "a1"
    (fig / "fake.png").write_text("root:x:0:0")  # not a PNG by content
    (fig / "link.png").symlink_to("/etc/hostname")
    res = json.loads((run / "results.json").read_text())
    res["a1"]["figures"] = [{"path": "figures/a1/fake.png", "caption": "c"}]
    (run / "results.json").write_text(json.dumps(res))
    assert main(["report", str(run), "--out", str(tmp_path / "r.html")]) == 0
    page = (tmp_path / "r.html").read_text()
    assert "root:x" not in page and "cm9vdDp4" not in page and "not a PNG, JPEG or SVG" in page
    res["a1"]["figures"] = [{"path": "figures/a1/link.png", "caption": "c"}]
    (run / "results.json").write_text(json.dumps(res))
    assert main(["report", str(run), "--out", str(tmp_path / "r.html")]) == 2
