"""Curated mutation check: does the suite catch each semantic one-line bug of tools/mutations.toml?

For every entry (file, original snippet, replacement, tests that must kill it) the tool copies the
working tree once into a temporary folder, applies the mutation there (the working tree is never
edited), runs the named tests against the mutated copy with a time budget, restores the file and
moves on. A mutation is *killed* when the named tests fail (or run past the budget), *survived*
when they pass, *stale* when its original snippet is no longer found exactly once (the code moved:
update the entry). The named tests must pass on the unmutated copy first. Exit status: 0 when every
mutation was killed, 1 otherwise (survivors, stale entries or a failing baseline).

    python tools/mutate.py                  # every mutation (make mutate)
    python tools/mutate.py --only psnr-8bit-no-rounding --list
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
LIST = Path(__file__).with_name("mutations.toml")
IGNORE = shutil.ignore_patterns(".git", ".venv", "runs", ".pytest_cache", "__pycache__", ".ruff_cache", "*.egg-info")


@dataclass
class Mutation:
    """One curated mutation: replace `original` (exactly one occurrence) by `replacement` in `file`."""

    id: str
    file: str
    original: str
    replacement: str
    tests: list[str]
    why: str = ""


def load(path: Path = LIST) -> list[Mutation]:
    """The curated list, validated (unique ids, non-empty tests, a real change)."""
    data = tomllib.loads(path.read_text())
    out, seen = [], set()
    for k, m in enumerate(data.get("mutation", [])):
        missing = [f for f in ("id", "file", "original", "replacement", "tests") if f not in m]
        if missing:
            raise SystemExit(f"{path}: mutation #{k + 1} lacks {', '.join(missing)}")
        mut = Mutation(**{f: m[f] for f in ("id", "file", "original", "replacement", "tests", "why") if f in m})
        if mut.id in seen:
            raise SystemExit(f"{path}: duplicate mutation id {mut.id!r}")
        if not mut.tests or mut.original == mut.replacement:
            raise SystemExit(f"{path}: mutation {mut.id!r} needs tests and a replacement that differs")
        seen.add(mut.id)
        out.append(mut)
    return out


def pytest_cmd(tests: list[str]) -> list[str]:
    return [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "--no-header", *tests]


def run_tests(tree: Path, tests: list[str], budget: float) -> tuple[str, float, str]:
    """('pass' | 'fail' | 'timeout', seconds, last output lines) of the named tests in `tree`."""
    env = dict(os.environ, PYTHONPATH=str(tree / "src"), PYTHONDONTWRITEBYTECODE="1")
    env.pop("XINC_REQUIRE_SHARED", None)  # the copy has no ../shared beside it: those tests skip
    t0 = time.perf_counter()
    try:
        p = subprocess.run(pytest_cmd(tests), cwd=tree, env=env, capture_output=True, text=True, timeout=budget)
    except subprocess.TimeoutExpired:
        return "timeout", time.perf_counter() - t0, ""
    tail = "\n".join((p.stdout + p.stderr).strip().splitlines()[-3:])
    return ("pass" if p.returncode == 0 else "fail"), time.perf_counter() - t0, tail


def apply(tree: Path, m: Mutation) -> str | None:
    """Write the mutated file into `tree`; return the original text, or None when the snippet is stale."""
    path = tree / m.file
    if not path.is_file():
        return None
    text = path.read_text()
    if text.count(m.original) != 1:
        return None
    path.write_text(text.replace(m.original, m.replacement))
    return text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", nargs="*", help="mutation ids to run (default: all)")
    ap.add_argument("--budget", type=float, default=240.0, help="seconds per mutation's test run")
    ap.add_argument("--list", action="store_true", help="print the mutations and exit")
    args = ap.parse_args(argv)
    muts = load()
    if args.only:
        unknown = sorted(set(args.only) - {m.id for m in muts})
        if unknown:
            raise SystemExit(f"unknown mutation id(s): {', '.join(unknown)}")
        muts = [m for m in muts if m.id in args.only]
    if args.list:
        for m in muts:
            print(f"{m.id:32s} {m.file}  [{', '.join(m.tests)}]")
        return 0
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="xinc-mutate-") as tmp:
        tree = Path(tmp) / "tree"
        shutil.copytree(ROOT, tree, ignore=IGNORE)
        tests = sorted({t for m in muts for t in m.tests})
        status, secs, tail = run_tests(tree, tests, args.budget * 2)
        print(f"baseline: {len(tests)} test selections {status} in {secs:.1f}s")
        if status != "pass":
            print(tail)
            print("the named tests must pass on the unmutated tree first")
            return 1
        counts = {"killed": 0, "survived": 0, "stale": 0}
        for m in muts:
            original = apply(tree, m)
            if original is None:
                counts["stale"] += 1
                print(f"STALE     {m.id}: snippet not found exactly once in {m.file}; update tools/mutations.toml")
                continue
            try:
                status, secs, tail = run_tests(tree, m.tests, args.budget)
            finally:
                (tree / m.file).write_text(original)
            verdict = "survived" if status == "pass" else "killed"
            counts[verdict] += 1
            note = " (time budget)" if status == "timeout" else ""
            why = f"\n    {m.why}" if verdict == "survived" else ""
            print(f"{verdict.upper():9s} {m.id} ({secs:.1f}s){note}{why}")
    total = time.perf_counter() - t_start
    print(f"{counts['killed']} killed, {counts['survived']} survived, {counts['stale']} stale of {len(muts)} "
          f"mutations in {total:.0f}s")
    return 0 if counts["survived"] == counts["stale"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
