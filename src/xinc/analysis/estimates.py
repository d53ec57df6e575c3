"""Error bounds of statistics estimated from a seeded sample (frames of a clip, neurons of a layer).

A per-frame statistic x_f averaged over n frames drawn without replacement from the N frames of the
selection estimates the mean over all N frames. With the sample mean m and the sample standard deviation
s (ddof = 1):

    SE = s / sqrt(n) * sqrt((N - n) / (N - 1))       (finite-population correction, FPC)
    95 % interval = m -/+ t_{0.975, n-1} * SE         (Student t with n - 1 degrees of freedom)

n = N is a census (SE = 0); n = 1 has no spread estimate (SE and the interval are None).

A median over a sample of n (neurons of a layer, in A7) gets the distribution-free interval of order
statistics: [x_(j), x_(n+1-j)] with the largest j such that P(B <= j - 1) <= 2.5 %, B ~ Binomial(n, 1/2). Its
coverage 1 - 2 P(B <= j - 1) is at least 95 % (sampling without replacement only narrows the spread of B, so
the interval is conservative); n < 6 has no such interval. Not an analysis
module: no `register_analysis` here, `xinc analyze` calls it after the analyses when frames were sampled.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

METHOD = ("simple random sample without replacement: mean, SE = s/sqrt(n) * sqrt((N-n)/(N-1)) (s with ddof=1, "
          "finite-population correction), 95% interval mean -/+ t(0.975, n-1) * SE")
MEDIAN_METHOD = ("order-statistic interval [x_(j), x_(n+1-j)], largest j with P(Binomial(n, 1/2) <= j-1) <= 2.5%; "
                 "coverage >= 95%, conservative without replacement")


def mean_estimate(values: Sequence[float], population: int) -> dict[str, Any]:
    """Mean of a sample of n values out of a population of N, its standard error and 95 % interval (see module)."""
    v = [float(x) for x in values if x is not None and math.isfinite(float(x))]
    n, N = len(v), int(population)
    if n == 0:
        return {"n": 0, "of": N, "mean": None, "se": None, "ci95": None}
    if N < n:
        raise ValueError(f"mean_estimate: sample of {n} from a population of {N}")
    mean = math.fsum(v) / n
    if n == N:
        return {"n": n, "of": N, "mean": mean, "se": 0.0, "ci95": [mean, mean], "fpc": 0.0}
    if n == 1:
        return {"n": n, "of": N, "mean": mean, "se": None, "ci95": None, "fpc": math.sqrt((N - n) / (N - 1))}
    from scipy.stats import t

    sd = math.sqrt(math.fsum((x - mean) ** 2 for x in v) / (n - 1))
    fpc = math.sqrt((N - n) / (N - 1))
    se = sd / math.sqrt(n) * fpc
    half = float(t.ppf(0.975, n - 1)) * se
    return {"n": n, "of": N, "mean": mean, "se": se, "ci95": [mean - half, mean + half], "fpc": fpc, "sd": sd}


def median_interval(values: Sequence[float], population: int, level: float = 0.95) -> dict[str, Any]:
    """Sample median of n values out of N and its distribution-free order-statistic interval (see module)."""
    v = np.sort(np.asarray([float(x) for x in values if x is not None and math.isfinite(float(x))]))
    n, N = int(v.size), int(population)
    out: dict[str, Any] = {"n": n, "of": N, "median": float(np.median(v)) if n else None, "ci": None,
                           "coverage": None, "method": MEDIAN_METHOD}
    if n == 0 or n > N:
        if n > N:
            raise ValueError(f"median_interval: sample of {n} from a population of {N}")
        return out
    if n == N:  # a census: the median is known
        return {**out, "ci": [out["median"], out["median"]], "coverage": 1.0}
    from scipy.stats import binom

    cdf = binom.cdf(np.arange(n + 1), n, 0.5)
    j = int(np.count_nonzero(cdf <= (1 - level) / 2))  # ranks 1..j below: P(B <= j - 1) <= alpha / 2
    if j == 0:
        return out
    return {**out, "ci": [float(v[j - 1]), float(v[n - j])], "coverage": float(1 - 2 * cdf[j - 1])}


def add_frame_estimates(node: Any, population: int) -> int:
    """Add `estimate` {key: mean_estimate} beside every `per_frame` list of records (dicts of numbers) found in
    a results tree, in place; returns how many were added."""
    added = 0
    if isinstance(node, dict):
        recs = node.get("per_frame")
        if isinstance(recs, list) and recs and all(isinstance(r, dict) for r in recs):
            keys = [k for k in recs[0] if all(isinstance(r.get(k), int | float) or r.get(k) is None for r in recs)]
            node["estimate"] = {k: mean_estimate([r.get(k) for r in recs], population) for k in keys}
            added += 1
        for key, val in list(node.items()):
            if key not in ("per_frame", "estimate"):
                added += add_frame_estimates(val, population)
    elif isinstance(node, list):
        for val in node:
            added += add_frame_estimates(val, population)
    return added


def estimate_line(label: str, est: dict[str, Any], unit: str = "") -> str:
    """One summary line: 'label: m ± SE (95% [lo, hi]), n of N frames'."""
    if est.get("mean") is None:
        return f"{label}: no finite values"
    if est.get("se") is None:
        return f"{label}: {est['mean']:.4g}{unit} from 1 of {est['of']} frames (no error bound from one frame)"
    lo, hi = est["ci95"]
    return (f"{label}: {est['mean']:.4g}{unit} ± {est['se']:.2g} (SE with FPC; 95% [{lo:.4g}, {hi:.4g}]), "
            f"{est['n']} of {est['of']} frames")
