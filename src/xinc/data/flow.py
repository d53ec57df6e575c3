"""Optical flow between consecutive frames: OpenCV DIS (default) or Farneback, cached, plus .npy/.flo IO.

Flow is float32 (u, v) in pixels from frame i to frame i+1 (backward-warp convention: frame i at p
matches frame i+1 at p + flow(p)), stored as (T-1, 2, H, W) with the estimator and its parameters
(SPEC 3.4). Estimates are computed on 8-bit grayscale frames, as OpenCV's estimators require.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from xinc.errors import XincError
from xinc.utils import atomic_save

__all__ = [
    "FlowField",
    "compute_flow",
    "METHODS",
    "DIS_PRESETS",
    "read_flo",
    "write_flo",
    "load_flow",
    "save_flow",
    "flow_to_color",
    "endpoint_error",
    "flow_cache_key",
]

METHODS = ("dis", "farneback")
DIS_PRESETS = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST, "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
               "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}  # fmt: skip
FARNEBACK_DEFAULTS = {"pyr_scale": 0.5, "levels": 4, "winsize": 15, "iterations": 3, "poly_n": 5,
                      "poly_sigma": 1.2, "flags": 0}  # fmt: skip
FLO_MAGIC = 202021.25  # b'PIEH' as float32


@dataclass
class FlowField:
    """Forward flow of a clip: flow (T-1, 2, H, W) float32 frame i -> i+1, and how it was obtained."""

    flow: np.ndarray
    method: str
    params: dict = field(default_factory=dict)

    @property
    def magnitude(self) -> np.ndarray:
        """(T-1, H, W) end-point length |(u, v)|."""
        return np.sqrt((self.flow.astype(np.float64) ** 2).sum(1)).astype(np.float32)

    def as_tensor(self) -> torch.Tensor:
        """The flow as a torch tensor (shares memory)."""
        return torch.from_numpy(self.flow)

    def describe(self) -> dict:
        """Estimator name, parameters and shape (for config.json)."""
        return {"method": self.method, "params": self.params, "shape": list(self.flow.shape)}


# ----------------------------------------------------------------------------------------------- estimators


def _gray_u8(frames) -> np.ndarray:
    """(T, 3, H, W) float [0, 1] tensor/array, or (T, H, W, 3) uint8 -> (T, H, W) uint8 grayscale."""
    x = frames.detach().cpu().numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames)
    if x.ndim != 4:
        raise XincError(f"flow: frames must be (T, 3, H, W) or (T, H, W, 3), got shape {tuple(x.shape)}")
    if x.shape[1] == 3 and x.shape[-1] != 3:
        x = np.moveaxis(x, 1, -1)
    if x.dtype != np.uint8:
        x = np.clip(np.rint(x.astype(np.float32) * 255), 0, 255).astype(np.uint8)
    # ITU-R BT.601 luma, the same weights as cv2.COLOR_RGB2GRAY
    return np.stack([cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY) for f in x])


def resolve_params(method: str, preset: str = "medium", **overrides) -> dict:
    """Full parameter set of an estimator (defaults + overrides), as recorded with the flow."""
    if method == "dis":
        if preset not in DIS_PRESETS:
            raise XincError(f"--preset {preset!r}: unknown DIS preset; choose one of {', '.join(DIS_PRESETS)}")
        dis = cv2.DISOpticalFlow_create(DIS_PRESETS[preset])
        params = {"preset": preset, "finest_scale": dis.getFinestScale(), "patch_size": dis.getPatchSize(),
                  "patch_stride": dis.getPatchStride(),
                  "gradient_descent_iterations": dis.getGradientDescentIterations(),
                  "variational_refinement_iterations": dis.getVariationalRefinementIterations(),
                  "variational_refinement_alpha": dis.getVariationalRefinementAlpha(),
                  "variational_refinement_delta": dis.getVariationalRefinementDelta(),
                  "variational_refinement_gamma": dis.getVariationalRefinementGamma(),
                  "use_mean_normalization": dis.getUseMeanNormalization(),
                  "use_spatial_propagation": dis.getUseSpatialPropagation()}  # fmt: skip
    elif method == "farneback":
        params = dict(FARNEBACK_DEFAULTS)
    else:
        raise XincError(f"--method {method!r}: unknown flow estimator; choose one of {', '.join(METHODS)}")
    unknown = set(overrides) - set(params)
    if unknown:
        raise XincError(f"flow: unknown {method} parameter {sorted(unknown)[0]!r}; known: {', '.join(params)}")
    params.update(overrides)
    params["opencv"] = cv2.__version__
    params["input"] = "uint8 grayscale (BT.601)"
    return params


def _estimator(method: str, p: dict):
    if method == "dis":
        dis = cv2.DISOpticalFlow_create(DIS_PRESETS[p["preset"]])
        dis.setFinestScale(int(p["finest_scale"]))
        dis.setPatchSize(int(p["patch_size"]))
        dis.setPatchStride(int(p["patch_stride"]))
        dis.setGradientDescentIterations(int(p["gradient_descent_iterations"]))
        dis.setVariationalRefinementIterations(int(p["variational_refinement_iterations"]))
        dis.setVariationalRefinementAlpha(float(p["variational_refinement_alpha"]))
        dis.setVariationalRefinementDelta(float(p["variational_refinement_delta"]))
        dis.setVariationalRefinementGamma(float(p["variational_refinement_gamma"]))
        dis.setUseMeanNormalization(bool(p["use_mean_normalization"]))
        dis.setUseSpatialPropagation(bool(p["use_spatial_propagation"]))
        return lambda a, b: dis.calc(a, b, None)
    keys = ("pyr_scale", "levels", "winsize", "iterations", "poly_n", "poly_sigma", "flags")
    args = [p[k] for k in keys]
    return lambda a, b: cv2.calcOpticalFlowFarneback(a, b, None, *args)


def flow_cache_key(gray: np.ndarray, method: str, params: dict) -> str:
    """Hash of the estimator, its parameters and the exact input frames (the cache file name)."""
    h = hashlib.sha256()
    h.update(json.dumps({"method": method, "params": params}, sort_keys=True).encode())
    h.update(np.asarray(gray.shape, np.int64).tobytes())
    h.update(np.ascontiguousarray(gray).tobytes())
    return h.hexdigest()[:24]


def compute_flow(
    frames,
    method: str = "dis",
    *,
    preset: str = "medium",
    cache_dir: str | Path | None = None,
    **params,
) -> FlowField:
    """Forward flow between consecutive frames (T-1 pairs) with DIS (default, 'medium') or Farneback.

    frames: (T, 3, H, W) float in [0, 1] (tensor or array) or (T, H, W, 3) uint8. With `cache_dir`,
    results are stored as <cache_dir>/<method>-<hash>.npy (+ .json) keyed by estimator, parameters and
    frames, and reused.
    """
    gray = _gray_u8(frames)
    if gray.shape[0] < 2:
        raise XincError(f"flow: need at least 2 frames, got {gray.shape[0]}")
    p = resolve_params(method, preset, **params) if method == "dis" else resolve_params(method, **params)
    cache = None
    if cache_dir is not None:
        cache = Path(cache_dir) / f"{method}-{flow_cache_key(gray, method, p)}.npy"
        if cache.is_file():
            flow = np.load(cache, allow_pickle=False)
            if flow.shape == (gray.shape[0] - 1, 2, *gray.shape[1:]):
                return FlowField(flow.astype(np.float32, copy=False), method, p)
    est = _estimator(method, p)
    flow = np.empty((gray.shape[0] - 1, 2, *gray.shape[1:]), np.float32)
    for i in range(gray.shape[0] - 1):
        flow[i] = np.moveaxis(est(gray[i], gray[i + 1]), -1, 0)
    if cache is not None:
        atomic_save(cache, lambda tmp: np.save(tmp, flow))
        atomic_save(cache.with_suffix(".json"), lambda tmp: tmp.write_text(json.dumps({"method": method, "params": p})))
    return FlowField(flow, method, p)


# ----------------------------------------------------------------------------------------------- file IO


def write_flo(path: str | Path, flow: np.ndarray) -> None:
    """Write one (2, H, W) or (H, W, 2) flow as a Middlebury .flo file (atomically)."""
    f = np.asarray(flow, np.float32)
    if f.ndim == 3 and f.shape[0] == 2 and f.shape[-1] != 2:
        f = np.moveaxis(f, 0, -1)
    if f.ndim != 3 or f.shape[-1] != 2:
        raise XincError(f"{path}: flow must be (2, H, W) or (H, W, 2), got {tuple(np.shape(flow))}")
    H, W = f.shape[:2]
    blob = b"PIEH" + np.array([W, H], "<i4").tobytes() + np.ascontiguousarray(f, "<f4").tobytes()
    atomic_save(path, lambda tmp: Path(tmp).write_bytes(blob))


def read_flo(path: str | Path) -> np.ndarray:
    """Read a Middlebury .flo file as (2, H, W) float32."""
    path = Path(path)
    if not path.is_file():
        raise XincError(f"{path}: flow file not found")
    raw = path.read_bytes()
    if len(raw) < 12 or raw[:4] != b"PIEH":
        raise XincError(f"{path}: not a Middlebury .flo file (bad magic); give .flo or .npy flow")
    W, H = (int(v) for v in np.frombuffer(raw[4:12], "<i4"))
    if W <= 0 or H <= 0 or len(raw) != 12 + 8 * W * H:
        raise XincError(f"{path}: truncated or corrupt .flo (header says {W}x{H}, file has {len(raw)} bytes)")
    return np.moveaxis(np.frombuffer(raw[12:], "<f4").reshape(H, W, 2), -1, 0).astype(np.float32)


def load_flow(src: str | Path, shape: tuple[int, int] | None = None) -> FlowField:
    """User-supplied flow: a (T-1, 2, H, W) or (2, H, W) .npy, one .flo, or a folder of .flo/.npy pairs (sorted).

    shape=(H, W) checks the spatial size (flow must match the frames it describes; it is never resampled).
    """
    src = Path(src)
    if src.is_dir():
        files = sorted(p for p in src.iterdir() if p.suffix.lower() in (".flo", ".npy") and not p.name.startswith("."))
        if not files:
            raise XincError(f"{src}: folder holds no .flo or .npy flow files")
        if len(files) == 1 and files[0].suffix == ".npy":
            return load_flow(files[0], shape)
        flow = np.stack([_one(p) for p in files])
    elif src.suffix.lower() == ".flo":
        flow = read_flo(src)[None]
    elif src.suffix.lower() == ".npy":
        if not src.is_file():
            raise XincError(f"{src}: flow file not found")
        try:
            flow = np.load(src, allow_pickle=False)
        except ValueError as e:
            raise XincError(f"{src}: not a plain .npy array ({e})") from None
        if flow.ndim == 3:
            flow = flow[None]
    else:
        raise XincError(f"{src}: unknown flow format; give a .npy, a .flo or a folder of them")
    if flow.ndim != 4 or flow.shape[1] != 2:
        raise XincError(f"{src}: flow must be (T-1, 2, H, W) or (2, H, W), got {tuple(flow.shape)}")
    if shape is not None and tuple(flow.shape[-2:]) != tuple(shape):
        raise XincError(f"{src}: flow is {flow.shape[-2]}x{flow.shape[-1]} but the frames are {shape[0]}x{shape[1]}; "
                        "give flow at the analysis resolution")  # fmt: skip
    return FlowField(flow.astype(np.float32, copy=False), "file", {"source": str(src)})


def _one(p: Path) -> np.ndarray:
    if p.suffix.lower() == ".flo":
        return read_flo(p)
    f = np.load(p, allow_pickle=False)
    if f.ndim != 3 or f.shape[0] != 2:
        raise XincError(f"{p}: expected one (2, H, W) flow per file in a folder, got {tuple(f.shape)}")
    return f.astype(np.float32)


def save_flow(path: str | Path, field_: FlowField) -> None:
    """Write flow as .npy (float32 (T-1, 2, H, W)), atomically."""
    atomic_save(path, lambda tmp: np.save(tmp, np.asarray(field_.flow, np.float32)))


# ----------------------------------------------------------------------------------------------- display


def flow_to_color(flow: np.ndarray, max_mag: float | None = None) -> np.ndarray:
    """Colour-wheel picture (H, W, 3) uint8 of one (2, H, W) flow: hue = direction, saturation = magnitude.

    Uses the Middlebury/Baker et al. 55-colour wheel; magnitudes are normalised by `max_mag`
    (default: the field's maximum), so zero flow is white.
    """
    u, v = np.asarray(flow[0], np.float64), np.asarray(flow[1], np.float64)
    wheel = _color_wheel()
    mag = np.sqrt(u * u + v * v)
    scale = float(max_mag) if max_mag else float(mag.max())
    scale = scale if scale > 1e-9 else 1.0
    r = np.clip(mag / scale, 0, 1)
    ang = np.arctan2(-v, -u) / np.pi  # in [-1, 1]
    fk = (ang + 1) / 2 * (len(wheel) - 1)
    k0 = np.floor(fk).astype(np.int64)
    k1 = (k0 + 1) % len(wheel)
    f = (fk - k0)[..., None]
    col = (1 - f) * wheel[k0] + f * wheel[k1]
    col = 1 - r[..., None] * (1 - col)
    return np.clip(np.rint(col * 255), 0, 255).astype(np.uint8)


def _color_wheel() -> np.ndarray:
    """The 55-entry Middlebury colour wheel (RY 15, YG 6, GC 4, CB 11, BM 13, MR 6) in [0, 1]."""
    segs = [(15, (1, 0, 0), (1, 1, 0)), (6, (1, 1, 0), (0, 1, 0)), (4, (0, 1, 0), (0, 1, 1)),
            (11, (0, 1, 1), (0, 0, 1)), (13, (0, 0, 1), (1, 0, 1)), (6, (1, 0, 1), (1, 0, 0))]  # fmt: skip
    rows = []
    for n, a, b in segs:
        t = np.arange(n)[:, None] / n
        rows.append((1 - t) * np.asarray(a, float) + t * np.asarray(b, float))
    return np.concatenate(rows)


def endpoint_error(est: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean end-point error |est - gt| over all pixels (or where `mask`)."""
    e = np.sqrt(((np.asarray(est, np.float64) - np.asarray(gt, np.float64)) ** 2).sum(-3))
    return float(e[mask].mean() if mask is not None else e.mean())
