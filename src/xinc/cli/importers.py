"""`xinc import xinc-ffn|nerv|hnerv-quant`: parse the import config, call `xinc.models.importers.import_model`."""

from __future__ import annotations

from pathlib import Path

from xinc.cli.common import parse


def _report(out: Path, record: dict) -> None:
    src = record.get("architecture_sources", {})
    print(f"imported {record['format'].split(' ')[0]} -> {out}")
    if src:
        print("architecture: " + ", ".join(f"{k} from {v}" for k, v in src.items()))
    rep = record.get("reproduced")
    if rep:
        print(f"PSNR vs {rep['ground_truth']}: mean {rep['mean_psnr_db']:.3f} dB over {len(rep['frames'])} frames "
              f"(min {min(rep['per_frame_psnr_db']):.3f}, max {max(rep['per_frame_psnr_db']):.3f})")
    rec = record.get("recovered") or {}
    if rec.get("best_val_psnr_db") is not None:
        print(f"checkpoint: seed {rec.get('seed')}, best validation PSNR {rec['best_val_psnr_db']:.2f} dB")
    if record.get("render_range"):
        lo, hi = record["render_range"]
        print(f"render range [{lo:.3f}, {hi:.3f}]")


def _import(cls_name: str, argv: list[str], prog: str) -> int:
    from xinc.models.importers import config

    cfg = parse(getattr(config, cls_name), argv, prog)
    _report(cfg.out, config.import_model(cfg))
    return 0


def import_xinc_ffn(argv: list[str], prog: str) -> int:
    """`xinc import xinc-ffn CKPT --out DIR`."""
    return _import("XincFFNImportConfig", argv, prog)


def import_nerv(argv: list[str], prog: str) -> int:
    """`xinc import nerv CKPT [--config JSON] --frames T --out DIR [original-script flags]`."""
    return _import("NeRVImportConfig", argv, prog)


def import_hnerv_quant(argv: list[str], prog: str) -> int:
    """`xinc import hnerv-quant CKPT --out DIR`."""
    return _import("HNeRVQuantImportConfig", argv, prog)
