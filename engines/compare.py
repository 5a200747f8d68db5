"""Parity: how far a candidate's outputs are from a reference's, per output and by task agreement.

Agreement metrics (task-level, what a user of the outputs would notice):
  span          QA: same best answer span (start ≤ end, at most 30 tokens, on real tokens)
  argmax        classification / multiple choice / next sentence: same predicted class
  token_argmax  token classification / masked LM: same argmax on every real token
  cosine        embeddings: cosine of mean-pooled last hidden states
Tolerances per precision (documented defaults for a pass/fail line; the numbers are always reported):
  fp32 ≤ 1e-4 max abs vs the model exported; int8 vs eager fake-quant ≤ 1e-2; fp16 ≤ 1e-2.
"""

from __future__ import annotations

from typing import Any

import numpy as np

TOLERANCES = {"fp32": 1e-4, "fp16": 1e-2, "int8": 1e-2}
MAX_ANSWER_TOKENS = 30


def best_spans(start: np.ndarray, end: np.ndarray, mask: np.ndarray | None) -> list[tuple[int, int]]:
    """Per example, the (start, end) maximizing start_logit + end_logit with start ≤ end < start+30."""
    spans = []
    for i in range(start.shape[0]):
        s, e = start[i].astype(np.float64), end[i].astype(np.float64)
        if mask is not None:
            s = np.where(mask[i] > 0, s, -np.inf)
            e = np.where(mask[i] > 0, e, -np.inf)
        scores = s[:, None] + e[None, :]
        n = len(s)
        valid = np.triu(np.ones((n, n), dtype=bool)) & ~np.triu(np.ones((n, n), dtype=bool), MAX_ANSWER_TOKENS)
        scores = np.where(valid, scores, -np.inf)
        spans.append(tuple(int(v) for v in np.unravel_index(np.argmax(scores), scores.shape)))
    return spans


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    denom = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / denom) if denom else float(np.array_equal(a, b))


def agreement(kind: str, ref: dict[str, np.ndarray], cand: dict[str, np.ndarray], mask: np.ndarray | None) -> float:
    """Fraction of examples (or tokens) on which candidate and reference agree; cosine for embeddings."""
    if kind == "span":
        a = best_spans(ref["start_logits"], ref["end_logits"], mask)
        b = best_spans(cand["start_logits"], cand["end_logits"], mask)
        return float(np.mean([x == y for x, y in zip(a, b)]))
    logits_ref, logits_cand = ref[next(iter(ref))], cand[next(iter(ref))]
    if kind == "argmax":
        return float(np.mean(logits_ref.argmax(-1) == logits_cand.argmax(-1)))
    if kind == "token_argmax":
        same = logits_ref.argmax(-1) == logits_cand.argmax(-1)
        return float(same[mask > 0].mean()) if mask is not None else float(same.mean())
    if kind == "cosine":
        weights = mask[..., None].astype(np.float64) if mask is not None else 1.0
        pooled_ref = (logits_ref * weights).sum(1) / np.maximum(np.sum(weights, 1), 1e-9)
        pooled_cand = (logits_cand * weights).sum(1) / np.maximum(np.sum(weights, 1), 1e-9)
        return float(min(_cosine(r, c) for r, c in zip(pooled_ref, pooled_cand)))
    raise ValueError(f"unknown agreement metric {kind!r}")


def compare(
    reference: dict[str, np.ndarray],
    candidate: dict[str, np.ndarray],
    agreement_kind: str,
    attention_mask: np.ndarray | None = None,
) -> dict[str, Any]:
    """Per output: max abs, mean abs, cosine; plus the task agreement over all examples."""
    outputs = {}
    for name, ref in reference.items():
        cand = candidate[name]
        if ref.shape != cand.shape:
            outputs[name] = {"error": f"shape {cand.shape} vs reference {ref.shape}"}
            continue
        diff = np.abs(ref.astype(np.float64) - cand.astype(np.float64))
        outputs[name] = {"max_abs": float(diff.max()), "mean_abs": float(diff.mean()), "cosine": _cosine(ref, cand)}
    return {"outputs": outputs, "agreement": {"metric": agreement_kind,
            "value": agreement(agreement_kind, reference, candidate, attention_mask)}}  # fmt: skip


def concat_outputs(chunks: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Join per-batch outputs along the batch axis, padding sequence axes to the longest batch."""
    result = {}
    for name in chunks[0]:
        arrays = [c[name] for c in chunks]
        if arrays[0].ndim >= 2 and len({a.shape[1] for a in arrays}) > 1 and name != "pooler_output":
            width = max(a.shape[1] for a in arrays)
            arrays = [np.pad(a, [(0, 0), (0, width - a.shape[1])] + [(0, 0)] * (a.ndim - 2)) for a in arrays]
        result[name] = np.concatenate(arrays, 0)
    return result


def tolerance_check(
    reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray], precision: str
) -> dict[str, Any]:
    """Polygraphy's comparator (`SimpleCompareFunc`, max-error statistic) with this precision's
    absolute tolerance: the same pass/fail semantics a Polygraphy user gets from `polygraphy run`.
    Returns {"atol", "passed", "outputs": {name: passed}} or {"skipped": reason}."""
    try:
        from polygraphy.comparator import SimpleCompareFunc
        from polygraphy.comparator.struct import IterationResult
        from polygraphy.logger import G_LOGGER
    except ImportError:
        return {"skipped": "polygraphy is not installed: pip install 'qdqbert-trt[onnx]'"}
    atol = TOLERANCES[precision]
    severity = G_LOGGER.module_severity
    G_LOGGER.module_severity = G_LOGGER.CRITICAL  # its per-output histograms are for terminals, not reports
    try:
        compare_func = SimpleCompareFunc(atol=atol, rtol=0.0, check_error_stat="max")
        result = compare_func(IterationResult(outputs=reference, runner_name="reference"),
                              IterationResult(outputs=candidate, runner_name="candidate"))  # fmt: skip
    finally:
        G_LOGGER.module_severity = severity
    outputs = {name: bool(value) for name, value in result.items()}
    return {"atol": atol, "passed": all(outputs.values()), "outputs": outputs}
