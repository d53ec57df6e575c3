"""Training of the paper's INRs: FFN on one image, NeRV on one video; metrics and 8-bit weight quantisation."""

from xinc.train.common import TrainResult, nerv_lr, warmup_cosine_mult
from xinc.train.ffn import TrainFFNConfig, train_ffn
from xinc.train.metrics import bits_per_pixel, psnr_8bit, psnr_float
from xinc.train.nerv import TrainNeRVConfig, train_nerv
from xinc.train.quant import num_params, quantize_model, quantize_tensor

__all__ = [
    "TrainFFNConfig", "TrainNeRVConfig", "TrainResult", "train_ffn", "train_nerv", "psnr_8bit", "psnr_float",
    "bits_per_pixel", "quantize_model", "quantize_tensor", "num_params", "nerv_lr", "warmup_cosine_mult",
]
