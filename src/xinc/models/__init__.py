"""INR architectures (FFN, NeRV/HNeRV), their model directories, and checkpoint import."""

from xinc.models.encodings import FourierFeatures, FramePositionalEncoding, pixel_coords
from xinc.models.ffn import FFN, FFNConfig
from xinc.models.io import build_model, load_model, model_config_from_dict, save_model
from xinc.models.nerv import NeRV, NeRVConfig, nerv_config_for_budget, nerv_param_count
from xinc.models.trace import Trace

__all__ = [
    "FFN", "FFNConfig", "NeRV", "NeRVConfig", "Trace", "FourierFeatures", "FramePositionalEncoding",
    "pixel_coords", "nerv_config_for_budget", "nerv_param_count", "build_model", "load_model",
    "save_model", "model_config_from_dict",
]
