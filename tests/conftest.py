"""Shared fixtures: the ../shared reference folder (tests using it skip when it is absent).

Under XINC_REQUIRE_SHARED=1 (set by .ci/run) an absent ../shared fails those tests instead, so the tests
against the real checkpoints cannot disappear from CI unnoticed.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def shared_required() -> bool:
    """True when the environment demands the reference artifacts (CI): their absence is then a failure."""
    return os.environ.get("XINC_REQUIRE_SHARED", "").strip().lower() not in ("", "0", "false", "no")


def missing_shared(reason: str) -> None:
    """Skip (locally) or fail (under XINC_REQUIRE_SHARED=1) a test whose reference data is absent."""
    if shared_required():
        pytest.fail(f"{reason}; XINC_REQUIRE_SHARED is set, so the reference tests must not be skipped",
                    pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """Path to ../shared; skips the test with a reason when it is not beside the checkout."""
    if not (SHARED / "reference").is_dir():
        missing_shared(f"reference artifacts not found at {SHARED} (CI provides ../shared beside the checkout)")
    return SHARED


@pytest.fixture(autouse=True)
def _deterministic_threads():
    torch.set_num_threads(2)
    yield
