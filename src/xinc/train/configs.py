"""Training configs from dicts of option names (pipeline tables, JSON/TOML), checked like the command line."""

from __future__ import annotations

from typing import Any

from xinc.errors import XincError
from xinc.fields import flag_names
from xinc.train.ffn import TrainFFNConfig, validate_ffn_config
from xinc.train.nerv import TrainNeRVConfig, validate_nerv_config

CONFIGS: dict[str, type] = {"ffn": TrainFFNConfig, "nerv": TrainNeRVConfig}


def config_fields(cls: type) -> dict[str, str]:
    """{accepted key: field name}: the option names users know (`width`, `eval_every`) and the field names."""
    names = flag_names(cls)
    keys = {opt.replace("-", "_"): f for f, opt in names.items()}
    return {**{f: f for f in names}, **keys}


def option_names(cls: type) -> list[str]:
    """The command-line option names of a config, in snake case (`width`, `depth`, `eval_every`, ...)."""
    return [opt.replace("-", "_") for opt in flag_names(cls).values()]


def train_config(kind: str, options: dict[str, Any], **fixed: Any):
    """A TrainFFNConfig / TrainNeRVConfig from option names (`{"width": 64}`) plus `fixed` fields (image, out, ...).

    An unknown kind or option name is a one-line XincError; values are checked by `validate_config`.
    """
    if kind not in CONFIGS:
        raise XincError(f"train {kind!r}: unknown model kind ; choose one of {', '.join(CONFIGS)}")
    cls = CONFIGS[kind]
    accepted = config_fields(cls)
    kw: dict[str, Any] = {}
    for key, value in {**options, **fixed}.items():
        name = accepted.get(str(key).replace("-", "_"))
        if name is None:
            raise XincError(f"train {kind}: unknown option {key!r} ; known: {', '.join(sorted(option_names(cls)))}")
        kw[name] = list(value) if isinstance(value, tuple) and name not in ("size", "crop") else value
    return cls(**kw)


def validate_config(cfg: Any, need_source: bool = True) -> None:
    """Check every value of a training config (one-line XincError) before any work starts."""
    if isinstance(cfg, TrainFFNConfig):
        validate_ffn_config(cfg)
    elif isinstance(cfg, TrainNeRVConfig):
        validate_nerv_config(cfg, need_source=need_source)
    else:
        raise TypeError(f"not a training config: {type(cfg).__name__}")


__all__ = ["CONFIGS", "config_fields", "option_names", "train_config", "validate_config"]
