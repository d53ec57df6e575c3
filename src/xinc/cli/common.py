"""Shared CLI plumbing: parse a dataclass of options with tyro."""

from __future__ import annotations

import inspect
from typing import TypeVar

import tyro

T = TypeVar("T")


def parse(cls: type[T], argv: list[str], prog: str) -> T:
    """Parse argv into an instance of the options dataclass `cls` (its docstring is the help text)."""
    description = inspect.cleandoc(cls.__doc__ or "")
    return tyro.cli(cls, args=argv, prog=prog, description=description, config=(tyro.conf.FlagConversionOff,))
