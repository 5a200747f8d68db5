"""QDQBERT: BERT whose linears, attention matmuls and residual adds carry fake-quant nodes.

Parameter names are BERT's, so every BERT checkpoint loads. With every quantizer disabled the
model computes exactly what transformers' BERT computes (tested per head). Q/DQ placement:
QuantLinear for query/key/value/attention output/intermediate/output (input per-tensor, weight per
channel); the two inputs of Q·Kᵀ and of probs·V; both inputs of each residual add before LayerNorm.
Embeddings, LayerNorm, softmax input, pooler and task heads stay in float.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import BCEWithLogitsLoss, CrossEntropyLoss, MSELoss
from torch.nn import functional as F
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.cache_utils import Cache, DynamicCache, EncoderDecoderCache
from transformers.generation import GenerationMixin
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import (
    BaseModelOutputWithPastAndCrossAttentions,
    BaseModelOutputWithPoolingAndCrossAttentions,
    CausalLMOutputWithCrossAttentions,
    MaskedLMOutput,
    MultipleChoiceModelOutput,
    NextSentencePredictorOutput,
    QuestionAnsweringModelOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
)
from transformers.pytorch_utils import apply_chunking_to_forward
from transformers.utils import logging

from .configuration_qdqbert import QDQBertConfig
from .errors import QDQBertError
from .quant import QuantLinear, QuantMode, TensorQuantizer, quantizers

logger = logging.get_logger(__name__)


def _quant_linear(config: QDQBertConfig, in_features: int, out_features: int) -> QuantLinear:
    return QuantLinear(
        in_features, out_features, input_desc=config.input_quant_desc, weight_desc=config.weight_quant_desc
    )


def _input_quantizer(config: QDQBertConfig) -> TensorQuantizer:
    return TensorQuantizer(config.input_quant_desc)


class QDQBertEmbeddings(nn.Module):
    """Word + position + token-type embeddings, LayerNorm, dropout (not quantized)."""

    def __init__(self, config: QDQBertConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        # LayerNorm keeps BERT's CamelCase name so TensorFlow-converted checkpoints load
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.position_embedding_type = config.position_embedding_type
        self.register_buffer(
            "position_ids", torch.arange(config.max_position_embeddings).expand((1, -1)), persistent=False
        )
        self.register_buffer(
            "token_type_ids", torch.zeros(1, config.max_position_embeddings, dtype=torch.long), persistent=False
        )

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        past_key_values_length: int = 0,
    ) -> torch.Tensor:
        input_shape = input_ids.size() if input_ids is not None else inputs_embeds.size()[:-1]
        seq_length = input_shape[1]
        if position_ids is None:
            position_ids = self.position_ids[:, past_key_values_length : seq_length + past_key_values_length]
        if token_type_ids is None:
            token_type_ids = self.token_type_ids[:, :seq_length].expand(input_shape)
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)
        embeddings = inputs_embeds + self.token_type_embeddings(token_type_ids)
        if self.position_embedding_type == "absolute":
            embeddings = embeddings + self.position_embeddings(position_ids)
        return self.dropout(self.LayerNorm(embeddings))


class QDQBertSelfAttention(nn.Module):
    """Multi-head attention with quantized q/k/v projections and quantized matmul inputs.

    With every quantizer off (and no attention probabilities or head mask asked for) it runs
    PyTorch's fused scaled-dot-product attention; otherwise the explicit matmuls, so that Q/DQ can
    sit on both inputs of Q·Kᵀ and of probs·V — where TensorRT needs them to fuse INT8 attention.
    """

    def __init__(self, config: QDQBertConfig, layer_idx: int | None = None, is_cross_attention: bool = False) -> None:
        super().__init__()
        self.num_attention_heads = config.num_attention_heads
        self.attention_head_size = config.hidden_size // config.num_attention_heads
        self.all_head_size = self.num_attention_heads * self.attention_head_size
        self.query = _quant_linear(config, config.hidden_size, self.all_head_size)
        self.key = _quant_linear(config, config.hidden_size, self.all_head_size)
        self.value = _quant_linear(config, config.hidden_size, self.all_head_size)
        self.dropout = nn.Dropout(config.attention_probs_dropout_prob)
        self.position_embedding_type = config.position_embedding_type
        if self.position_embedding_type != "absolute":
            self.max_position_embeddings = config.max_position_embeddings
            self.distance_embedding = nn.Embedding(2 * config.max_position_embeddings - 1, self.attention_head_size)
        self.is_decoder = config.is_decoder
        self.is_cross_attention = is_cross_attention
        self.layer_idx = layer_idx
        self.matmul_q_input_quantizer = _input_quantizer(config)
        self.matmul_k_input_quantizer = _input_quantizer(config)
        self.matmul_v_input_quantizer = _input_quantizer(config)
        self.matmul_a_input_quantizer = _input_quantizer(config)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(*x.shape[:-1], self.num_attention_heads, self.attention_head_size).transpose(1, 2)

    def _key_value(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None,
        past_key_values: Cache | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.is_cross_attention:
            cache = past_key_values if isinstance(past_key_values, EncoderDecoderCache) else None
            if cache is not None and cache.is_updated.get(self.layer_idx):
                layer = cache.cross_attention_cache.layers[self.layer_idx]
                return layer.keys, layer.values
            key = self._heads(self.key(encoder_hidden_states))
            value = self._heads(self.value(encoder_hidden_states))
            if cache is not None:
                key, value = cache.cross_attention_cache.update(key, value, self.layer_idx)
                cache.is_updated[self.layer_idx] = True
            return key, value
        key = self._heads(self.key(hidden_states))
        value = self._heads(self.value(hidden_states))
        if past_key_values is not None:
            cache = past_key_values
            if isinstance(cache, EncoderDecoderCache):
                cache = cache.self_attention_cache
            key, value = cache.update(key, value, self.layer_idx)
        return key, value

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        head_mask: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        past_key_values: Cache | None = None,
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        query = self._heads(self.query(hidden_states))
        key, value = self._key_value(hidden_states, encoder_hidden_states, past_key_values)
        explicit = (
            output_attentions
            or head_mask is not None
            or self.position_embedding_type != "absolute"
            or any(q.mode is not QuantMode.DISABLED for q in self._matmul_quantizers())
        )
        if not explicit:
            context = F.scaled_dot_product_attention(
                query, key, value, attn_mask=attention_mask, dropout_p=self.dropout.p if self.training else 0.0
            )
            probs = None
        else:
            scores = torch.matmul(
                self.matmul_q_input_quantizer(query), self.matmul_k_input_quantizer(key.transpose(-1, -2))
            )
            if self.position_embedding_type != "absolute":
                scores = scores + self._relative_scores(query, key)
            scores = scores / math.sqrt(self.attention_head_size)
            if attention_mask is not None:
                scores = scores + attention_mask
            probs = self.dropout(F.softmax(scores, dim=-1))
            if head_mask is not None:
                probs = probs * head_mask
            context = torch.matmul(self.matmul_a_input_quantizer(probs), self.matmul_v_input_quantizer(value))
        context = context.transpose(1, 2).reshape(*hidden_states.shape[:-1], self.all_head_size)
        return context, probs if output_attentions else None

    def _matmul_quantizers(self) -> tuple[TensorQuantizer, ...]:
        return (
            self.matmul_q_input_quantizer,
            self.matmul_k_input_quantizer,
            self.matmul_v_input_quantizer,
            self.matmul_a_input_quantizer,
        )

    def _relative_scores(self, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        """Relative-position terms (Shaw et al.; Huang et al. for relative_key_query)."""
        query_length, key_length = query.shape[2], key.shape[2]
        # queries are the last `query_length` positions of the keys (so a KV cache keeps positions)
        left = torch.arange(key_length - query_length, key_length, device=query.device).view(-1, 1)
        right = torch.arange(key_length, device=query.device).view(1, -1)
        positional = self.distance_embedding(left - right + self.max_position_embeddings - 1).to(query.dtype)
        scores = torch.einsum("bhld,lrd->bhlr", query, positional)
        if self.position_embedding_type == "relative_key_query":
            scores = scores + torch.einsum("bhrd,lrd->bhlr", key, positional)
        return scores


class QDQBertResidualOutput(nn.Module):
    """dense → dropout → LayerNorm(dense_out + residual), both add inputs quantized.

    Serves as BERT's SelfOutput (hidden→hidden) and Output (intermediate→hidden)."""

    def __init__(self, config: QDQBertConfig, in_features: int) -> None:
        super().__init__()
        self.dense = _quant_linear(config, in_features, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.add_local_input_quantizer = _input_quantizer(config)
        self.add_residual_input_quantizer = _input_quantizer(config)

    def forward(self, hidden_states: torch.Tensor, input_tensor: torch.Tensor) -> torch.Tensor:
        hidden_states = self.dropout(self.dense(hidden_states))
        added = self.add_local_input_quantizer(hidden_states) + self.add_residual_input_quantizer(input_tensor)
        return self.LayerNorm(added)


class QDQBertSelfOutput(QDQBertResidualOutput):
    def __init__(self, config: QDQBertConfig) -> None:
        super().__init__(config, config.hidden_size)


class QDQBertOutput(QDQBertResidualOutput):
    def __init__(self, config: QDQBertConfig) -> None:
        super().__init__(config, config.intermediate_size)


class QDQBertAttention(nn.Module):
    def __init__(self, config: QDQBertConfig, layer_idx: int | None = None, is_cross_attention: bool = False) -> None:
        super().__init__()
        self.self = QDQBertSelfAttention(config, layer_idx=layer_idx, is_cross_attention=is_cross_attention)
        self.output = QDQBertSelfOutput(config)
        self.pruned_heads: set[int] = set()

    def prune_heads(self, heads: list[int]) -> None:
        """Remove attention heads (their q/k/v rows and output-projection columns)."""
        heads = set(heads) - self.pruned_heads
        if not heads:
            return
        attn = self.self
        # positions of the remaining heads, counted after the heads pruned earlier
        drop = {head - sum(1 for h in self.pruned_heads if h < head) for head in heads}
        size = attn.attention_head_size
        index = torch.tensor(
            [h * size + i for h in range(attn.num_attention_heads) if h not in drop for i in range(size)]
        )
        attn.query = prune_quant_linear(attn.query, index, dim=0)
        attn.key = prune_quant_linear(attn.key, index, dim=0)
        attn.value = prune_quant_linear(attn.value, index, dim=0)
        self.output.dense = prune_quant_linear(self.output.dense, index, dim=1)
        attn.num_attention_heads -= len(heads)
        attn.all_head_size = attn.attention_head_size * attn.num_attention_heads
        self.pruned_heads |= heads

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        head_mask: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        past_key_values: Cache | None = None,
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        context, probs = self.self(
            hidden_states, attention_mask, head_mask, encoder_hidden_states, past_key_values, output_attentions
        )
        return self.output(context, hidden_states), probs


def prune_quant_linear(layer: QuantLinear, index: torch.Tensor, dim: int) -> QuantLinear:
    """A smaller QuantLinear keeping `index` along `dim` (0: outputs, 1: inputs), amax included."""
    index = index.to(layer.weight.device)
    weight = layer.weight.index_select(dim, index).detach().clone()
    bias = layer.bias.detach().clone() if dim == 1 else layer.bias[index].detach().clone()
    out_features, in_features = weight.shape
    new = QuantLinear(
        in_features, out_features, input_desc=layer.input_quantizer.desc, weight_desc=layer.weight_quantizer.desc
    ).to(device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        new.weight.copy_(weight)
        new.bias.copy_(bias)
        new.input_quantizer.amax.copy_(layer.input_quantizer.amax)
        weight_amax = layer.weight_quantizer.amax
        axis = layer.weight_quantizer.desc.axis
        new.weight_quantizer.amax.copy_(weight_amax if axis is None or axis != dim else weight_amax[index])
    new.input_quantizer.mode = layer.input_quantizer.mode
    new.weight_quantizer.mode = layer.weight_quantizer.mode
    return new


class QDQBertIntermediate(nn.Module):
    def __init__(self, config: QDQBertConfig) -> None:
        super().__init__()
        self.dense = _quant_linear(config, config.hidden_size, config.intermediate_size)
        self.intermediate_act_fn = (
            ACT2FN[config.hidden_act] if isinstance(config.hidden_act, str) else config.hidden_act
        )

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.intermediate_act_fn(self.dense(hidden_states))


class QDQBertLayer(GradientCheckpointingLayer):
    def __init__(self, config: QDQBertConfig, layer_idx: int | None = None) -> None:
        super().__init__()
        self.chunk_size_feed_forward = config.chunk_size_feed_forward
        self.seq_len_dim = 1
        self.attention = QDQBertAttention(config, layer_idx=layer_idx)
        self.is_decoder = config.is_decoder
        self.add_cross_attention = config.add_cross_attention
        if self.add_cross_attention:
            if not self.is_decoder:
                raise QDQBertError("add_cross_attention=True needs is_decoder=True in the config")
            self.crossattention = QDQBertAttention(config, layer_idx=layer_idx, is_cross_attention=True)
        self.intermediate = QDQBertIntermediate(config)
        self.output = QDQBertOutput(config)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        head_mask: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        past_key_values: Cache | None = None,
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        attention_output, self_probs = self.attention(
            hidden_states,
            attention_mask,
            head_mask,
            past_key_values=past_key_values,
            output_attentions=output_attentions,
        )
        cross_probs = None
        if self.is_decoder and encoder_hidden_states is not None:
            if not hasattr(self, "crossattention"):
                raise QDQBertError(
                    "encoder_hidden_states were passed but the layers have no cross-attention; "
                    "set add_cross_attention=True in the config"
                )
            attention_output, cross_probs = self.crossattention(
                attention_output,
                encoder_attention_mask,
                head_mask,
                encoder_hidden_states,
                past_key_values=past_key_values,
                output_attentions=output_attentions,
            )
        layer_output = apply_chunking_to_forward(
            self.feed_forward_chunk, self.chunk_size_feed_forward, self.seq_len_dim, attention_output
        )
        return layer_output, self_probs, cross_probs

    def feed_forward_chunk(self, attention_output: torch.Tensor) -> torch.Tensor:
        return self.output(self.intermediate(attention_output), attention_output)


class QDQBertEncoder(nn.Module):
    def __init__(self, config: QDQBertConfig) -> None:
        super().__init__()
        self.config = config
        self.layer = nn.ModuleList([QDQBertLayer(config, layer_idx=i) for i in range(config.num_hidden_layers)])
        self.gradient_checkpointing = False

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        head_mask: list[torch.Tensor | None] | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        past_key_values: Cache | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> BaseModelOutputWithPastAndCrossAttentions:
        all_hidden = (hidden_states,) if output_hidden_states else None
        all_self = () if output_attentions else None
        all_cross = () if output_attentions and self.config.add_cross_attention else None
        for i, layer in enumerate(self.layer):
            hidden_states, self_probs, cross_probs = layer(
                hidden_states,
                attention_mask,
                head_mask[i] if head_mask is not None else None,
                encoder_hidden_states,  # positional, so gradient checkpointing passes it through
                encoder_attention_mask,
                past_key_values=past_key_values,
                output_attentions=output_attentions,
            )
            if output_hidden_states:
                all_hidden += (hidden_states,)
            if output_attentions:
                all_self += (self_probs,)
                if all_cross is not None:
                    all_cross += (cross_probs,)
        return BaseModelOutputWithPastAndCrossAttentions(
            last_hidden_state=hidden_states,
            past_key_values=past_key_values,
            hidden_states=all_hidden,
            attentions=all_self,
            cross_attentions=all_cross,
        )


class QDQBertPooler(nn.Module):
    def __init__(self, config: QDQBertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.activation = nn.Tanh()

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.activation(self.dense(hidden_states[:, 0]))


class QDQBertPredictionHeadTransform(nn.Module):
    def __init__(self, config: QDQBertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.transform_act_fn = ACT2FN[config.hidden_act] if isinstance(config.hidden_act, str) else config.hidden_act
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.transform_act_fn(self.dense(hidden_states)))


class QDQBertLMPredictionHead(nn.Module):
    def __init__(self, config: QDQBertConfig) -> None:
        super().__init__()
        self.transform = QDQBertPredictionHeadTransform(config)
        # decoder weights are tied to the input embeddings; the bias is output-only
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size, bias=True)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.transform(hidden_states))


class QDQBertOnlyMLMHead(nn.Module):
    def __init__(self, config: QDQBertConfig) -> None:
        super().__init__()
        self.predictions = QDQBertLMPredictionHead(config)

    def forward(self, sequence_output: torch.Tensor) -> torch.Tensor:
        return self.predictions(sequence_output)


class QDQBertOnlyNSPHead(nn.Module):
    def __init__(self, config: QDQBertConfig) -> None:
        super().__init__()
        self.seq_relationship = nn.Linear(config.hidden_size, 2)

    def forward(self, pooled_output: torch.Tensor) -> torch.Tensor:
        return self.seq_relationship(pooled_output)


class QDQBertPreTrainedModel(PreTrainedModel):
    """Weight init and checkpoint I/O through transformers (`from_pretrained` / `save_pretrained`)."""

    config_class = QDQBertConfig
    config: QDQBertConfig
    base_model_prefix = "bert"
    supports_gradient_checkpointing = True
    # a plain BERT checkpoint has no amax: those quantizers start uncalibrated, silently
    _keys_to_ignore_on_load_missing = [r"_quantizer\.amax$"]

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, QDQBertLMPredictionHead):
            init.zeros_(module.bias)
        elif isinstance(module, QDQBertEmbeddings):
            init.copy_(module.position_ids, torch.arange(module.position_ids.shape[-1]).expand((1, -1)))
            init.zeros_(module.token_type_ids)
        elif isinstance(module, TensorQuantizer):
            init.constant_(module.amax, math.nan)

    def post_init(self) -> None:
        super().post_init()
        quantizers(self)  # name every quantizer after its module path, for error messages
        if self.config.pruned_heads and hasattr(self, "prune_heads"):
            self.prune_heads({int(k): v for k, v in self.config.pruned_heads.items()})

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):  # noqa: D102
        from .loading import from_pretrained_checked

        return from_pretrained_checked(super().from_pretrained, cls, pretrained_model_name_or_path, *args, **kwargs)


