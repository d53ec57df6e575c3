"""Pixel groupings shared by the analyses (A5 selectivity, A6 clusters): every function returns an
(H, W) int64 label map with groups numbered 0..G-1 (compact), computed from an image or a size.

- `segment_labels(ids)`: panoptic segments (unlabelled id 0 kept as its own group).
- `rgb_kmeans_labels(image, k, seed)`: k-means of the pixel colours.
- `gabor_kmeans_labels(image, k, seed, bank="full"|"paper")`: k-means of Gabor responses.
  "full" = all 24 kernels (f in {0.05, 0.25, 0.5}, sigma in {1, 3}, theta in {0, pi/4, pi/2, 3pi/4})
  of skimage.filters.gabor_kernel, float magnitude responses of the grey image; "paper" = the
  original's 6 theta=0 kernels, real part, applied to the uint8 grey image with the result cast to
  uint8 by wrap-around (value mod 256), as the original's uint8 filtering did.
- `cell_labels(H, W, n, kind="contiguous"|"lattice")`: n x n spatial cells; "contiguous" = patches,
  "lattice" = the original's strided cells {(y, x): y mod n = i, x mod n = j} (each spans the image).
- `random_partition_labels(labels, seed)`: a random partition with exactly the same group sizes
  (the null model for comparing groupings with different numbers/sizes of groups).
All randomness is seeded; inputs are torch tensors or numpy arrays, outputs torch int64.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from xinc.errors import XincError

GABOR_FREQUENCIES = (0.05, 0.25, 0.5)
GABOR_SIGMAS = (1.0, 3.0)
GABOR_THETAS = (0.0, math.pi / 4, math.pi / 2, 3 * math.pi / 4)


def _np_image(image) -> np.ndarray:
    """(3, H, W) tensor/array in [0, 1] -> float64 (H, W, 3) numpy array."""
    arr = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if arr.ndim != 3 or arr.shape[0] != 3:
        raise XincError(f"grouping: expected a (3, H, W) image, got shape {tuple(arr.shape)}")
    return np.clip(arr.astype(np.float64), 0.0, 1.0).transpose(1, 2, 0)


def compact_labels(labels) -> tuple[torch.Tensor, np.ndarray]:
    """Renumber arbitrary integer labels to 0..G-1 (sorted by original value); also return the originals."""
    lab = torch.as_tensor(np.asarray(labels) if not isinstance(labels, torch.Tensor) else labels)
    values, inverse = torch.unique(lab.to(torch.int64), return_inverse=True)
    return inverse.reshape(lab.shape).to(torch.int64), values.numpy()


def segment_labels(ids) -> tuple[torch.Tensor, np.ndarray]:
    """Panoptic segment-id map (H, W) -> compact labels and the segment id of each group (0 = unlabelled)."""
    return compact_labels(ids)


def _kmeans(features: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Seeded k-means of (P, F) features (k clamped to the number of distinct rows)."""
    from sklearn.cluster import KMeans

    if k < 1:
        raise XincError(f"k-means: k = {k} must be at least 1")
    distinct = len(np.unique(features, axis=0)) if features.shape[0] <= 200_000 else k
    k_eff = max(1, min(int(k), distinct))
    km = KMeans(n_clusters=k_eff, n_init=3, random_state=int(seed) % (2**31))
    return km.fit_predict(features.astype(np.float64))


def rgb_kmeans_labels(image, k: int, seed: int = 0) -> torch.Tensor:
    """k-means of the RGB colours of a (3, H, W) image in [0, 1] -> (H, W) int64 labels."""
    img = _np_image(image)
    H, W, _ = img.shape
    lab = _kmeans(img.reshape(-1, 3), k, seed)
    return compact_labels(lab.reshape(H, W))[0]


