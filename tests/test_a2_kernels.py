"""A2's compiled kernels against the PyTorch reference path and against explicit per-pixel sorts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xinc.analysis.distributed import _LogBins, distributed_from_canvases
from xinc.canvas import kernels

pytest.importorskip("numba", reason="numba is not installed: the compiled A2 path is off")


def _both(maps: torch.Tensor, monkeypatch, **kw):
    """(compiled, reference) results of the same canvases."""
    monkeypatch.setattr(kernels, "ENABLED", True)
    fast = distributed_from_canvases(maps, **kw)
    monkeypatch.setattr(kernels, "ENABLED", False)
    ref = distributed_from_canvases(maps, **kw)
    monkeypatch.setattr(kernels, "ENABLED", True)
    return fast, ref


def _same(a, b, path: str = "") -> None:
    """Equal results: arrays and ints exactly, floats (float64 sums in another order) to 1e-12."""
    if isinstance(a, dict):
        assert set(a) == set(b), path
        for k in a:
            _same(a[k], b[k], f"{path}/{k}")
    elif isinstance(a, np.ndarray):
        assert a.shape == b.shape and np.array_equal(a, b, equal_nan=True), path
    elif isinstance(a, float):
        assert a == pytest.approx(b, rel=1e-12, nan_ok=True), path
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f"{path}[{i}]")
    else:
        assert a == b, path


def _canvas(seed: int, T: int = 3, K: int = 45, H: int = 5, W: int = 7) -> torch.Tensor:
    """Heavy-tailed signed maps with exact zeros, a dead neuron, a map dead in one frame, ties, a zero pixel."""
    g = torch.Generator().manual_seed(seed)
    maps = torch.randn(T, K, H, W, generator=g) ** 3
    maps[maps.abs() < 0.05] = 0
    maps[:, 4] = 0
    maps[-1, 9] = 0
    maps[:, 10:14, 1, 2] = -0.75  # ties inside one pixel
    maps[:, 20, :2] = 0.75  # ... and with values at other pixels
    maps[:, :, 4, 6] = 0  # a pixel with H = 0
    return maps


def _needed_brute(A: np.ndarray, q: float) -> np.ndarray:
    """(T, K, H, W) |values| -> (T, H, W) fewest neurons whose largest values hold q of H(p), by explicit sorts."""
    s = -np.sort(-A, axis=1)
    cum = np.cumsum(s, axis=1)
    need = ((cum < q * cum[:, -1:] * (1 - 1e-12)).sum(1) + 1).astype(np.float64)
    return np.where(cum[:, -1] > 0, need, np.nan)


@pytest.mark.parametrize(("topk", "K"), [(4, 45), (12, 45), (None, 45), (70, 150)])
def test_compiled_path_equals_reference_and_brute_force(monkeypatch, topk, K):
    """Zeros, ties, dead maps, censored pixels (small k), deep sorted prefixes (k = 70), chunks 1 / 3 / all."""
    maps = _canvas(topk or 0, T=3 if K < 100 else 2, K=K)
    A = maps.abs().numpy().astype(np.float64)
    T, K = A.shape[:2]
    runs = {c: _both(maps, monkeypatch, chunk=c, topk=topk, bins=256, sub_bins=128, neurons_needed=True)
            for c in (1, 3, None)}
    fast = runs[None][0]
    for c, (f, r) in runs.items():
        _same(f, r, f"chunk={c}")
        _same(f, fast, f"chunk={c} vs all")
    # coverage: share A/H > 1/K; dead maps; n(p) and the mass above the reported τ
    H = A.sum(1, keepdims=True)
    cover = ((A > (H / K).astype(np.float32)) & (H > 0)).sum((2, 3))
    assert np.array_equal(fast["pixels_per_neuron"]["counts_per_frame"], cover)
    assert fast["all_zero_maps"] == int((A.reshape(T, K, -1).max(2) == 0).sum())
    for a in (0.1, 0.5):
        tau = fast["thresholds"][str(a)]["tau"]
        over = A > np.float32(tau)
        assert np.array_equal(np.stack([fast["maps"]["n"][a][f] for f in range(T)]), over.sum(1) / K)
        assert fast["thresholds"][str(a)]["mass_above"] == pytest.approx(A[over].sum() / A.sum(), rel=1e-12)
    for q in (0.5, 0.9):  # exact where the top-k suffices, a valid bracket elsewhere
        truth = _needed_brute(A, q)
        lo = np.stack([fast["maps"]["needed"][q][f] for f in range(T)])
        hi = np.stack([fast["maps"]["needed_upper"][q][f] for f in range(T)])
        dead = np.isnan(truth)
        assert np.array_equal(np.isnan(lo), dead) and np.all(lo[~dead] <= truth[~dead])
        assert np.all(truth[~dead] <= hi[~dead])
        kcap = min(K, topk or K)
        assert np.array_equal(lo[truth <= kcap], truth[truth <= kcap])
    if topk == 4:
        assert fast["neurons_needed"]["0.9"]["censored_fraction"] > 0.5  # the bracket path really ran
    if topk == 70:  # some pixels resolved beyond the first 32 of their top-k (the full-sort path)
        assert np.nanmax(np.where(np.isfinite(lo), lo, np.nan)) > 32


PAPER_KEYS = ("frames", "total_mass", "all_zero_maps", "num_maps", "num_neurons", "num_pixels", "pixels_per_neuron",
              "thresholds", "neurons_per_pixel")


@pytest.mark.parametrize(("seed", "K"), [(0, 45), (1, 150)])
def test_default_paper_statistics_equal_the_opt_in_run_and_the_reference(monkeypatch, seed, K):
    """neurons_needed off (the default: no top-k, per-pixel histograms or refinement) gives the paper statistics of
    the opt-in run and of the PyTorch reference reducers, for any chunking; and nothing of neurons-needed."""
    maps = _canvas(seed, T=2, K=K)
    on = distributed_from_canvases(maps, chunk=5, topk=8, bins=256, sub_bins=128, neurons_needed=True)
    for c in (1, 3, None):
        off, ref = _both(maps, monkeypatch, chunk=c, bins=256, sub_bins=128)
        _same(off, ref, f"chunk={c} compiled vs reference")
        for k in PAPER_KEYS:
            _same(off[k], on[k], f"chunk={c} {k}")
        _same(off["maps"]["n"], on["maps"]["n"], f"chunk={c} n(p)")
        assert set(off["maps"]) == {"n"} and off["neurons_needed"]["computed"] is False
        assert set(off["method"]) == {"tau"}


def _digest(x, out: list[str], path: str = "") -> list[str]:
    """Canonical lines of a result: arrays by the hash of their bytes, floats to 12 digits (bin edges come from
    libm's exp), everything else by repr."""
    import hashlib

    if isinstance(x, dict):
        for k, v in x.items():
            _digest(v, out, f"{path}/{k}")
    elif isinstance(x, (list, tuple)):
        for i, v in enumerate(x):
            _digest(v, out, f"{path}[{i}]")
    elif isinstance(x, np.ndarray):
        out.append(f"{path}={x.dtype}{x.shape}:{hashlib.sha256(np.ascontiguousarray(x).tobytes()).hexdigest()[:16]}")
    else:
        out.append(f"{path}={x:.12g}" if isinstance(x, float) else f"{path}={x!r}")
    return out


def test_opt_in_results_are_those_of_the_release_before_the_option(monkeypatch):
    """With neurons_needed on, every number, array and key order equals what A2 computed before the option
    existed (its default then): the digest below was recorded with that code, on both paths. Values are float32
    in [1/16, 16] or 0, so float64 sums are exact in any order (thread counts and summation order do not matter)."""
    import hashlib

    g = torch.Generator().manual_seed(21)
    maps = (torch.rand(2, 40, 6, 9, generator=g) * (255 / 16) + 1 / 16) * torch.sign(torch.randn(2, 40, 6, 9,
                                                                                                  generator=g))
    maps[torch.rand(2, 40, 6, 9, generator=g) < 0.2] = 0
    maps[:, 3] = 0
    maps[:, :, 5, 8] = 0
    for r in _both(maps, monkeypatch, chunk=7, topk=6, bins=256, sub_bins=128, neurons_needed=True):
        assert r["neurons_needed"]["0.9"]["censored_fraction"] > 0.9  # the bracket path ran
        digest = hashlib.sha256("\n".join(_digest(r, [])).encode()).hexdigest()
        assert digest == "7e34205f5a0e395953ed879f264a1823d3bbe0e86624e803460039a481c56394"


def test_bit_pattern_bins_equal_the_float64_log_bins():
    """The tables reproduce _LogBins.index exactly: random values, every edge and its float32 neighbours."""
    from xinc.analysis import a2_kernels as a2k

    g = torch.Generator().manual_seed(5)
    for lo, hi, bins in ((1e-7, 3.0, 2048), (0.3, 0.3 * (1 + 1e-6), 64), (1e-40, 1e30, 256), (2.0, 9.0, 7)):
        lb = _LogBins(lo, hi, bins)
        t = lb.table
        e = t.edges[1:bins]
        bits = np.concatenate([e - 1, e, e + 1, (torch.rand(20000, generator=g).double() * 2e9).long().numpy() + 1])
        bits = np.clip(bits, 1, 0x7F7FFFFF).astype(np.int64)
        v = torch.from_numpy(bits.astype(np.int32)).view(torch.float32)
        want = lb.index(v).numpy()
        got = np.array([a2k._bin_source(int(b), t.cell, t.edges) for b in bits])
        assert np.array_equal(got, want), (lo, hi, bins)


def test_non_float32_or_disabled_uses_the_reference_path(monkeypatch):
    from xinc.analysis import a2_kernels as a2k

    maps = _canvas(7, T=1, K=24)
    assert a2k.usable(maps) and not a2k.usable(maps.double())
    monkeypatch.setattr(kernels, "ENABLED", False)
    assert not a2k.usable(maps)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device: the CUDA fallback is not exercised")
def test_cuda_maps_fall_back_to_the_reference_path(monkeypatch):
    maps = _canvas(8, T=1, K=24)
    for needed in (False, True):
        _same(distributed_from_canvases(maps.cuda(), topk=4, neurons_needed=needed),
              distributed_from_canvases(maps, topk=4, neurons_needed=needed))