def _extended_attention_mask(
    attention_mask: torch.Tensor | None,
    batch_size: int,
    query_length: int,
    past_length: int,
    causal: bool,
    dtype: torch.dtype,
    device: torch.device,
) -> torch.Tensor | None:
    """Additive mask broadcastable to (batch, heads, query, key): 0 to keep, dtype-min to drop."""
    if attention_mask is None and not causal:
        return None
    if attention_mask is None:
        attention_mask = torch.ones(batch_size, past_length + query_length, device=device)
    if attention_mask.dim() == 3:
        keep = attention_mask[:, None, :, :]
    elif attention_mask.dim() == 2:
        keep = attention_mask[:, None, None, :]
        if causal:
            key_pos = torch.arange(attention_mask.shape[-1], device=device)
            query_pos = torch.arange(past_length, past_length + query_length, device=device)
            keep = keep * (key_pos[None, :] <= query_pos[:, None])[None, None]
    else:
        raise QDQBertError(
            f"attention_mask has shape {tuple(attention_mask.shape)}; pass (batch, key_length) or (batch, query, key)"
        )
    return (1.0 - keep.to(dtype)) * torch.finfo(dtype).min


def _per_layer_head_mask(head_mask: torch.Tensor | None, num_layers: int, dtype: torch.dtype) -> list | None:
    """(heads,) or (layers, heads) 1/0 mask → one (1, heads, 1, 1) multiplier per layer."""
    if head_mask is None:
        return None
    if head_mask.dim() == 1:
        head_mask = head_mask.unsqueeze(0).expand(num_layers, -1)
    return [m.view(1, -1, 1, 1).to(dtype) for m in head_mask]


