"""A synthetic panoptic street video with exact ground truth, written in a published dataset layout.

The scene: textured stuff regions (sky, buildings, vegetation, poles, sidewalk, road; textures from
scikit-image's bundled sample images and seeded noise), a static void region (the ego vehicle's
bonnet, like Cityscapes), and several textured things (cars and trucks as rounded rectangles with
wheels, people as ellipse + circle) that move rigidly on known trajectories (constant velocity plus a
sinusoid) and occlude each other in a fixed depth order. An optional camera pan moves the background.

Every pixel is rendered by sampling a continuous model at pixel centres (textures bilinearly, shapes by
exact inside tests), so the forward flow of the visible surface is known exactly: things move by their
trajectory difference, background stuff by -pan, void by 0. Everything is seeded from `seed`; the same
seed gives byte-identical files.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from xinc.data.categories import (
    CITYSCAPES_SUPERCATEGORY,
    CITYSCAPES_VOID,
    Category,
    category_by_name,
)
from xinc.data.datasets import get_dataset
from xinc.data.flow import write_flo
from xinc.errors import XincError
from xinc.outputs import owned_output
from xinc.utils import parse_hw, write_json
from xinc.validate import alloc, finite

__all__ = ["SynthConfig", "generate_synthetic", "load_gt_flow", "NATIVE_SIZE", "render_video", "SynthVideo"]

# The published file names and encodings, written here from the datasets' documentation (SPEC 3.1-3.2) and
# deliberately not imported from xinc.data.panoptic: the generator exists to test those readers.
CITYSCAPES_JSON = "panoptic_gt_val_city_vps.json"
VIPSEG_JSON = "panoptic_gt_VIPSeg.json"


def _encode_rgb(ids: np.ndarray) -> np.ndarray:
    """(H, W) panoptic ids -> (H, W, 3) uint8 RGB with id = R + 256 G + 256^2 B (COCO panoptic encoding)."""
    le = np.ascontiguousarray(ids, dtype="<u4")  # little-endian bytes: R, G, B, (0)
    if int(le.max(initial=0)) >= 1 << 24:
        raise XincError("panoptic ids must be below 2^24 to fit an RGB PNG")
    return le.view(np.uint8).reshape(*le.shape, 4)[..., :3].copy()


CITYSCAPES_VPS, VIPSEG = "cityscapes-vps", "vipseg"
FORMATS = (CITYSCAPES_VPS, VIPSEG)  # the registered datasets whose layout this generator can write
NATIVE_SIZE = {f: get_dataset(f).native_size for f in FORMATS}  # from the dataset registry

# scene roles -> category names in each dataset
_ROLES = {
    CITYSCAPES_VPS: {"sky": "sky", "building": "building", "vegetation": "vegetation", "pole": "pole",
                     "sidewalk": "sidewalk", "road": "road", "terrain": "terrain",
                     "car": "car", "truck": "truck", "person": "person"},
    VIPSEG: {"sky": "sky", "building": "building", "vegetation": "tree", "pole": "pole", "sidewalk": "path",
             "road": "road", "terrain": "grass", "car": "car", "truck": "truck", "person": "person"},
}  # fmt: skip
_STUFF = ("sky", "building", "vegetation", "pole", "sidewalk", "road", "terrain")
_VOID = -1  # owner index of the ego-vehicle void region


@dataclass
class SynthConfig:
    """Resolved generator settings (written to <out>/config.json)."""

    format: str = CITYSCAPES_VPS
    seed: int = 0
    frames: int = 30
    size: tuple[int, int] | None = None  # (H, W); None = the dataset's native resolution
    videos: int = 1
    pan: float = 0.0  # camera pan in pixels per frame at the generated resolution (+ = camera moves right)
    things: int | None = None  # number of moving things; None = 6
    flo: bool = True  # also write Middlebury .flo files beside flow.npy
    void: bool = True  # draw the ego-vehicle bonnet as a void region


@dataclass
class SynthVideo:
    """One rendered video: frames (T, H, W, 3) uint8, ids (T, H, W) int64, flow (T-1, 2, H, W), tables."""

    frames: np.ndarray
    ids: np.ndarray
    owner: np.ndarray  # (T, H, W) int16: -1 void, 0..S-1 stuff role index, S.. things
    flow: np.ndarray
    segments: dict[int, dict]  # id -> {"category_id", "role", "isthing", "instance"}
    things: list[dict]


# ----------------------------------------------------------------------------------------------- textures


@functools.lru_cache(maxsize=1)
def _sample_textures() -> dict[str, np.ndarray]:
    """Gray and colour texture sources bundled with scikit-image (no download), as float32 in [0, 1]."""
    from skimage import data

    return {
        "brick": data.brick().astype(np.float32) / 255,
        "grass": data.grass().astype(np.float32) / 255,
        "gravel": data.gravel().astype(np.float32) / 255,
        "astronaut": data.astronaut().astype(np.float32) / 255,
        "coffee": data.coffee().astype(np.float32) / 255,
        "chelsea": data.chelsea().astype(np.float32) / 255,
    }


def _tile(src: np.ndarray, shape: tuple[int, int], scale: float, rng: np.random.Generator) -> np.ndarray:
    """Mirror-tile a texture to `shape` after scaling it by `scale`, from a seeded offset."""
    if scale != 1.0:
        h = max(8, int(round(src.shape[0] * scale)))
        w = max(8, int(round(src.shape[1] * scale)))
        src = cv2.resize(src, (w, h), interpolation=cv2.INTER_AREA)
    tile = np.concatenate([src, src[::-1]], axis=0)
    tile = np.concatenate([tile, tile[:, ::-1]], axis=1)
    oy, ox = int(rng.integers(tile.shape[0])), int(rng.integers(tile.shape[1]))
    ny = -(-(shape[0] + oy) // tile.shape[0])
    nx = -(-(shape[1] + ox) // tile.shape[1])
    reps = (ny, nx) + (1,) * (tile.ndim - 2)
    return np.tile(tile, reps)[oy : oy + shape[0], ox : ox + shape[1]]


def _noise(shape: tuple[int, int], sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Smooth seeded noise in [0, 1] (Gaussian-filtered white noise)."""
    n = rng.standard_normal(shape).astype(np.float32)
    k = max(1, int(sigma * 3) * 2 + 1)
    n = cv2.GaussianBlur(n, (k, k), sigma)
    return (n - n.min()) / max(float(n.max() - n.min()), 1e-6)