def gabor_bank(bank: str = "full") -> list[tuple[dict[str, float], np.ndarray]]:
    """The Gabor kernels as (params, complex kernel) pairs: 24 for "full", the 6 theta=0 ones for "paper"
    (the original's bank; "faithful" is its old name)."""
    from skimage.filters import gabor_kernel

    if bank not in ("full", "paper", "faithful"):
        raise XincError(f"gabor bank {bank!r}: not a bank ; choose full or paper")
    thetas = GABOR_THETAS if bank == "full" else (0.0,)
    out = []
    for f in GABOR_FREQUENCIES:
        for s in GABOR_SIGMAS:
            for th in thetas:
                out.append(({"frequency": f, "sigma": s, "theta": th},
                            gabor_kernel(f, theta=th, sigma_x=s, sigma_y=s)))
    return out


def grey(image) -> np.ndarray:
    """Luminance (skimage.color.rgb2gray) of a (3, H, W) image in [0, 1] as float64 (H, W)."""
    from skimage.color import rgb2gray

    return rgb2gray(_np_image(image))


def gabor_features(image, bank: str = "full") -> np.ndarray:
    """Per-pixel Gabor responses (H, W, F) of the grey image.

    full: |response| of each complex kernel in float (reflect padding). paper: the real kernel on
    the uint8 grey image, then the float result truncated to an integer and wrapped mod 256 (uint8).
    """
    from scipy.ndimage import convolve

    g = grey(image)
    feats = []
    if bank == "full":
        for _, kern in gabor_bank("full"):
            re = convolve(g, np.real(kern), mode="reflect")
            im = convolve(g, np.imag(kern), mode="reflect")
            feats.append(np.hypot(re, im))
    else:
        g8 = np.round(g * 255.0).astype(np.float64)
        for _, kern in gabor_bank("paper"):
            resp = convolve(g8, np.real(kern), mode="reflect")
            feats.append(np.mod(np.trunc(resp).astype(np.int64), 256).astype(np.uint8).astype(np.float64))
    return np.stack(feats, axis=-1)


def gabor_kmeans_labels(image, k: int, seed: int = 0, bank: str = "full") -> torch.Tensor:
    """k-means of Gabor responses of a (3, H, W) image -> (H, W) int64 labels.

    Features are standardised per kernel (zero mean, unit variance) before clustering for "full";
    "paper" clusters the raw wrapped uint8 values as the original did.
    """
    feats = gabor_features(image, bank)
    H, W, F = feats.shape
    x = feats.reshape(-1, F)
    if bank == "full":
        sd = x.std(0)
        x = (x - x.mean(0)) / np.where(sd > 0, sd, 1.0)
    return compact_labels(_kmeans(x, k, seed).reshape(H, W))[0]


def cell_labels(height: int, width: int, n: int, kind: str = "contiguous") -> torch.Tensor:
    """n x n spatial cells of an H x W grid: contiguous patches, or the original's strided lattice."""
    if n < 1:
        raise XincError(f"cells: n = {n} must be at least 1")
    y = torch.arange(height)[:, None]
    x = torch.arange(width)[None, :]
    if kind == "contiguous":
        if n > height or n > width:
            raise XincError(f"cells: {n}x{n} contiguous cells do not fit a {height}x{width} image")
        lab = (y * n // height) * n + (x * n // width)
    elif kind == "lattice":
        lab = (y % n) * n + (x % n)
    else:
        raise XincError(f"cells kind {kind!r}: choose contiguous or lattice")
    return compact_labels(lab.expand(height, width))[0]


def random_partition_labels(labels, seed: int = 0) -> torch.Tensor:
    """A uniformly random partition of the pixels with the same group sizes as `labels` (seeded)."""
    lab = torch.as_tensor(labels).to(torch.int64)
    gen = torch.Generator().manual_seed(int(seed))
    perm = torch.randperm(lab.numel(), generator=gen)
    return lab.reshape(-1)[perm].reshape(lab.shape)


def num_groups(labels: torch.Tensor) -> int:
    """G of a compact label map."""
    return int(labels.max()) + 1 if labels.numel() else 0
