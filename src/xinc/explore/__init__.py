"""The explorer: a self-contained HTML page to click through an analyze run's canvases (pixel -> top neurons,
neuron -> map over frames and its A3/A5/A6 numbers). Data in `xinc.explore.data`, page in `xinc.explore.page`."""

from xinc.explore.build import build_explorer, build_payload
from xinc.explore.config import ExploreConfig, write_explorer
from xinc.explore.data import ExploreLimits

__all__ = ["ExploreConfig", "ExploreLimits", "build_explorer", "build_payload", "write_explorer"]
