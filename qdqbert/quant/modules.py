"""Quantized layers: a Linear whose input and weight pass through TensorQuantizers."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .descriptor import QUANT_DESC_8BIT_PER_TENSOR, QUANT_DESC_8BIT_WEIGHT_PER_CHANNEL, QuantDescriptor
from .tensor_quantizer import QuantMode, TensorQuantizer


class QuantLinear(nn.Linear):
    """nn.Linear with fake quant on its input (per-tensor) and weight (per output channel, axis 0).

    Parameter names are nn.Linear's, so any BERT checkpoint loads into it unchanged.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        input_desc: QuantDescriptor = QUANT_DESC_8BIT_PER_TENSOR,
        weight_desc: QuantDescriptor = QUANT_DESC_8BIT_WEIGHT_PER_CHANNEL,
    ) -> None:
        super().__init__(in_features, out_features, bias=bias)
        self.input_quantizer = TensorQuantizer(input_desc)
        channels = None if weight_desc.axis is None else (out_features if weight_desc.axis == 0 else in_features)
        self.weight_quantizer = TensorQuantizer(weight_desc, num_channels=channels)

        self._weight_cache: tuple[tuple, torch.Tensor] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(self.input_quantizer(x), self._quantized_weight(), self.bias)

    def _quantized_weight(self) -> torch.Tensor:
        """The fake-quantized weight. Without autograd (inference, calibration of activations) it is
        cached until the weight, its amax or the quantizer mode change: re-quantizing every weight
        on every forward would dominate inference time. Export and training always recompute, so
        the graph keeps its Q/DQ nodes and gradients flow."""
        quantizer = self.weight_quantizer
        if (
            quantizer.mode is not QuantMode.QUANTIZE
            or (torch.is_grad_enabled() and self.weight.requires_grad)
            or torch.jit.is_tracing()
            or torch.compiler.is_compiling()
        ):
            self._weight_cache = None
            return quantizer(self.weight)
        key = (self.weight.data_ptr(), self.weight._version, quantizer.amax.data_ptr(), quantizer.amax._version,
               self.weight.dtype, self.weight.device)  # fmt: skip
        if self._weight_cache is None or self._weight_cache[0] != key:
            with torch.no_grad():
                self._weight_cache = (key, quantizer(self.weight))
        return self._weight_cache[1]
