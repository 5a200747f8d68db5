"""QDQBERT: BERT with quantize-dequantize nodes, every head, calibration and QAT, in plain PyTorch."""

from .configuration_qdqbert import QDQBertConfig
from .errors import CheckpointError, MissingDependencyError, QDQBertError, QuantizerError
from .loading import load_tf_weights_in_qdqbert
from .modeling_qdqbert import (
    QDQBertEmbeddings,
    QDQBertForMaskedLM,
    QDQBertForMultipleChoice,
    QDQBertForNextSentencePrediction,
    QDQBertForQuestionAnswering,
    QDQBertForSequenceClassification,
    QDQBertForTokenClassification,
    QDQBertLayer,
    QDQBertLMHeadModel,
    QDQBertModel,
    QDQBertPreTrainedModel,
)
from .quant import calibrate, quantizer_summary, quantizers, set_quantization

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "MissingDependencyError",
    "QDQBertConfig",
    "QDQBertEmbeddings",
    "QDQBertError",
    "QDQBertForMaskedLM",
    "QDQBertForMultipleChoice",
    "QDQBertForNextSentencePrediction",
    "QDQBertForQuestionAnswering",
    "QDQBertForSequenceClassification",
    "QDQBertForTokenClassification",
    "QDQBertLMHeadModel",
    "QDQBertLayer",
    "QDQBertModel",
    "QDQBertPreTrainedModel",
    "QuantizerError",
    "calibrate",
    "load_tf_weights_in_qdqbert",
    "quantizer_summary",
    "quantizers",
    "set_quantization",
]
