"""Compiled CPU kernels (numba) for fused reductions that eager PyTorch can only do in several passes.

The MLP paper rule's heat map needs, for every pixel p, sum_i |phi(a_i(p) s_i + beta)| and the additive part
sum_i (a_i(p) s_i + beta). Eager PyTorch writes the (P, n) products, reads them to sum, rewrites them with
|phi(.)| and reads them again; this kernel reads `a` once and keeps everything in registers. It is exact to
float32 round-off like the eager path (sums are reassociated so they vectorise; products may use FMA).

Used only for float32 CPU tensors when numba imports; otherwise (CUDA, other dtypes, no numba) the rules
fall back to their PyTorch tiles. The first call in a process costs ~0.5-1 s (numba's start-up; the
machine code itself is cached on disk beside this module), which pays off from a few hundred calls on.
`ENABLED = False`, or XINC_NUMBA=0 in the environment, turns the kernels off (tests compare both paths).
"""

from __future__ import annotations

import functools
import os
import warnings

import numpy as np
import torch

ENABLED = os.environ.get("XINC_NUMBA", "1") != "0"
PHIS = ("identity", "relu")  # activations the MLP kernel handles (sin/tanh/erf vectorise better in PyTorch)


@functools.cache
def _numba():
    """The numba module, or None when it is not installed or fails to import."""
    try:
        import numba
    except Exception:  # noqa: BLE001 - any import failure means: use the PyTorch path
        return None
    return numba


def available() -> bool:
    return ENABLED and _numba() is not None


def backend() -> str | None:
    """What compiles the kernels ("numba 0.68.1"), or None when they are off or numba is missing."""
    return f"numba {_numba().__version__}" if available() else None


def _jit(fn):
    """njit with an on-disk cache where the package directory is writable (else compiled per process)."""
    numba = _numba()
    opts = dict(nogil=True, fastmath={"reassoc", "contract"})
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return numba.njit(cache=True, **opts)(fn)
    except Exception:  # noqa: BLE001 - no writable cache location
        return numba.njit(cache=False, **opts)(fn)


def _mlp_source(a, s, beta, relu, totals, heat, part, tot):
    """heat[p] = sum_j |phi(a[p, j] s[j] + beta)| with phi = relu or identity, part[p] = sum_j (a[p, j] s[j] +
    beta) and, with totals, tot[j] += |phi(.)| (float32 within 256 rows, float64 across). Row by row; each
    inner loop is branch-free and vectorises (relu(x) = (x + |x|) / 2 exactly, no branch). a (P, c)
    C-contiguous; indices come straight from range(), so no wraparound checks block vectorisation."""
    c = a.shape[1]
    acc = np.zeros(c, np.float32)  # fresh, so the compiler knows it aliases nothing
    y = np.empty(c, np.float32)
    zero, half = np.float32(0.0), np.float32(0.5)
    for p in range(a.shape[0]):
        q = zero
        h = zero
        if not totals:  # heat only: one fused loop
            if relu:
                for j in range(c):
                    x = a[p, j] * s[j] + beta
                    q += x
                    h += (x + abs(x)) * half
            else:
                for j in range(c):
                    x = a[p, j] * s[j] + beta
                    q += x
                    h += abs(x)
        else:
            for j in range(c):
                x = a[p, j] * s[j] + beta
                q += x
                y[j] = (x + abs(x)) * half if relu else abs(x)
            for j in range(c):
                h += y[j]
                acc[j] += y[j]
            if p % 256 == 255:
                for j in range(c):
                    tot[j] += acc[j]
                    acc[j] = zero
        heat[p] = h
        part[p] = q
    if totals:
        for j in range(c):
            tot[j] += acc[j]


@functools.cache
def _mlp_kernel():
    return _jit(_mlp_source)


def mlp_reduce(a: torch.Tensor, start: int, stop: int, s: torch.Tensor, beta: float, phi: str,
               totals: bool = False):
    """(heat (P,), part (P,), totals (stop-start,) float64 or None) of C_i(p) = phi(a_i(p) s_i + beta) over
    neurons i in [start, stop), phi in PHIS, from one pass over a (P, n) float32 CPU tensor; None when the
    kernel does not apply (then use the PyTorch path)."""
    if not available() or phi not in PHIS or a.device.type != "cpu" or a.dtype != torch.float32:
        return None
    a = a.detach()
    a_np = (a if (start, stop) == (0, a.shape[1]) else a[:, start:stop]).contiguous().numpy()  # sub-range: copy
    s_np = s.detach().to(torch.float32).contiguous().numpy()
    P, c = a_np.shape[0], stop - start
    heat, part = np.empty(P, np.float32), np.empty(P, np.float32)
    tot = np.zeros(c if totals else 1, np.float64)
    _mlp_kernel()(a_np, s_np, np.float32(beta), phi == "relu", bool(totals), heat, part, tot)
    return torch.from_numpy(heat), torch.from_numpy(part), torch.from_numpy(tot) if totals else None
