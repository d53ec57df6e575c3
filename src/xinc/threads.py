"""Thread settings that help on an idle machine and never hurt on a busy one.

OpenMP workers (torch's intra-op pool) spin-wait between parallel regions by default; on a machine whose cores
are busy with other processes a spinning worker steals the cycles the working thread needs and eager PyTorch
slows several-fold (measured 4-20x on a loaded 2-core machine; benchmarks/threads_bench.py). xinc therefore:
- sets OMP_WAIT_POLICY=PASSIVE (idle workers sleep) unless the user set it, before torch is imported;
- uses as many torch threads as cores this process may run on (sched_getaffinity, capped by torch's own
  default, which counts physical cores), or XINC_THREADS when set;
- keeps its numba kernels single-threaded (no parallel=True): they run between torch calls, never inside a
  torch parallel region, so the two thread pools are never nested or oversubscribed.
It also keeps freed memory in the process (glibc): the canvas engine allocates and frees chunk tensors of
tens of MB many times per second; glibc returns blocks over its mmap threshold (at most 32 MB) to the
kernel on every free, and every new chunk page-faults its pages back in (measured: 40 % of an analysis'
CPU time in the kernel). Raising the mmap and trim thresholds lets freed chunks be reused.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters (malloc.h)


def cores_available() -> int:
    """CPU cores this process may run on (its affinity mask; os.cpu_count where that is unknown)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def set_wait_policy(env=os.environ) -> bool:
    """OMP_WAIT_POLICY=PASSIVE unless already set; True when set here. Effective only before torch's OpenMP
    runtime starts (import time), so the CLI calls it first thing."""
    if "OMP_WAIT_POLICY" in env:
        return False
    env["OMP_WAIT_POLICY"] = "PASSIVE"
    return True


def threads_wanted(default: int) -> int:
    """XINC_THREADS when set (a positive integer), else min(torch's default, cores available)."""
    raw = os.environ.get("XINC_THREADS", "").strip()
    if raw:
        try:
            n = int(raw)
        except ValueError:
            n = 0
        if n >= 1:
            return n
        print(f"xinc: warning: XINC_THREADS={raw!r} is not a positive integer; ignored", file=sys.stderr)
    return max(1, min(int(default), cores_available()))


@functools.cache
def _glibc(name: str):
    """The C library's function `name` on Linux (glibc), or None (another OS, or a libc without it, e.g. musl)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return getattr(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"), name)
    except (OSError, AttributeError):
        return None


def keep_freed_memory(limit: int = 2**31 - 1) -> bool:
    """Let glibc keep freed blocks up to `limit` bytes for reuse instead of unmapping them (mallopt); True
    when applied. Skipped off glibc, and when XINC_MALLOC=default asks for the C library's own policy."""
    mallopt = _glibc("mallopt")
    if os.environ.get("XINC_MALLOC", "").strip().lower() == "default" or mallopt is None:
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, limit)) and bool(mallopt(M_TRIM_THRESHOLD, limit))


def release_freed_memory() -> bool:
    """Return the freed blocks keep_freed_memory() kept to the system (glibc malloc_trim): call between phases
    whose large allocations differ in shape, where the kept blocks would not be reused. True when released."""
    trim = _glibc("malloc_trim")
    if trim is None:
        return False
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return bool(trim(0))


def configure_threads() -> dict[str, object]:
    """Apply xinc's thread and memory policy (call before anything imports torch); returns what was chosen."""
    policy_set = set_wait_policy()
    malloc_tuned = keep_freed_memory()
    import torch

    n = threads_wanted(torch.get_num_threads())
    if n != torch.get_num_threads():
        torch.set_num_threads(n)
    return {"threads": n, "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"), "policy_set_by_xinc": policy_set,
            "keep_freed_memory": malloc_tuned}
