"""Shared fixtures: the ../shared reference folder (tests using it skip when it is absent)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """Path to ../shared; skips the test with a reason when it is not beside the checkout."""
    if not (SHARED / "reference").is_dir():
        pytest.skip(f"reference artifacts not found at {SHARED} (CI provides ../shared beside the checkout)")
    return SHARED


@pytest.fixture(autouse=True)
def _deterministic_threads():
    torch.set_num_threads(2)
    yield