def _tint(gray: np.ndarray, color: tuple[float, float, float], contrast: float = 0.6) -> np.ndarray:
    """Colour a gray texture: colour * (1 - contrast/2 + contrast * gray)."""
    g = 1 - contrast / 2 + contrast * gray[..., None]
    return np.clip(g * np.asarray(color, np.float32)[None, None], 0, 1)


# ----------------------------------------------------------------------------------------------- scene


def _world(H: int, Ww: int, rng: np.random.Generator, tex: dict) -> tuple[np.ndarray, np.ndarray]:
    """Stuff label map (H, Ww) of role indices and its RGB texture (H, Ww, 3) in world coordinates."""
    s = H / 1024
    ys = np.arange(H, dtype=np.float32)[:, None]
    xs = np.arange(Ww, dtype=np.float32)[None, :]
    horizon = H * 0.50 + H * 0.01 * np.sin(xs / (H * 0.7) + rng.uniform(0, 6.28))
    road_top = H * 0.60 + 0 * xs
    # skyline: blocks of buildings and gaps of trees along x
    skyline = np.empty(Ww, np.float32)
    is_tree = np.zeros(Ww, bool)
    x = 0
    while x < Ww:
        w = int(rng.uniform(0.08, 0.30) * H * 2)
        tree = rng.random() < 0.3
        skyline[x : x + w] = H * (rng.uniform(0.28, 0.40) if tree else rng.uniform(0.08, 0.32))
        is_tree[x : x + w] = tree
        x += w
    tree_top = skyline[None] + H * 0.03 * _noise((1, Ww), 8 * s + 1, rng)
    lab = np.full((H, Ww), _STUFF.index("sky"), np.int16)
    upper = ys >= np.where(is_tree[None], tree_top, skyline[None])
    lab[upper & ~is_tree[None]] = _STUFF.index("building")
    lab[upper & is_tree[None]] = _STUFF.index("vegetation")
    lab[ys >= horizon] = _STUFF.index("sidewalk")
    terrain = (ys >= horizon) & (ys < horizon + H * 0.025)
    lab[terrain] = _STUFF.index("terrain")
    lab[ys >= road_top] = _STUFF.index("road")
    # poles standing on the sidewalk
    for _ in range(max(1, Ww // max(1, int(H * 0.9)))):
        px = rng.uniform(0, Ww)
        pw = max(2.0, H * 0.008)
        pole = (np.abs(xs + 0.5 - px) < pw / 2) & (ys >= H * 0.18) & (ys < road_top)
        lab[pole] = _STUFF.index("pole")

    shape = (H, Ww)
    sky = np.empty((H, Ww, 3), np.float32)
    grad = (ys / H)[..., None]
    sky[:] = (1 - grad) * np.array([0.35, 0.55, 0.85], np.float32) + grad * np.array([0.75, 0.85, 0.95], np.float32)
    clouds = _noise(shape, 30 * s + 1, rng)[..., None]
    sky = np.clip(sky + 0.35 * np.clip(clouds - 0.55, 0, 1), 0, 1)
    layers = {
        "sky": sky,
        "building": _tint(_tile(tex["brick"], shape, 0.6 * s * 2, rng), (0.72, 0.52, 0.42), 0.9),
        "vegetation": _tint(_tile(tex["grass"], shape, 0.5 * s * 2, rng), (0.30, 0.55, 0.20), 1.0),
        "pole": _tint(_noise(shape, 2, rng), (0.55, 0.55, 0.58), 0.3),
        "sidewalk": _tint(_tile(tex["brick"], shape, 0.25 * s * 2, rng), (0.78, 0.74, 0.70), 0.5),
        "road": _tint(_tile(tex["gravel"], shape, 0.4 * s * 2, rng), (0.42, 0.42, 0.45), 0.8),
        "terrain": _tint(_tile(tex["grass"], shape, 0.3 * s * 2, rng), (0.55, 0.65, 0.30), 0.8),
    }
    img = np.zeros((H, Ww, 3), np.float32)
    for k, role in enumerate(_STUFF):
        m = lab == k
        img[m] = layers[role][m]
    return lab, img


def _things(H: int, W: int, n: int, T: int, rng: np.random.Generator, tex: dict) -> list[dict]:
    """Random things with sizes, textures and trajectories (world coordinates of the top-left corner)."""
    out = []
    kinds = ["car", "person", "car", "truck", "person", "car", "person", "car"]
    for k in range(n):
        kind = kinds[k % len(kinds)]
        depth = rng.uniform(0.0, 1.0)  # 0 = far, 1 = near (drawn last)
        scale = 0.6 + 0.6 * depth
        if kind == "person":
            h, w = H * 0.20 * scale, H * 0.07 * scale
            base = H * (0.56 + 0.10 * depth)
        else:
            h, w = (H * 0.14, H * 0.34) if kind == "car" else (H * 0.22, H * 0.50)
            h, w = h * scale, w * scale
            base = H * (0.66 + 0.26 * depth)
        speed = rng.uniform(0.002, 0.012) * W * (0.3 if kind == "person" else 1.0)
        vx = speed * (1 if rng.random() < 0.5 else -1)
        x0 = rng.uniform(0.05 * W, 0.95 * W - w) - vx * T / 2
        amp = rng.uniform(0.0, 0.015) * H
        omega = rng.uniform(0.15, 0.5)
        phase = rng.uniform(0, 2 * math.pi)
        th, tw = int(math.ceil(h)) + 3, int(math.ceil(w)) + 3
        src = tex[["astronaut", "coffee", "chelsea"][int(rng.integers(3))]]
        oy = int(rng.integers(0, max(1, src.shape[0] - 64)))
        ox = int(rng.integers(0, max(1, src.shape[1] - 64)))
        crop = src[oy : oy + max(64, src.shape[0] // 3), ox : ox + max(64, src.shape[1] // 3)]
        patch = cv2.resize(np.ascontiguousarray(crop), (tw, th), interpolation=cv2.INTER_AREA)
        color = rng.uniform(0.15, 0.95, size=3).astype(np.float32)
        texture = np.clip(0.55 * patch + 0.45 * color[None, None], 0, 1).astype(np.float32)
        out.append(dict(kind=kind, depth=float(depth), h=float(h), w=float(w), x0=float(x0), y0=float(base - h),
                        vx=float(vx), amp=float(amp), omega=float(omega), phase=float(phase),
                        texture=texture))  # fmt: skip
    out.sort(key=lambda t: t["depth"])
    return out


def _pos(th: dict, t: float) -> tuple[float, float]:
    """World (x, y) of a thing's top-left corner at frame t (constant velocity + vertical sinusoid)."""
    return th["x0"] + th["vx"] * t, th["y0"] + th["amp"] * math.sin(th["omega"] * t + th["phase"])


def _shape(kind: str, u: np.ndarray, v: np.ndarray, h: float, w: float) -> tuple[np.ndarray, np.ndarray]:
    """Exact inside test of a thing's shape in local coordinates (u right, v down, origin top-left) and a
    shading factor (darker wheels and windows give things inner edges; still one rigid segment)."""
    shade = np.ones(u.shape, np.float32)
    if kind == "person":
        head_r = 0.13 * h
        head = (u - w / 2) ** 2 + (v - head_r) ** 2 <= head_r**2
        by, bh = 2 * head_r, h - 2 * head_r
        body = ((u - w / 2) / (w / 2)) ** 2 + ((v - by - bh / 2) / (bh / 2)) ** 2 <= 1
        shade[head] = 1.25
        return head | body, shade
    r = 0.22 * h
    body_h = 0.82 * h
    cu = np.clip(u, r, w - r)
    cv = np.clip(v, r, body_h - r)
    body = ((u - cu) ** 2 + (v - cv) ** 2 <= r**2) & (u >= 0) & (u <= w) & (v >= 0) & (v <= body_h)
    wr = 0.18 * h
    wheels = ((u - 0.22 * w) ** 2 + (v - (h - wr)) ** 2 <= wr**2) | ((u - 0.78 * w) ** 2 + (v - (h - wr)) ** 2 <= wr**2)
    window = (u > 0.25 * w) & (u < 0.75 * w) & (v > 0.08 * h) & (v < 0.36 * h)
    shade[window] = 0.55
    shade[wheels] = 0.2
    return body | wheels, shade


def _bilinear(tex: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Sample an (h, w, 3) texture at float coordinates (clamped), vectorised."""
    h, w = tex.shape[:2]
    u = np.clip(u, 0, w - 1.001)
    v = np.clip(v, 0, h - 1.001)
    u0, v0 = np.floor(u).astype(np.int64), np.floor(v).astype(np.int64)
    fu, fv = (u - u0)[..., None], (v - v0)[..., None]
    a, b = tex[v0, u0], tex[v0, u0 + 1]
    c, d = tex[v0 + 1, u0], tex[v0 + 1, u0 + 1]
    return (a * (1 - fu) + b * fu) * (1 - fv) + (c * (1 - fu) + d * fu) * fv


def _void_mask(H: int, W: int) -> np.ndarray:
    """The ego vehicle's bonnet: a flat ellipse cap at the bottom centre of the frame (screen-fixed)."""
    ys = np.arange(H, dtype=np.float32)[:, None] + 0.5
    xs = np.arange(W, dtype=np.float32)[None, :] + 0.5
    return ((xs - W / 2) / (0.42 * W)) ** 2 + ((ys - H * 1.02) / (0.10 * H)) ** 2 <= 1


def render_video(cfg: SynthConfig, index: int, size: tuple[int, int]) -> tuple[SynthVideo, list[Category]]:
    """Render video `index` of a config: frames, owner/ids maps, exact forward flow and its segment table."""
    H, W = size
    T = cfg.frames
    rng = np.random.default_rng([cfg.seed, index])
    table = get_dataset(cfg.format).categories
    roles = _ROLES[cfg.format]
    tex = _sample_textures()
    span = abs(cfg.pan) * (T - 1)
    Ww = W + int(math.ceil(span)) + 2
    cam0 = 0.0 if cfg.pan >= 0 else span  # world x of the frame's left edge at t=0
    stuff_lab, stuff_img = _world(H, Ww, rng, tex)
    n_things = 6 if cfg.things is None else cfg.things
    things = _things(H, W, n_things, T, rng, tex)
    for th in things:
        th["x0"] += cam0
    void = _void_mask(H, W) if cfg.void else np.zeros((H, W), bool)
    void_img = _tint(_noise((H, W), 3, rng), (0.12, 0.12, 0.14), 0.5)

    # segment ids: stuff ids from the category colour, things from a seeded perturbation (unique)
    used: set[int] = {0}
    segs: dict[int, dict] = {}
    stuff_ids = []
    for role in _STUFF:
        cat = category_by_name(table, roles[role])
        sid = _unique_id(cat.color, used, rng, jitter=False)
        stuff_ids.append(sid)
        segs[sid] = {"category_id": cat.id, "role": role, "isthing": False, "instance": None}
    inst_count: dict[int, int] = {}
    thing_ids = []
    for th in things:
        cat = category_by_name(table, roles[th["kind"]])
        sid = _unique_id(cat.color, used, rng, jitter=True)
        inst = inst_count.get(cat.id, 0)
        inst_count[cat.id] = inst + 1
        thing_ids.append(sid)
        th["id"], th["category_id"], th["instance"] = sid, cat.id, inst
        segs[sid] = {"category_id": cat.id, "role": th["kind"], "isthing": True, "instance": inst}
    id_table = np.array(stuff_ids + thing_ids + [0], np.int64)  # owner -1 -> last entry (void = 0)

    S = len(_STUFF)
    xs = np.arange(W, dtype=np.float64)
    ys = np.arange(H, dtype=np.float64)
    frames = np.empty((T, H, W, 3), np.uint8)
    owner = np.empty((T, H, W), np.int16)
    for t in range(T):
        cam = cam0 + cfg.pan * t
        wx = xs + cam
        x0 = np.floor(wx).astype(np.int64)
        fx = (wx - x0)[None, :, None].astype(np.float32)
        img = stuff_img[:, x0] * (1 - fx) + stuff_img[:, np.minimum(x0 + 1, Ww - 1)] * fx
        own = stuff_lab[:, np.minimum(np.floor(wx + 0.5).astype(np.int64), Ww - 1)].astype(np.int16)
        for k, th in enumerate(things):
            px, py = _pos(th, t)
            sx = px - cam
            c0, c1 = max(0, int(math.floor(sx)) - 1), min(W, int(math.ceil(sx + th["w"])) + 2)
            r0, r1 = max(0, int(math.floor(py)) - 1), min(H, int(math.ceil(py + th["h"])) + 2)
            if c0 >= c1 or r0 >= r1:
                continue
            u = xs[None, c0:c1] - sx + np.zeros((r1 - r0, 1))
            v = ys[r0:r1, None] - py + np.zeros((1, c1 - c0))
            m, shade = _shape(th["kind"], u, v, th["h"], th["w"])
            if not m.any():
                continue
            patch = np.clip(_bilinear(th["texture"], u[m] + 1, v[m] + 1) * shade[m][:, None], 0, 1)
            sub_img = img[r0:r1, c0:c1]
            sub_img[m] = patch
            own[r0:r1, c0:c1][m] = S + k
        img[void] = void_img[void]
        own[void] = _VOID
        frames[t] = np.clip(np.rint(img * 255), 0, 255).astype(np.uint8)
        owner[t] = own

    # exact forward flow of the visible surface: per-owner displacement table, looked up per pixel
    flow = np.zeros((max(T - 1, 0), 2, H, W), np.float32)
    for t in range(T - 1):
        du = np.zeros(S + len(things) + 1, np.float64)
        dv = np.zeros_like(du)
        du[:S] = -cfg.pan
        for k, th in enumerate(things):
            (a, b), (c, d) = _pos(th, t), _pos(th, t + 1)
            du[S + k] = (c - cfg.pan * (t + 1)) - (a - cfg.pan * t)
            dv[S + k] = d - b
        idx = np.where(owner[t] == _VOID, len(du) - 1, owner[t])
        flow[t, 0] = du[idx]
        flow[t, 1] = dv[idx]
    ids = id_table[np.where(owner == _VOID, len(id_table) - 1, owner)]
    public = [{k: v for k, v in th.items() if k != "texture"} for th in things]
    return SynthVideo(frames, ids, owner, flow, segs, public), list(table.values())


def _unique_id(color, used: set[int], rng: np.random.Generator, jitter: bool) -> int:
    """Panoptic id from a category colour (R + 256 G + 256^2 B), perturbed until unused (like panopticapi)."""
    base = np.array(color if color is not None else (128, 128, 128), np.int64)
    c = base
    for _ in range(10000):
        if jitter:
            c = np.clip(base + rng.integers(-40, 41, size=3), 0, 255)
        sid = int(c[0] + 256 * c[1] + 65536 * c[2])
        if sid not in used:
            used.add(sid)
            return sid
        jitter = True
    raise RuntimeError("could not find a free panoptic id")  # pragma: no cover


# ----------------------------------------------------------------------------------------------- writers


def _png(path: Path, arr: np.ndarray) -> None:
    """Write a PNG deterministically (RGB uint8 or 16-bit gray)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if arr.ndim == 3:
        arr = arr[..., ::-1]
    if not cv2.imwrite(str(path), np.ascontiguousarray(arr), [cv2.IMWRITE_PNG_COMPRESSION, 1]):
        raise XincError(f"{path}: could not write the PNG")


def _bbox(mask: np.ndarray) -> list[int]:
    rows, cols = np.nonzero(mask.any(1))[0], np.nonzero(mask.any(0))[0]
    return [int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)]


def _segments_info(ids: np.ndarray, segs: dict[int, dict]) -> list[dict]:
    uniq, counts = np.unique(ids, return_counts=True)
    out = []
    for sid, n in zip(uniq.tolist(), counts.tolist()):
        if sid == 0:
            continue
        out.append({"id": int(sid), "category_id": segs[sid]["category_id"], "iscrowd": 0, "area": int(n),
                    "bbox": _bbox(ids == sid)})  # fmt: skip
    return out


def _categories_json(table: list[Category], fmt: str) -> list[dict]:
    out = []
    for c in table:
        d = {"id": c.id, "name": c.name, "isthing": int(c.isthing), "color": list(c.color or (0, 0, 0))}
        if fmt == CITYSCAPES_VPS:
            d["supercategory"] = CITYSCAPES_SUPERCATEGORY[c.id]
        out.append(d)
    return out


def _write_flow(root: Path, video: str, flow: np.ndarray, write_flo_files: bool) -> None:
    d = root / "flow_gt" / video
    d.mkdir(parents=True, exist_ok=True)
    np.save(d / "flow.npy", flow)
    if write_flo_files:
        for j in range(flow.shape[0]):
            write_flo(d / f"{j:04d}.flo", flow[j])


def _video_name(cfg: SynthConfig, i: int) -> str:
    """Video id of the i-th video: Cityscapes-VPS '0001', ...; VIPSeg '<i+1>_synth<seed>' (a folder name)."""
    return f"{i + 1:04d}" if cfg.format == CITYSCAPES_VPS else f"{i + 1}_synth{cfg.seed}"


def _write_cityscapes_video(root: Path, cfg: SynthConfig, i: int, vid: SynthVideo, js: dict) -> None:
    """Write one clip's frames, panoptic_video/panoptic_inst PNGs and flow; append its JSON records to `js`."""
    vname = _video_name(cfg, i)
    city, seq = "frankfurt", f"{i:06d}"
    f0 = 275 + 300 * i
    T = vid.frames.shape[0]
    for j in range(T):
        _png(root / "val" / "img_all" / f"{city}_{seq}_{f0 + j:06d}_leftImg8bit.png", vid.frames[j])
    for k, j in enumerate(range(4, T, 5)):
        image_id = f"{vname}_{i * 6 + k + 1:04d}_{city}_{seq}_{f0 + j:06d}"
        name = f"{image_id}_gtFine_color.png"
        ids = vid.ids[j]
        _png(root / "val" / "panoptic_video" / name, _encode_rgb(ids))
        inst = np.full(ids.shape, CITYSCAPES_VOID, np.uint16)
        for sid, seg in vid.segments.items():
            inst[ids == sid] = seg["category_id"] * 1000 + seg["instance"] if seg["isthing"] else seg["category_id"]
        _png(root / "val" / "panoptic_inst" / name, inst)
        H, W = ids.shape
        js["images"].append({"id": image_id, "width": W, "height": H, "file_name": f"{image_id}_leftImg8bit.png"})
        js["annotations"].append(
            {"image_id": image_id, "file_name": name, "segments_info": _segments_info(ids, vid.segments)}
        )
    _write_flow(root, vname, vid.flow, cfg.flo)


def _write_vipseg_video(root: Path, cfg: SynthConfig, i: int, vid: SynthVideo, js: dict) -> None:
    """Write one video's JPEGs, panomasks/panomasksRGB PNGs and flow; append its JSON records to `js`."""
    vname = _video_name(cfg, i)
    imgs, frame_anns = [], []
    for j in range(vid.frames.shape[0]):
        stem = f"{1 + 5 * j:08d}"  # VIPSeg frame names are sparse 8-digit numbers
        path = root / "images" / vname / f"{stem}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(str(path), vid.frames[j][..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95]):
            raise XincError(f"{path}: could not write the JPEG")
        ids = vid.ids[j]
        _png(root / "panomasksRGB" / vname / f"{stem}.png", _encode_rgb(ids))
        pm = np.zeros(ids.shape, np.uint16)
        for sid, seg in vid.segments.items():
            c = seg["category_id"]
            pm[ids == sid] = (c + 1) * 100 + seg["instance"] if seg["isthing"] else c + 1
        _png(root / "panomasks" / vname / f"{stem}.png", pm)
        H, W = ids.shape
        imgs.append({"id": stem, "width": W, "height": H, "file_name": f"{stem}.jpg"})
        segs = _segments_info(ids, vid.segments)
        frame_anns.append({"image_id": stem, "file_name": f"{stem}.png", "segments_info": segs})
    js["videos"].append({"video_id": vname, "images": imgs})
    js["annotations"].append({"video_id": vname, "annotations": frame_anns})
    _write_flow(root, vname, vid.flow, cfg.flo)


def check_config(cfg: SynthConfig) -> tuple[int, int]:
    """The generated size (H, W) of `cfg`; one-line XincError for an impossible setting (before any work)."""
    if cfg.format not in FORMATS:
        raise XincError(f"--format {cfg.format!r}: unknown; choose one of {', '.join(FORMATS)}")
    if cfg.frames < 2:
        raise XincError(f"--frames {cfg.frames}: need at least 2 frames")
    if cfg.format == CITYSCAPES_VPS and not 5 <= cfg.frames <= 30:
        raise XincError(f"--frames {cfg.frames}: Cityscapes-VPS clips have 5..30 frames (frames 5, 10, ... annotated)")
    if cfg.videos < 1:
        raise XincError(f"--videos {cfg.videos}: need at least 1")
    if cfg.things is not None and not 0 <= cfg.things <= 40:
        raise XincError(f"--things {cfg.things}: choose 0..40")
    finite(cfg.pan, "--pan")
    size = tuple(cfg.size) if cfg.size is not None else NATIVE_SIZE[cfg.format]
    if size[0] < 32 or size[1] < 32:
        raise XincError(f"--size {size[0]}x{size[1]}: too small; use at least 32x32")
    # one video is rendered in memory: RGB float, ids, masks and flow, about 48 bytes per pixel and frame
    alloc(48.0 * size[0] * size[1] * cfg.frames, f"--size {size[0]}x{size[1]} with --frames {cfg.frames}",
          "choose a smaller --size or fewer --frames")
    return int(size[0]), int(size[1])


def generate_synthetic(
    out: str | Path,
    format: str = CITYSCAPES_VPS,
    seed: int = 0,
    frames: int = 30,
    size: tuple[int, int] | str | None = None,
    videos: int = 1,
    pan: float = 0.0,
    things: int | None = None,
    flo: bool = True,
    void: bool = True,
    *,
    overwrite: bool = False,
) -> dict:
    """Write a synthetic dataset in the published layout of `format` to `out` (atomically); return its config.

    Layout extras beside the dataset files: <out>/config.json (generator settings and every thing's
    trajectory) and <out>/flow_gt/<video>/flow.npy ((T-1, 2, H, W) float32 exact forward flow, frame j
    -> j+1, in pixels at the generated size) plus <j:04d>.flo per pair when `flo`.
    """
    if isinstance(size, str):
        size = parse_hw(size, "--size")
    cfg = SynthConfig(format, int(seed), int(frames), tuple(size) if size else None, int(videos), float(pan),
                      things, bool(flo), bool(void))  # fmt: skip
    hw = check_config(cfg)
    with owned_output(out, overwrite=overwrite, kind="synth") as stage:
        cityscapes = cfg.format == CITYSCAPES_VPS
        js: dict = {"images": [], "annotations": []} if cityscapes else {"videos": [], "annotations": []}
        details, table = {}, []
        for i in range(cfg.videos):  # one video in memory at a time (native size: ~1.3 GB per clip)
            vid, table = render_video(cfg, i, hw)
            (_write_cityscapes_video if cityscapes else _write_vipseg_video)(stage, cfg, i, vid, js)
            details[_video_name(cfg, i)] = {"things": vid.things}
            del vid
        js["categories"] = _categories_json(table, cfg.format)
        write_json(stage / (CITYSCAPES_JSON if cityscapes else VIPSEG_JSON), js)
        resolved = asdict(cfg) | {
            "size": list(hw),
            "video_ids": list(details),
            "generator": "xinc.data.synth",
            "flow_gt": "flow_gt/<video>/flow.npy (T-1, 2, H, W) float32, frame j -> j+1",
            "videos_detail": details,
        }
        write_json(stage / "config.json", resolved)
    return resolved


def load_gt_flow(
    root: str | Path,
    video: str,
    size: tuple[int, int] | None = None,
    crop: tuple[int, int] | None | bool | str = None,
) -> np.ndarray:
    """The generator's exact forward flow of a video, (T-1, 2, H, W) float32.

    size=None: at the generated size (exact). With `size`, the flow is cropped like the frames
    (crop=None: the readers' paper crop), resampled on the masks' nearest grid and scaled by the
    resize factors: the flow of the resampled video up to resampling (an approximation, named so).
    """
    from xinc.data.frames import center_crop
    from xinc.data.panoptic import _resolve_crop

    path = Path(root) / "flow_gt" / str(video) / "flow.npy"
    if not path.is_file():
        raise XincError(f"{path}: ground-truth flow not found; was {root} written by `xinc synth`?")
    flow = np.load(path, allow_pickle=False)
    if size is None:
        return flow
    import torch

    crop_hw = _resolve_crop(crop, tuple(flow.shape[-2:]), size)
    t = center_crop(torch.from_numpy(flow), crop_hw)
    h0, w0 = t.shape[-2:]
    # nearest-exact on the pixel-centre grid of xinc.data.frames.resize_masks (no rounding: flow is float)
    out = torch.nn.functional.interpolate(t.contiguous(), size=tuple(size), mode="nearest-exact").numpy()
    out[:, 0] *= size[1] / w0
    out[:, 1] *= size[0] / h0
    return out.astype(np.float32)
