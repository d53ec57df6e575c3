"""xinc: explain implicit neural representations through their implicit neural canvases.

The main entry points, importable from the top level (loaded lazily, so `import xinc` stays cheap). Each
command's config is a dataclass that `xinc <command>` parses with tyro; the function beside it runs it:

- models: `load_model`, `save_model`; `import_model` (`XincFFNImportConfig`, `NeRVImportConfig`,
  `HNeRVQuantImportConfig`); training: `train_ffn`, `train_nerv` (`TrainFFNConfig`, `TrainNeRVConfig`),
  `reconstruct` (`ReconstructConfig`);
- data: `write_synthetic` (`SynthDatasetConfig`), `write_flow` (`FlowConfig`);
- canvases: `run_canvas` (`CanvasConfig`: a model's canvases into a zarr store); `explain`, `explain_stream`
  (any torch model), `compute_canvas`, `iter_canvas`, `stream_canvas`, `layer_info`;
- analyses: `analyze` (`AnalyzeConfig`: a model directory -> an analyze run folder); `AnalysisContext`,
  `run_analyses` (= `xinc.analysis.run`), `register_analysis`;
- report: `write_report` (`ReportConfig`), `build_report`, `draw_figures` (= `xinc.report.plots.draw`);
  `write_videos` (`VideoDirConfig`), `write_explorer` (`ExploreConfig`);
- pruning: `run_prune` (`PruneRunConfig`);
- pipeline: `run_pipeline` (`PipelineConfig`, `load_pipeline_config`), `run_demo` (`DemoConfig`).
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
    "import_model": "xinc.models.importers.config", "XincFFNImportConfig": "xinc.models.importers.config",
    "NeRVImportConfig": "xinc.models.importers.config", "HNeRVQuantImportConfig": "xinc.models.importers.config",
    "write_synthetic": "xinc.data.config", "SynthDatasetConfig": "xinc.data.config",
    "write_flow": "xinc.data.config", "FlowConfig": "xinc.data.config",
    "run_canvas": "xinc.canvas.write", "CanvasConfig": "xinc.canvas.config",
    "analyze": "xinc.analysis.runner", "AnalyzeConfig": "xinc.analysis.config",
    "write_report": "xinc.report.config", "ReportConfig": "xinc.report.config",
    "write_videos": "xinc.video.config", "VideoDirConfig": "xinc.video.config",
    "write_explorer": "xinc.explore.config", "ExploreConfig": "xinc.explore.config",
    "run_pipeline": "xinc.pipeline", "PipelineConfig": "xinc.pipeline", "run_demo": "xinc.pipeline",
    "DemoConfig": "xinc.pipeline", "load_pipeline_config": ("xinc.pipeline", "load_config"),
    "run_prune": "xinc.prune_config", "PruneRunConfig": "xinc.prune_config",
}
_SUBPACKAGES = ("models", "train", "data", "canvas", "analysis", "report", "video", "explore", "pipeline")

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
