"""Analyses of implicit neural canvases (SPEC §4 A1–A6 and plug-ins): each module registers one analysis.

Library entry point: `xinc.analysis.run(ctx, ids, options)`; extension point: `register_analysis`.
"""

from xinc.analysis.registry import (
    ANALYSES,
    AnalysisContext,
    AnalysisResult,
    discover,
    each_variant_layer,
    get_analysis,
    load_result,
    make_options,
    register_analysis,
    run,
    stream_tensors,
    variants,
)

__all__ = ["ANALYSES", "AnalysisContext", "AnalysisResult", "discover", "each_variant_layer", "get_analysis",
           "load_result", "make_options", "register_analysis", "run", "stream_tensors", "variants"]