class QDQBertModel(QDQBertPreTrainedModel):
    """The bare encoder (and decoder, with is_decoder / add_cross_attention) with an optional pooler."""

    def __init__(self, config: QDQBertConfig, add_pooling_layer: bool = True) -> None:
        super().__init__(config)
        self.embeddings = QDQBertEmbeddings(config)
        self.encoder = QDQBertEncoder(config)
        self.pooler = QDQBertPooler(config) if add_pooling_layer else None
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embeddings.word_embeddings = value

    def prune_heads(self, heads_to_prune: dict[int, list[int]]) -> None:
        """Remove heads: {layer index: [head indices]}; recorded in config.pruned_heads."""
        pruned = dict(self.config.pruned_heads or {})
        for layer, heads in heads_to_prune.items():
            self.encoder.layer[layer].attention.prune_heads(heads)
            pruned[str(layer)] = sorted(set(pruned.get(str(layer), [])) | set(heads))
        self.config.pruned_heads = pruned

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        head_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        past_key_values: Cache | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> tuple | BaseModelOutputWithPoolingAndCrossAttentions:
        config = self.config
        output_attentions = config.output_attentions if output_attentions is None else output_attentions
        output_hidden_states = config.output_hidden_states if output_hidden_states is None else output_hidden_states
        return_dict = config.return_dict if return_dict is None else return_dict
        use_cache = (config.use_cache if use_cache is None else use_cache) and config.is_decoder
        if (input_ids is None) == (inputs_embeds is None):
            raise QDQBertError("pass exactly one of input_ids or inputs_embeds")
        batch_size, seq_length = input_ids.shape if input_ids is not None else inputs_embeds.shape[:2]
        device = input_ids.device if input_ids is not None else inputs_embeds.device

        if use_cache and past_key_values is None:
            past_key_values = (
                EncoderDecoderCache(DynamicCache(), DynamicCache())
                if encoder_hidden_states is not None
                else DynamicCache()
            )
        past_length = past_key_values.get_seq_length() if past_key_values is not None else 0

        embedding_output = self.embeddings(input_ids, token_type_ids, position_ids, inputs_embeds, past_length)
        dtype = embedding_output.dtype
        extended_mask = _extended_attention_mask(
            attention_mask, batch_size, seq_length, past_length, config.is_decoder, dtype, device
        )
        encoder_extended_mask = None
        if config.is_decoder and encoder_hidden_states is not None:
            if encoder_attention_mask is None:
                encoder_attention_mask = torch.ones(encoder_hidden_states.shape[:2], device=device)
            encoder_extended_mask = _extended_attention_mask(
                encoder_attention_mask, batch_size, seq_length, 0, False, dtype, device
            )

        encoder_outputs = self.encoder(
            embedding_output,
            attention_mask=extended_mask,
            head_mask=_per_layer_head_mask(head_mask, config.num_hidden_layers, dtype),
            encoder_hidden_states=encoder_hidden_states,
            encoder_attention_mask=encoder_extended_mask,
            past_key_values=past_key_values,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )
        sequence_output = encoder_outputs.last_hidden_state
        output = BaseModelOutputWithPoolingAndCrossAttentions(
            last_hidden_state=sequence_output,
            pooler_output=self.pooler(sequence_output) if self.pooler is not None else None,
            past_key_values=past_key_values if use_cache else None,
            hidden_states=encoder_outputs.hidden_states,
            attentions=encoder_outputs.attentions,
            cross_attentions=encoder_outputs.cross_attentions,
        )
        return output if return_dict else output.to_tuple()


