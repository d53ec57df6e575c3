"""Analyses of implicit neural canvases (SPEC §4 A1–A6 and plug-ins): each module registers one analysis.

Library entry points: `xinc.analysis.analyze(AnalyzeConfig(...))` (a model directory -> an analyze run folder,
what `xinc analyze` calls) and `xinc.analysis.run(ctx, ids, options)` (analyses on a context you build);
extension point: `register_analysis`.
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

from xinc.analysis.config import AnalyzeConfig  # noqa: E402
from xinc.analysis.runner import analyze  # noqa: E402

__all__ += ["AnalyzeConfig", "analyze"]
