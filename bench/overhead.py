"""QDQBERT's own costs on a BERT-base-shaped random model: calibration time per method, and eager
forward time with quantization off (vs transformers BERT) and with fake quant on.

Ratios are measured side by side in one process (interleaved rounds, medians), so a shared, noisy
machine affects both sides alike."""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch

BERT_BASE = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072)


def _inputs(batch: int, seq: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, 30000, (batch, seq), generator=g)
    mask = torch.ones(batch, seq, dtype=torch.long)
    mask[batch // 2 :, seq * 3 // 4 :] = 0
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}


def models(shape: dict[str, int] | None = None):
    """(transformers BertModel, QDQBertModel) with identical random weights."""
    import transformers

    import qdqbert

    torch.manual_seed(0)
    config = transformers.BertConfig(**(shape or BERT_BASE))
    hf = transformers.BertModel(config).eval()
    ours = qdqbert.QDQBertModel(qdqbert.QDQBertConfig(**config.to_dict())).eval()
    ours.load_state_dict(hf.state_dict(), strict=False)
    return hf, ours


def calibration_times(batches: int = 4, batch: int = 8, seq: int = 128, progress: bool = True) -> dict[str, Any]:
    """Seconds per calibrator: the forward passes collecting statistics plus computing every amax."""
    import qdqbert
    from qdqbert.quant import CALIB_METHODS, QuantMode

    _, model = models()
    data = [_inputs(batch, seq, seed=i) for i in range(batches)]
    results = {}
    for method in CALIB_METHODS:
        for q in qdqbert.quantizers(model).values():
            q.mode = QuantMode.QUANTIZE
        start = time.perf_counter()
        qdqbert.calibrate(model, data, method=method, progress=progress)
        results[method] = round(time.perf_counter() - start, 2)
    histograms = sum(1 for q in qdqbert.quantizers(model).values() if q.desc.calib_method == "histogram")
    return {"seconds": results, "histograms": histograms, "batches": batches, "shape": [batch, seq],
            "threads": torch.get_num_threads()}  # fmt: skip


def eager_ratios(batch: int = 1, seq: int = 128, rounds: int = 15) -> dict[str, Any]:
    """Median forward times, interleaved: transformers BERT, QDQBERT quant off, QDQBERT fake quant."""
    import qdqbert

    hf, ours = models()
    x = _inputs(batch, seq)
    quantized = qdqbert.QDQBertModel(ours.config).eval()
    quantized.load_state_dict(ours.state_dict())
    qdqbert.calibrate(quantized, [x], progress=False)
    qdqbert.set_quantization(ours, False)
    times: dict[str, list[float]] = {"transformers": [], "qdqbert_off": [], "qdqbert_fake_quant": []}
    runs = {"transformers": hf, "qdqbert_off": ours, "qdqbert_fake_quant": quantized}
    with torch.inference_mode():
        for model in runs.values():
            model(**x)
        for _ in range(rounds):
            for name, model in runs.items():
                start = time.perf_counter()
                model(**x)
                times[name].append((time.perf_counter() - start) * 1000)
    median = {k: statistics.median(v) for k, v in times.items()}
    return {"median_ms": {k: round(v, 2) for k, v in median.items()},
            "off_vs_transformers": round(median["qdqbert_off"] / median["transformers"], 3),
            "fake_quant_vs_transformers": round(median["qdqbert_fake_quant"] / median["transformers"], 3),
            "shape": [batch, seq], "rounds": rounds, "threads": torch.get_num_threads()}  # fmt: skip