class QDQBertLMHeadModel(QDQBertPreTrainedModel, GenerationMixin):
    """Causal LM head (decoder use: config.is_decoder=True), with KV cache and generate()."""

    _tied_weights_keys = {
        "cls.predictions.decoder.weight": "bert.embeddings.word_embeddings.weight",
        "cls.predictions.decoder.bias": "cls.predictions.bias",
    }

    def __init__(self, config: QDQBertConfig) -> None:
        super().__init__(config)
        if not config.is_decoder:
            logger.warning("QDQBertLMHeadModel is a decoder: set is_decoder=True in the config to use it standalone")
        self.bert = QDQBertModel(config, add_pooling_layer=False)
        self.cls = QDQBertOnlyMLMHead(config)
        self.post_init()

    def get_output_embeddings(self) -> nn.Linear:
        return self.cls.predictions.decoder

    def set_output_embeddings(self, new_embeddings: nn.Linear) -> None:
        self.cls.predictions.decoder = new_embeddings
        self.cls.predictions.bias = new_embeddings.bias

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        head_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        past_key_values: Cache | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> tuple | CausalLMOutputWithCrossAttentions:
        if labels is not None:
            use_cache = False
        outputs = self.bert(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            head_mask=head_mask,
            inputs_embeds=inputs_embeds,
            encoder_hidden_states=encoder_hidden_states,
            encoder_attention_mask=encoder_attention_mask,
            past_key_values=past_key_values,
            use_cache=use_cache,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        logits = self.cls(outputs.last_hidden_state)
        loss = None
        if labels is not None:
            # next-token prediction: logits at t predict the label at t+1
            shifted = logits[:, :-1, :].contiguous()
            loss = CrossEntropyLoss()(shifted.view(-1, self.config.vocab_size), labels[:, 1:].contiguous().view(-1))
        output = CausalLMOutputWithCrossAttentions(
            loss=loss,
            logits=logits,
            past_key_values=outputs.past_key_values,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            cross_attentions=outputs.cross_attentions,
        )
        return output if (self.config.return_dict if return_dict is None else return_dict) else output.to_tuple()

    def prepare_inputs_for_generation(
        self,
        input_ids: torch.Tensor,
        past_key_values: Cache | None = None,
        attention_mask: torch.Tensor | None = None,
        use_cache: bool = True,
        **kwargs,
    ) -> dict:
        """Feed only the tokens the cache has not seen; the mask always covers all of them."""
        if attention_mask is None:
            attention_mask = input_ids.new_ones(input_ids.shape)
        if past_key_values is not None:
            past_length = past_key_values.get_seq_length()
            if past_length > 0:
                input_ids = input_ids[:, min(past_length, input_ids.shape[1] - 1) :]
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "past_key_values": past_key_values,
            "use_cache": use_cache,
            "encoder_hidden_states": kwargs.get("encoder_hidden_states"),
            "encoder_attention_mask": kwargs.get("encoder_attention_mask"),
        }

    @staticmethod
    def _reorder_cache(past_key_values: Cache | tuple, beam_idx: torch.Tensor) -> Cache | tuple:
        """Reorder the KV cache along the batch for beam search."""
        if isinstance(past_key_values, Cache):
            past_key_values.reorder_cache(beam_idx)
            return past_key_values
        return tuple(
            tuple(state.index_select(0, beam_idx.to(state.device)) for state in layer) for layer in past_key_values
        )


