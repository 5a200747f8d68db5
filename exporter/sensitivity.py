"""Which quantizers cost the most accuracy: a sweep that leaves one quantizer role in float at a time.

A role is one quantizer position repeated in every encoder layer (e.g. the FFN output's residual-add
input). NVIDIA's advice for BERT INT8: sweep, then keep the few layers that hurt in float (or clip
them, or fine-tune with QAT). The sweep runs on a few evaluation batches, so it costs a few forward
passes per role.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from engines import compare
from qdqbert import quantizers
from qdqbert.quant import QuantMode

_LAYER = re.compile(r"\.layer\.\d+\.")


def glob_regex(pattern: str) -> re.Pattern:
    """--skip-quant globs on dotted names: `*` stays within one part, `**` crosses dots, `?` is one
    character. So `bert.encoder.layer.*.output.add_local_input_quantizer` matches the FFN output of
    every layer but not `layer.0.attention.output...`."""
    out = []
    for token in re.split(r"(\*\*|\*|\?)", pattern):
        out.append({"**": ".*", "*": "[^.]*", "?": "[^.]"}.get(token, re.escape(token)))
    return re.compile("".join(out) + r"\Z")


def role(name: str) -> str:
    """A quantizer's role: its name with the layer index as `*` (a --skip-quant glob)."""
    return _LAYER.sub(".layer.*.", name)


def mean_cosine(fp32: dict[str, np.ndarray], outputs: dict[str, np.ndarray], agreement: str, mask) -> float:
    """The score every search here maximizes: the outputs' cosine to FP32, averaged over outputs."""
    result = compare(fp32, outputs, agreement, mask)
    return float(np.mean([m["cosine"] for m in result["outputs"].values()]))


def sweep(model: torch.nn.Module, batches: list[dict[str, torch.Tensor]], fp32: dict[str, np.ndarray],
          run: Callable[[], dict[str, np.ndarray]], agreement: str, mask) -> dict[str, Any]:  # fmt: skip
    """Mean output cosine to FP32 with every quantizer on, and with each role left in float."""

    def score() -> float:
        return mean_cosine(fp32, run(), agreement, mask)

    active = {n: q for n, q in quantizers(model).items() if q.mode is QuantMode.QUANTIZE}
    roles: dict[str, list[str]] = {}
    for name in active:
        roles.setdefault(role(name), []).append(name)
    baseline = score()
    rows = []
    for pattern, names in roles.items():
        for n in names:
            active[n].disable()
        try:
            rows.append({"role": pattern, "quantizers": len(names), "cosine_if_float": score()})
        finally:
            for n in names:
                active[n].enable_quant()
    for row in rows:
        row["gain"] = row["cosine_if_float"] - baseline
    rows.sort(key=lambda r: r["gain"], reverse=True)
    return {"baseline_cosine": baseline, "batches": len(batches), "roles": rows}


def greedy_skip(model: torch.nn.Module, batches: list[dict[str, torch.Tensor]], fp32: dict[str, np.ndarray],
                run: Callable[[], dict[str, np.ndarray]], agreement: str, mask, target: float,
                max_roles: int = 4) -> dict[str, Any]:  # fmt: skip
    """Leave the most costly roles in float, one at a time, until the mean output cosine to FP32
    reaches `target` (or `max_roles` are skipped, or no role helps any more)."""
    skipped: list[str] = []
    history = []
    for _ in range(max_roles + 1):
        result = sweep(model, batches, fp32, run, agreement, mask)
        history.append(result["baseline_cosine"])
        best = result["roles"][0] if result["roles"] else None
        if result["baseline_cosine"] >= target or len(skipped) == max_roles or best is None or best["gain"] <= 1e-3:
            break
        regex = glob_regex(best["role"])
        for name, q in quantizers(model).items():
            if regex.match(name):
                q.disable()
        skipped.append(best["role"])
    return {"target_cosine": target, "skipped": skipped, "cosine_after_each_step": history,
            "reached": history[-1] >= target}  # fmt: skip
