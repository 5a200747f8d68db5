"""With quantizers disabled QDQBERT is BERT: every head matches transformers on padded batches."""

import pytest
import torch
import transformers

import qdqbert
from qdqbert import quantizers, set_quantization
from tests.conftest import padded_batch, tiny_config

HEADS = [
    ("QDQBertModel", "BertModel", {}),
    ("QDQBertForMaskedLM", "BertForMaskedLM", {}),
    ("QDQBertForNextSentencePrediction", "BertForNextSentencePrediction", {}),
    ("QDQBertForSequenceClassification", "BertForSequenceClassification", {"num_labels": 3}),
    ("QDQBertForTokenClassification", "BertForTokenClassification", {"num_labels": 5}),
    ("QDQBertForQuestionAnswering", "BertForQuestionAnswering", {}),
    ("QDQBertForMultipleChoice", "BertForMultipleChoice", {}),
    ("QDQBertLMHeadModel", "BertLMHeadModel", {"is_decoder": True}),
]


def _pair(ours: str, theirs: str, overrides: dict, tmp_path, attn="sdpa"):
    torch.manual_seed(0)
    config = transformers.BertConfig(**tiny_config(**overrides).to_dict() | {"model_type": "bert"})
    hf = getattr(transformers, theirs)(config).eval()
    hf.save_pretrained(tmp_path)
    hf = getattr(transformers, theirs).from_pretrained(tmp_path, attn_implementation=attn).eval()
    model = getattr(qdqbert, ours).from_pretrained(tmp_path).eval()
    set_quantization(model, False)
    return model, hf


def _inputs(ours: str) -> dict:
    batch = padded_batch()
    if ours == "QDQBertForMultipleChoice":  # (batch, choices, seq)
        return {k: torch.stack([v, v.roll(1, 0)], 1) for k, v in batch.items()}
    return batch


@pytest.mark.parametrize("ours,theirs,overrides", HEADS, ids=[h[0] for h in HEADS])
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_head_matches_transformers(ours, theirs, overrides, attn, tmp_path):
    model, hf = _pair(ours, theirs, overrides, tmp_path, attn)
    inputs = _inputs(ours)
    with torch.no_grad():
        got, want = model(**inputs), hf(**inputs)
    keys = [k for k in want.keys() if k not in ("past_key_values",)]
    assert keys
    for key in keys:
        torch.testing.assert_close(got[key], want[key], atol=1e-5, rtol=1e-5, msg=f"{ours}.{key}")
    # the explicit-matmul path (used when quantizing) computes the same as the fused one
    with torch.no_grad():
        explicit = model(**inputs, output_attentions=True)
    for key in keys:
        torch.testing.assert_close(explicit[key], want[key], atol=1e-5, rtol=1e-5)


def test_losses_match_transformers(tmp_path):
    model, hf = _pair("QDQBertForQuestionAnswering", "BertForQuestionAnswering", {}, tmp_path)
    batch = padded_batch() | {"start_positions": torch.tensor([1, 2, 3]), "end_positions": torch.tensor([2, 5, 40])}
    torch.testing.assert_close(model(**batch).loss, hf(**batch).loss)


@pytest.mark.parametrize("labels,problem", [
    (torch.tensor([0, 2, 1]), "single_label_classification"),
    (torch.tensor([[0.0, 1, 1], [1, 0, 0], [0, 0, 1]]), "multi_label_classification"),
])  # fmt: skip
def test_sequence_classification_losses(labels, problem, tmp_path):
    model, hf = _pair("QDQBertForSequenceClassification", "BertForSequenceClassification", {"num_labels": 3}, tmp_path)
    batch = padded_batch() | {"labels": labels}
    torch.testing.assert_close(model(**batch).loss, hf(**batch).loss)
    assert model.config.problem_type == problem


def test_regression_loss(tmp_path):
    model, hf = _pair("QDQBertForSequenceClassification", "BertForSequenceClassification", {"num_labels": 1}, tmp_path)
    batch = padded_batch() | {"labels": torch.tensor([0.5, -1.0, 2.0])}
    torch.testing.assert_close(model(**batch).loss, hf(**batch).loss)