class _HeadModel(QDQBertPreTrainedModel):
    """Shared body of the task heads: run the encoder, finish the output as dict or tuple.

    Heads name the inputs every caller uses; the encoder's other options (position_ids, head_mask,
    inputs_embeds, output_attentions, output_hidden_states) pass through `encoder_kwargs`."""

    def _encode(
        self, input_ids, attention_mask, token_type_ids, encoder_kwargs: dict
    ) -> BaseModelOutputWithPoolingAndCrossAttentions:
        unknown = sorted(set(encoder_kwargs) - _ENCODER_OPTIONS)
        if unknown:
            raise QDQBertError(f"{type(self).__name__}.forward got unexpected argument(s) {unknown}")
        return self.bert(
            input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids, return_dict=True, **encoder_kwargs
        )

    def _finish(self, output, return_dict: bool | None):
        """Dict output, or BERT's tuple (None fields dropped) when return_dict is False."""
        return output if (self.config.return_dict if return_dict is None else return_dict) else output.to_tuple()


_ENCODER_OPTIONS = {"position_ids", "head_mask", "inputs_embeds", "output_attentions", "output_hidden_states"}


class QDQBertForMaskedLM(_HeadModel):
    _tied_weights_keys = QDQBertLMHeadModel._tied_weights_keys

    def __init__(self, config: QDQBertConfig) -> None:
        super().__init__(config)
        if config.is_decoder:
            logger.warning("QDQBertForMaskedLM attends both ways: set is_decoder=False in the config")
        self.bert = QDQBertModel(config, add_pooling_layer=False)
        self.cls = QDQBertOnlyMLMHead(config)
        self.post_init()

    get_output_embeddings = QDQBertLMHeadModel.get_output_embeddings
    set_output_embeddings = QDQBertLMHeadModel.set_output_embeddings

    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                return_dict: bool | None = None, **encoder_kwargs) -> tuple | MaskedLMOutput:  # fmt: skip
        outputs = self._encode(input_ids, attention_mask, token_type_ids, encoder_kwargs)
        logits = self.cls(outputs.last_hidden_state)
        loss = None
        if labels is not None:
            loss = CrossEntropyLoss()(logits.view(-1, self.config.vocab_size), labels.view(-1))  # -100 ignored
        output = MaskedLMOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )
        return self._finish(output, return_dict)


