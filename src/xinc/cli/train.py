"""`xinc train ffn`, `xinc train nerv` and `xinc reconstruct`: tyro parses the library's configs, the library runs.

The options are the fields of `xinc.train.TrainFFNConfig`, `TrainNeRVConfig` and `ReconstructConfig`
(declared once, with their help texts); this module only parses, calls and prints one summary line.
"""

from __future__ import annotations

from xinc.cli.common import command as _command
from xinc.cli.common import parse as parse_config  # tyro parses the library config; old `--flag True` deprecated


def _run(fn, argv: list[str], prog: str) -> int:
    try:
        return fn(argv, prog)
    except SystemExit as e:  # tyro: --help (0)
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)


def _summary(res, unit: str) -> str:
    m = res.metrics
    return (f"{res.out_dir}: best PSNR {m['best_psnr']:.2f} dB at {unit} {m[f'best_{unit}']} "
            f"(8-bit weights {m['psnr_8bit_weights']:.2f} dB), {m['num_params']:,} parameters, "
            f"{m['bpp_32bit']:.3f} bpp (32-bit) / {m['bpp_8bit']:.3f} bpp (8-bit), {m['wall_time_s']:.1f} s")


def _train_ffn(argv: list[str], prog: str) -> int:
    from xinc.train import TrainFFNConfig, train_ffn

    res = train_ffn(parse_config(TrainFFNConfig, argv, prog), command=_command(prog, argv))
    print(_summary(res, "step"))
    return 0


def _train_nerv(argv: list[str], prog: str) -> int:
    from xinc.train import TrainNeRVConfig, train_nerv

    res = train_nerv(parse_config(TrainNeRVConfig, argv, prog), command=_command(prog, argv))
    print(_summary(res, "epoch"))
    return 0


def _reconstruct(argv: list[str], prog: str) -> int:
    from xinc.train.reconstruction import ReconstructConfig, frame_digits, reconstruct

    res = reconstruct(parse_config(ReconstructConfig, argv, prog), command=_command(prog, argv))
    print(f"{res.out_dir}: wrote {len(res.frames)} PNG(s)")
    if res.psnr is not None:
        digits = frame_digits(res.num_frames)
        for i, pf, p8 in zip(res.frames, res.psnr["psnr_float"], res.psnr["psnr_8bit"]):
            print(f"frame {i:0{digits}d}: PSNR {pf:.3f} dB (float) {p8:.3f} dB (8-bit)")
        print(f"mean PSNR {res.psnr['mean_psnr_float']:.3f} dB (float) {res.psnr['mean_psnr_8bit']:.3f} dB (8-bit)")
    return 0


def train_ffn(argv: list[str], prog: str) -> int:
    """CLI entry: `xinc train ffn`."""
    return _run(_train_ffn, argv, prog)


def train_nerv(argv: list[str], prog: str) -> int:
    """CLI entry: `xinc train nerv`."""
    return _run(_train_nerv, argv, prog)


def reconstruct(argv: list[str], prog: str) -> int:
    """CLI entry: `xinc reconstruct`."""
    return _run(_reconstruct, argv, prog)


__all__ = ["train_ffn", "train_nerv", "reconstruct", "parse_config"]