def test_cross_attention_decoder_matches_transformers(tmp_path):
    model, hf = _pair(
        "QDQBertLMHeadModel", "BertLMHeadModel", {"is_decoder": True, "add_cross_attention": True}, tmp_path
    )
    batch = padded_batch()
    encoder_states = torch.randn(3, 5, 32)
    encoder_mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 0, 0, 0]])
    kwargs = dict(encoder_hidden_states=encoder_states, encoder_attention_mask=encoder_mask, use_cache=False)
    with torch.no_grad():
        torch.testing.assert_close(model(**batch, **kwargs).logits, hf(**batch, **kwargs).logits, atol=1e-5, rtol=1e-5)


def test_kv_cache_and_generation_match_transformers(tmp_path):
    model, hf = _pair("QDQBertLMHeadModel", "BertLMHeadModel", {"is_decoder": True}, tmp_path)
    prompt = torch.tensor([[5, 17, 42, 8]])
    kwargs = dict(max_new_tokens=6, do_sample=False, pad_token_id=0)
    assert model.generate(prompt, **kwargs).tolist() == hf.generate(prompt, **kwargs).tolist()
    # incremental decoding with the cache equals a full forward
    with torch.no_grad():
        full = model(prompt, use_cache=False).logits
        first = model(prompt[:, :3], use_cache=True)
        step = model(prompt[:, 3:], past_key_values=first.past_key_values, use_cache=True)
    torch.testing.assert_close(step.logits[:, -1], full[:, -1], atol=1e-5, rtol=1e-5)


def test_beam_search_reorders_cache(tmp_path):
    model, hf = _pair("QDQBertLMHeadModel", "BertLMHeadModel", {"is_decoder": True}, tmp_path)
    prompt = torch.tensor([[5, 17, 42, 8]])
    kwargs = dict(max_new_tokens=4, num_beams=3, do_sample=False, pad_token_id=0)
    assert model.generate(prompt, **kwargs).tolist() == hf.generate(prompt, **kwargs).tolist()


def test_tuple_return_hidden_states_and_attentions():
    torch.manual_seed(0)
    model = qdqbert.QDQBertModel(tiny_config()).eval()
    set_quantization(model, False)
    batch = padded_batch()
    out = model(**batch, output_hidden_states=True, output_attentions=True)
    assert len(out.hidden_states) == 3 and len(out.attentions) == 2
    assert out.attentions[0].shape == (3, 4, 11, 11)
    # padded keys get no attention
    assert out.attentions[0][2, :, :, 4:].abs().max() == 0
    as_tuple = model(**batch, return_dict=False)
    assert isinstance(as_tuple, tuple) and len(as_tuple) == 2
    torch.testing.assert_close(as_tuple[0], out.last_hidden_state)


def test_head_mask_zeroes_heads():
    torch.manual_seed(0)
    model = qdqbert.QDQBertModel(tiny_config()).eval()
    set_quantization(model, False)
    head_mask = torch.ones(2, 4)
    head_mask[0, 1] = 0
    out = model(**padded_batch(), head_mask=head_mask, output_attentions=True)
    assert out.attentions[0][:, 1].abs().max() == 0 and out.attentions[0][:, 0].abs().max() > 0


def test_prune_heads_keeps_other_heads_and_reloads(tmp_path):
    torch.manual_seed(0)
    model = qdqbert.QDQBertModel(tiny_config()).eval()
    set_quantization(model, False)
    batch = padded_batch()
    mask = torch.ones(2, 4)
    mask[0, [0, 2]] = 0
    with torch.no_grad():
        masked = model(**batch, head_mask=mask).last_hidden_state
        model.prune_heads({0: [0, 2]})
        pruned = model(**batch).last_hidden_state
    assert model.encoder.layer[0].attention.self.query.weight.shape == (16, 32)
    torch.testing.assert_close(pruned, masked, atol=1e-5, rtol=1e-5)
    model.save_pretrained(tmp_path)
    reloaded = qdqbert.QDQBertModel.from_pretrained(tmp_path).eval()
    set_quantization(reloaded, False)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**batch).last_hidden_state, pruned)