class QDQBertForNextSentencePrediction(_HeadModel):
    def __init__(self, config: QDQBertConfig) -> None:
        super().__init__(config)
        self.bert = QDQBertModel(config)
        self.cls = QDQBertOnlyNSPHead(config)
        self.post_init()

    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                return_dict: bool | None = None, **encoder_kwargs) -> tuple | NextSentencePredictorOutput:  # fmt: skip
        outputs = self._encode(input_ids, attention_mask, token_type_ids, encoder_kwargs)
        logits = self.cls(outputs.pooler_output)
        loss = CrossEntropyLoss()(logits.view(-1, 2), labels.view(-1)) if labels is not None else None
        output = NextSentencePredictorOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )
        return self._finish(output, return_dict)


def _classifier_dropout(config: QDQBertConfig) -> nn.Dropout:
    rate = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
    return nn.Dropout(rate)


class QDQBertForSequenceClassification(_HeadModel):
    """Pooled [CLS] → linear: regression (num_labels=1), single- or multi-label classification."""

    def __init__(self, config: QDQBertConfig) -> None:
        super().__init__(config)
        self.num_labels = config.num_labels
        self.bert = QDQBertModel(config)
        self.dropout = _classifier_dropout(config)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                return_dict: bool | None = None, **encoder_kwargs) -> tuple | SequenceClassifierOutput:  # fmt: skip
        outputs = self._encode(input_ids, attention_mask, token_type_ids, encoder_kwargs)
        logits = self.classifier(self.dropout(outputs.pooler_output))
        loss = self._loss(logits, labels) if labels is not None else None
        output = SequenceClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )
        return self._finish(output, return_dict)

    def _loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.config.problem_type is None:
            if self.num_labels == 1:
                self.config.problem_type = "regression"
            elif labels.dtype in (torch.long, torch.int):
                self.config.problem_type = "single_label_classification"
            else:
                self.config.problem_type = "multi_label_classification"
        if self.config.problem_type == "regression":
            if self.num_labels == 1:
                return MSELoss()(logits.squeeze(), labels.squeeze())
            return MSELoss()(logits, labels)
        if self.config.problem_type == "single_label_classification":
            return CrossEntropyLoss()(logits.view(-1, self.num_labels), labels.view(-1))
        return BCEWithLogitsLoss()(logits, labels)


