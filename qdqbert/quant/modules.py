"""Quantized layers: a Linear whose input and weight pass through TensorQuantizers."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .descriptor import QUANT_DESC_8BIT_PER_TENSOR, QUANT_DESC_8BIT_WEIGHT_PER_CHANNEL, QuantDescriptor
from .tensor_quantizer import TensorQuantizer


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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(self.input_quantizer(x), self.weight_quantizer(self.weight), self.bias)