@pytest.mark.parametrize("kind", ["relative_key", "relative_key_query"])
def test_relative_positions(kind):
    torch.manual_seed(0)
    model = qdqbert.QDQBertLMHeadModel(tiny_config(position_embedding_type=kind, is_decoder=True)).eval()
    set_quantization(model, False)
    ids = torch.tensor([[5, 17, 42, 8, 9]])
    with torch.no_grad():
        full = model(ids, use_cache=False).logits
        # shifting every token by one position changes nothing but the distances, which stay equal
        first = model(ids[:, :4], use_cache=True)
        step = model(ids[:, 4:], past_key_values=first.past_key_values, use_cache=True).logits
    torch.testing.assert_close(step[:, -1], full[:, -1], atol=1e-5, rtol=1e-5)
    assert model.bert.encoder.layer[0].attention.self.distance_embedding.num_embeddings == 2 * 64 - 1
    # relative positions are invariant to where the sequence starts (no absolute embedding added)
    enc = qdqbert.QDQBertModel(tiny_config(position_embedding_type=kind)).eval()
    set_quantization(enc, False)
    with torch.no_grad():
        a = enc(ids, position_ids=torch.arange(5)[None]).last_hidden_state
        b = enc(ids, position_ids=torch.arange(5)[None] + 7).last_hidden_state
    torch.testing.assert_close(a, b)


def test_gradient_checkpointing_gives_same_gradients():
    torch.manual_seed(0)
    model = qdqbert.QDQBertForSequenceClassification(tiny_config(num_labels=2))
    set_quantization(model, False)
    batch = padded_batch() | {"labels": torch.tensor([0, 1, 1])}
    model.train()
    model(**batch).loss.backward()
    plain = model.bert.encoder.layer[0].attention.self.query.weight.grad.clone()
    model.zero_grad()
    model.activation_checkpointing_enable()
    assert model.bert.encoder.layer[0].gradient_checkpointing
    model(**batch).loss.backward()
    torch.testing.assert_close(model.bert.encoder.layer[0].attention.self.query.weight.grad, plain)


def test_quantizer_placement_twenty_per_layer():
    model = qdqbert.QDQBertForQuestionAnswering(tiny_config(num_hidden_layers=3))
    names = list(quantizers(model))
    assert len(names) == 3 * 20
    layer0 = sorted(n.removeprefix("bert.encoder.layer.0.") for n in names if n.startswith("bert.encoder.layer.0."))
    assert layer0 == sorted(
        [f"attention.self.{p}.{q}" for p in ("query", "key", "value") for q in ("input_quantizer", "weight_quantizer")]
        + [f"attention.self.matmul_{x}_input_quantizer" for x in "qkva"]
        + [
            f"{m}.dense.{q}"
            for m in ("attention.output", "intermediate", "output")
            for q in ("input_quantizer", "weight_quantizer")
        ]
        + [f"{m}.add_{x}_input_quantizer" for m in ("attention.output", "output") for x in ("local", "residual")]
    )
    # embeddings, pooler and heads stay float
    assert not any("embeddings" in n or "qa_outputs" in n or "pooler" in n for n in names)


@pytest.mark.parametrize("kind", ["relative_key", "relative_key_query"])
def test_relative_attention_scores_match_a_loop_reference(kind):
    """Shaw et al. / Huang et al. scores written out element by element (transformers 5 dropped these
    position types, so the reference is the formula itself)."""
    from qdqbert.modeling_qdqbert import QDQBertSelfAttention

    torch.manual_seed(0)
    config = tiny_config(position_embedding_type=kind, max_position_embeddings=16)
    attn = QDQBertSelfAttention(config).eval()
    set_quantization(attn, False)
    x = torch.randn(1, 5, 32)
    with torch.no_grad():
        _, probs = attn(x, output_attentions=True)
        q, k = attn._heads(attn.query(x)), attn._heads(attn.key(x))
        table = attn.distance_embedding.weight
    expected = torch.zeros(1, 4, 5, 5)
    for h in range(4):
        for i in range(5):
            for j in range(5):
                rel = table[i - j + 16 - 1]
                score = q[0, h, i] @ k[0, h, j] + q[0, h, i] @ rel
                if kind == "relative_key_query":
                    score = score + k[0, h, j] @ rel
                expected[0, h, i, j] = score / (32 // 4) ** 0.5
    torch.testing.assert_close(probs, expected.softmax(-1), atol=1e-6, rtol=1e-5)