class QDQBertForMultipleChoice(_HeadModel):
    """Inputs (batch, choices, seq) → one score per choice."""

    def __init__(self, config: QDQBertConfig) -> None:
        super().__init__(config)
        self.bert = QDQBertModel(config)
        self.dropout = _classifier_dropout(config)
        self.classifier = nn.Linear(config.hidden_size, 1)
        self.post_init()

    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                return_dict: bool | None = None, **encoder_kwargs) -> tuple | MultipleChoiceModelOutput:  # fmt: skip
        embeds = encoder_kwargs.get("inputs_embeds")
        num_choices = input_ids.shape[1] if input_ids is not None else embeds.shape[1]

        def flat(t: torch.Tensor | None) -> torch.Tensor | None:
            """(batch, choices, ...) → (batch·choices, ...)."""
            return None if t is None else t.reshape(-1, *t.shape[2:])

        for name in ("position_ids", "inputs_embeds"):
            if name in encoder_kwargs:
                encoder_kwargs[name] = flat(encoder_kwargs[name])
        outputs = self._encode(flat(input_ids), flat(attention_mask), flat(token_type_ids), encoder_kwargs)
        logits = self.classifier(self.dropout(outputs.pooler_output)).view(-1, num_choices)
        loss = CrossEntropyLoss()(logits, labels) if labels is not None else None
        output = MultipleChoiceModelOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )
        return self._finish(output, return_dict)


