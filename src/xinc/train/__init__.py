"""Training of the paper's INRs: FFN on one image, NeRV on one video; the shared loop; reconstruction; metrics.

`train_ffn(TrainFFNConfig(...))` / `train_nerv(TrainNeRVConfig(...))` train, `reconstruct(ReconstructConfig(...))`
decodes frames; `xinc train ffn|nerv` and `xinc reconstruct` parse exactly these configs (tyro).
`train_config(kind, options)` builds a checked config from a dict of option names (e.g. a pipeline table).
"""

from xinc.train.common import TrainResult, nerv_lr, warmup_cosine_mult
from xinc.train.configs import config_fields, train_config, validate_config
from xinc.train.ffn import TrainFFNConfig, train_ffn
from xinc.train.loop import Job, Task
from xinc.train.metrics import bits_per_pixel, psnr_8bit, psnr_float
from xinc.train.nerv import TrainNeRVConfig, train_nerv
from xinc.train.quant import num_params, quantize_model, quantize_tensor
from xinc.train.reconstruction import ReconstructConfig, ReconstructResult, reconstruct

__all__ = [
    "TrainFFNConfig", "TrainNeRVConfig", "TrainResult", "train_ffn", "train_nerv", "psnr_8bit", "psnr_float",
    "bits_per_pixel", "quantize_model", "quantize_tensor", "num_params", "nerv_lr", "warmup_cosine_mult",
    "ReconstructConfig", "ReconstructResult", "reconstruct", "train_config", "config_fields", "validate_config",
    "Job", "Task",
]
