"""Process memory: resident and peak RSS, and the memory budget a process runs under.

`xinc run --backend ray` gives each worker a budget (`--worker-memory-mb`, default 3000; the environment
variable XINC_MEMORY_BUDGET_MB carries it, so any xinc process can be given one). Under a budget, an analysis
step's canvas memo is lowered to `MEMO_SHARE` of what the budget leaves above `MEMO_RESERVE_MB` (nothing at
the default 3000) and stores a canvas only while the process' resident memory plus the canvas stays under
`RSS_SHARE` of the budget (the memo is the one large store a step may skip without
changing a result: the analyses' own working set, e.g. A2's per-pixel top-k, and the model are not), and
explicit canvas chunk budgets are capped at `CHUNK_SHARE` of it. docs/reference/scale.md §7 has the measurements.
"""

from __future__ import annotations

import os
import resource

ENV = "XINC_MEMORY_BUDGET_MB"
MEMO_RESERVE_MB = 3000.0  # kept for a step's own work: the heaviest 128x256 analysis (A1+A2) peaked at 2.77 GB
MEMO_SHARE = 1 / 4  # of what the budget leaves above MEMO_RESERVE_MB goes to the canvas memo
CHUNK_SHARE = 1 / 64
RSS_SHARE = 0.8  # the memo stores a canvas only while RSS + it stays under this share of the budget


def _status_kib(field: str) -> float | None:
    """A `VmRSS`/`VmHWM` line of /proc/self/status in KiB (None off Linux)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return float(line.split()[1])
    except OSError:
        return None
    return None


def _mib(field: str) -> float:
    """A /proc/self/status memory field in MiB (ru_maxrss, the peak, where /proc is missing)."""
    kib = _status_kib(field)
    return (kib if kib is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / 1024


def rss_mb() -> float:
    """Resident set size of this process now, in MiB."""
    return _mib("VmRSS")


def peak_rss_mb() -> float:
    """Peak resident set size of this process (VmHWM), in MiB."""
    return _mib("VmHWM")


def set_budget_mb(mb: float | None) -> None:
    """Run this process (and the processes it starts) under a memory budget of `mb` MiB (None or 0: none)."""
    if mb:
        os.environ[ENV] = str(float(mb))
    else:
        os.environ.pop(ENV, None)


def budget_mb() -> float | None:
    """The memory budget of this process in MiB, or None (XINC_MEMORY_BUDGET_MB unset, empty or not > 0)."""
    try:
        mb = float(os.environ.get(ENV, "") or 0)
    except ValueError:
        return None
    return mb if mb > 0 else None


def memo_mb_within(requested: float) -> float:
    """The canvas memo size to use: `requested`, or under a process budget at most MEMO_SHARE of what the budget
    leaves above MEMO_RESERVE_MB (none at the default 3000 MiB: with a 187 MiB memo a 128x256 A1+A2 step
    peaked at 2.93 GiB, 3.07 GB)."""
    b = budget_mb()
    return float(requested) if b is None else min(float(requested), max(0.0, b - MEMO_RESERVE_MB) * MEMO_SHARE)


def rss_limit_mb() -> float | None:
    """Resident memory above which the canvas memo stores nothing more: RSS_SHARE of the budget (None: none)."""
    b = budget_mb()
    return None if b is None else b * RSS_SHARE


def chunk_mb_within(requested: float | None) -> float | None:
    """An explicit canvas chunk budget capped at CHUNK_SHARE of the process budget (None: the engine's default,
    32 MiB on CPU, already below it)."""
    b = budget_mb()
    return requested if requested is None or b is None else min(float(requested), b * CHUNK_SHARE)
