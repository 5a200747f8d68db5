"""`QDQBertConfig`: a transformers BertConfig plus the quantization settings."""

from __future__ import annotations

from huggingface_hub.dataclasses import strict
from transformers import BertConfig

from .errors import QDQBertError
from .quant.descriptor import QuantDescriptor

POSITION_EMBEDDING_TYPES = ("absolute", "relative_key", "relative_key_query")


@strict
class QDQBertConfig(BertConfig):
    """BERT's configuration (every BertConfig field) plus:

    position_embedding_type: "absolute" (BERT), "relative_key" or "relative_key_query" (Shaw et al. /
        Huang et al. relative positions, as in the original transformers BERT).
    quant_num_bits: bits of every quantizer (8 for TensorRT INT8).
    quant_per_channel_weights: one weight scale per output channel (TensorRT's best) or one per tensor.
    quant_narrow_range: symmetric [-127, 127] instead of [-128, 127] (cannot be exported to ONNX).
    pruned_heads: {layer: [heads]} removed by `prune_heads`, so a pruned checkpoint reloads.
    """

    model_type = "qdqbert"
    position_embedding_type: str = "absolute"
    quant_num_bits: int = 8
    quant_per_channel_weights: bool = True
    quant_narrow_range: bool = False
    pruned_heads: dict | None = None

    def validate_qdqbert(self) -> None:
        if self.position_embedding_type not in POSITION_EMBEDDING_TYPES:
            raise QDQBertError(
                f"position_embedding_type={self.position_embedding_type!r} is unknown; "
                f"use one of {', '.join(POSITION_EMBEDDING_TYPES)}"
            )
        if self.hidden_size % self.num_attention_heads:
            raise QDQBertError(
                f"hidden_size={self.hidden_size} is not a multiple of num_attention_heads={self.num_attention_heads}"
            )

    @property
    def input_quant_desc(self) -> QuantDescriptor:
        """Activations: per-tensor, histogram-calibrated."""
        return QuantDescriptor(num_bits=self.quant_num_bits, narrow_range=self.quant_narrow_range)

    @property
    def weight_quant_desc(self) -> QuantDescriptor:
        """Weights: per output channel (axis 0) or per tensor, max-calibrated."""
        return QuantDescriptor(
            num_bits=self.quant_num_bits,
            axis=0 if self.quant_per_channel_weights else None,
            narrow_range=self.quant_narrow_range,
            calib_method="max",
        )