class QDQBertForTokenClassification(_HeadModel):
    """One label per token (NER, POS)."""

    def __init__(self, config: QDQBertConfig) -> None:
        super().__init__(config)
        self.num_labels = config.num_labels
        self.bert = QDQBertModel(config, add_pooling_layer=False)
        self.dropout = _classifier_dropout(config)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                return_dict: bool | None = None, **encoder_kwargs) -> tuple | TokenClassifierOutput:  # fmt: skip
        outputs = self._encode(input_ids, attention_mask, token_type_ids, encoder_kwargs)
        logits = self.classifier(self.dropout(outputs.last_hidden_state))
        loss = None
        if labels is not None:
            loss = CrossEntropyLoss()(logits.view(-1, self.num_labels), labels.view(-1))
        output = TokenClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )
        return self._finish(output, return_dict)


class QDQBertForQuestionAnswering(_HeadModel):
    """Extractive QA: start and end logits per token (SQuAD)."""

    def __init__(self, config: QDQBertConfig) -> None:
        super().__init__(config)
        self.num_labels = config.num_labels
        self.bert = QDQBertModel(config, add_pooling_layer=False)
        self.qa_outputs = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, start_positions: torch.Tensor | None = None,
                end_positions: torch.Tensor | None = None, return_dict: bool | None = None,
                **encoder_kwargs) -> tuple | QuestionAnsweringModelOutput:  # fmt: skip
        outputs = self._encode(input_ids, attention_mask, token_type_ids, encoder_kwargs)
        logits = self.qa_outputs(outputs.last_hidden_state)
        start_logits, end_logits = (t.squeeze(-1).contiguous() for t in logits.split(1, dim=-1))
        loss = None
        if start_positions is not None and end_positions is not None:
            # positions outside the sequence (answer truncated away) are ignored
            ignored = start_logits.size(1)
            start = start_positions.reshape(-1).clamp(0, ignored)
            end = end_positions.reshape(-1).clamp(0, ignored)
            loss_fct = CrossEntropyLoss(ignore_index=ignored)
            loss = (loss_fct(start_logits, start) + loss_fct(end_logits, end)) / 2
        output = QuestionAnsweringModelOutput(
            loss=loss,
            start_logits=start_logits,
            end_logits=end_logits,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )
        return self._finish(output, return_dict)
