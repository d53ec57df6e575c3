"""CI cannot pass silently without ../shared, and the curated mutation list stays well-formed."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from conftest import missing_shared

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("value,outcome", [("1", "fail"), ("true", "fail"), ("", "skip"), ("0", "skip")])
def test_absent_shared_fails_under_xinc_require_shared(monkeypatch, value, outcome):
    monkeypatch.setenv("XINC_REQUIRE_SHARED", value)
    expected = pytest.fail.Exception if outcome == "fail" else pytest.skip.Exception
    with pytest.raises(expected, match="reference artifacts not found"):
        missing_shared("reference artifacts not found at /nowhere")


def test_ci_script_requires_shared():
    assert "export XINC_REQUIRE_SHARED=1" in (ROOT / ".ci" / "run").read_text()


def test_mutation_list_is_well_formed():
    """Unique ids, a real change, named test files that exist (staleness of snippets is `make mutate`'s job)."""
    spec = importlib.util.spec_from_file_location("xinc_mutate", ROOT / "tools" / "mutate.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["xinc_mutate"] = mod
    spec.loader.exec_module(mod)
    muts = mod.load()
    assert len(muts) >= 25
    for m in muts:
        assert (ROOT / m.file).is_file(), m.id
        for t in m.tests:
            assert (ROOT / t.split("::")[0]).is_file(), f"{m.id}: {t}"
