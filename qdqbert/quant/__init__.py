"""Quantization toolkit with pytorch-quantization's semantics, in plain PyTorch."""

from .calib import CALIB_METHODS, HistogramCalibrator, MaxCalibrator, entropy_amax, mse_amax, percentile_amax
from .descriptor import QUANT_DESC_8BIT_PER_TENSOR, QUANT_DESC_8BIT_WEIGHT_PER_CHANNEL, QuantDescriptor
from .helpers import (
    calibrate,
    calibrate_candidates,
    load_amax,
    quantization_disabled,
    quantizer_summary,
    quantizers,
    set_quantization,
)
from .modules import QuantLinear
from .tensor_quantizer import QuantMode, TensorQuantizer, fake_quant

__all__ = [
    "CALIB_METHODS",
    "QUANT_DESC_8BIT_PER_TENSOR",
    "QUANT_DESC_8BIT_WEIGHT_PER_CHANNEL",
    "HistogramCalibrator",
    "MaxCalibrator",
    "QuantDescriptor",
    "QuantLinear",
    "QuantMode",
    "TensorQuantizer",
    "calibrate",
    "calibrate_candidates",
    "entropy_amax",
    "fake_quant",
    "load_amax",
    "mse_amax",
    "percentile_amax",
    "quantization_disabled",
    "quantizer_summary",
    "quantizers",
    "set_quantization",
]
