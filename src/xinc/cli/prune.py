"""`xinc prune MODEL_DIR --out OUT`: parse `xinc.prune_config.PruneRunConfig`, call `run_prune`."""

from __future__ import annotations

from xinc.cli.common import command, parse


def run(argv: list[str], prog: str) -> int:
    """Entry point of `xinc prune`."""
    from xinc.prune_config import PruneRunConfig, run_prune

    o = parse(PruneRunConfig, argv, prog)
    res, source = run_prune(o, command=command(prog, argv))
    b = res.baseline
    print(f"baseline: PSNR {b['psnr']:.2f} dB, {b['nonzero']} nonzero parameters ({source})")
    for r in res.rows:
        tuned = f", fine-tuned {r['psnr_finetuned']:.2f} dB" if "psnr_finetuned" in r else ""
        print(f"{r['method']:>16} {r['amount']:.2f}: PSNR {r['psnr']:.2f} dB{tuned}, {r['nonzero']} nonzero parameters")
    print(f"wrote {o.out}")
    return 0
