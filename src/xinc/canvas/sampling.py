"""The one seeded neuron sampler: videos, the explorer, the report and A3 call it, so one seed picks the same
neurons everywhere."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from xinc.errors import XincError


def sample_neurons(num_neurons: int, n: int, seed: int, alive: Sequence[bool] | np.ndarray | None = None) -> list[int]:
    """Sorted seeded sample of up to `n` of a layer's `num_neurons` neuron indices.

    The order is one seeded permutation of 0..K-1 (torch.randperm); `alive` (K bools) drops dead neurons from
    it before the first n are taken, so callers that know more (A3 drops neurons without contribution) still
    agree with callers that do not whenever every neuron is alive.
    """
    K, n = int(num_neurons), int(n)
    if K < 1 or n < 0:
        raise XincError(f"sample_neurons: need num_neurons >= 1 and n >= 0 (got {K}, {n})")
    order = torch.randperm(K, generator=torch.Generator().manual_seed(int(seed))).numpy()
    if alive is not None:
        mask = np.asarray(alive, dtype=bool)
        if mask.shape != (K,):
            raise XincError(f"sample_neurons: alive has shape {mask.shape}; expected ({K},)")
        order = order[mask[order]]
    return sorted(int(k) for k in order[:n])
