"""xinc: explain implicit neural representations through their implicit neural canvases.

The main entry points, importable from the top level (loaded lazily, so `import xinc` stays cheap):

- models: `load_model`, `save_model`; training: `train_ffn`, `train_nerv` (`TrainFFNConfig`, `TrainNeRVConfig`),
  `reconstruct` (`ReconstructConfig`);
- canvases: `explain`, `explain_stream` (any torch model), `compute_canvas`, `iter_canvas`, `stream_canvas`,
  `layer_info`;
- analyses: `AnalysisContext`, `run_analyses` (= `xinc.analysis.run`), `register_analysis`;
- report: `build_report`, `draw_figures` (= `xinc.report.plots.draw`).
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "load_model": "xinc.models.io", "save_model": "xinc.models.io",
    "train_ffn": "xinc.train", "train_nerv": "xinc.train", "TrainFFNConfig": "xinc.train",
    "TrainNeRVConfig": "xinc.train", "reconstruct": "xinc.train", "ReconstructConfig": "xinc.train",
    "explain": "xinc.canvas.explainer", "explain_stream": "xinc.canvas.explainer",
    "compute_canvas": "xinc.canvas", "iter_canvas": "xinc.canvas", "stream_canvas": "xinc.canvas",
    "layer_info": "xinc.canvas",
    "AnalysisContext": "xinc.analysis", "AnalysisResult": "xinc.analysis", "register_analysis": "xinc.analysis",
    "run_analyses": ("xinc.analysis", "run"),
    "build_report": "xinc.report.html", "draw_figures": ("xinc.report.plots", "draw"),
}
_SUBPACKAGES = ("models", "train", "data", "canvas", "analysis", "report", "pipeline")

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    """Lazy top-level API (imports torch and the stage on first use only)."""
    if name in _SUBPACKAGES:
        return importlib.import_module(f"xinc.{name}")
    target = _EXPORTS.get(name)
    if target is None:
        raise AttributeError(f"module 'xinc' has no attribute {name!r}")
    module, attr = target if isinstance(target, tuple) else (target, name)
    return getattr(importlib.import_module(module), attr)
