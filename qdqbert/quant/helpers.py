"""Model-wide quantizer helpers: list, switch, calibrate and summarize every TensorQuantizer."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import torch
from torch import nn

from ..errors import QuantizerError
from .calib import CALIB_METHODS
from .tensor_quantizer import QuantMode, TensorQuantizer


def quantizers(model: nn.Module) -> dict[str, TensorQuantizer]:
    """Every TensorQuantizer of `model`, by module path (also stored as each quantizer's `name`)."""
    found = {}
    for name, module in model.named_modules():
        if isinstance(module, TensorQuantizer):
            module.name = name
            found[name] = module
    return found


def set_quantization(model: nn.Module, enabled: bool) -> None:
    """Turn every quantizer on (quantize mode) or off (the model then computes exactly in float)."""
    for q in quantizers(model).values():
        q.enable_quant() if enabled else q.disable()


@contextlib.contextmanager
def quantization_disabled(model: nn.Module) -> Iterator[None]:
    """Run the model in float inside the block; every quantizer's mode is restored after, even on error."""
    modes = {name: q.mode for name, q in quantizers(model).items()}
    set_quantization(model, False)
    try:
        yield
    finally:
        for name, q in quantizers(model).items():
            q.mode = modes[name]


def _run(model: nn.Module, batch: Any) -> None:
    if isinstance(batch, Mapping):
        model(**batch)
    elif isinstance(batch, (tuple, list)):
        model(*batch)
    else:
        model(batch)


@torch.no_grad()
def calibrate(
    model: nn.Module,
    batches: Iterable[Any],
    method: str = "percentile",
    percentile: float = 99.99,
    *,
    num_batches: int | None = None,
    progress: bool = True,
    reduce_across_ranks: bool = True,
) -> dict[str, TensorQuantizer]:
    """Run `batches` through `model`, compute every enabled quantizer's amax and leave them quantizing.

    method: "max", "percentile" (with `percentile`, default 99.99 as NVIDIA advises for BERT), "mse" or
        "entropy"; it applies to activation (histogram) quantizers, weights always use their max.
    batches: dicts of keyword arguments, tuples of positional ones, or single tensors.
    Quantizers that are disabled stay disabled (so a sensitivity sweep can leave some out). Under
    torch.distributed, each amax is the max over ranks, so every rank exports the same graph.
    """
    if method not in CALIB_METHODS:
        raise QuantizerError(f"calibration method {method!r} is unknown; use one of {', '.join(CALIB_METHODS)}")
    active = {n: q for n, q in quantizers(model).items() if q.mode is not QuantMode.DISABLED}
    if not active:
        raise QuantizerError("calibrate: the model has no enabled TensorQuantizer; call set_quantization(model, True)")
    was_training = model.training
    model.eval()
    for q in active.values():
        q.enable_calib()
    seen = 0
    try:
        for batch in _progress(batches, num_batches, progress):
            if num_batches is not None and seen >= num_batches:
                break
            _run(model, batch)
            seen += 1
        if seen == 0:
            raise QuantizerError("calibrate: no calibration batches were given; pass at least one batch")
        for q in active.values():
            q.load_calib_amax(method, **({"percentile": percentile} if method == "percentile" else {}))
    finally:
        model.train(was_training)
        for q in active.values():  # never leave a quantizer collecting, even after an error
            q._calibrator = None
            q.enable_quant()
    if reduce_across_ranks:
        _reduce_amax_across_ranks(active)
    return active


def _progress(batches: Iterable[Any], total: int | None, enabled: bool) -> Iterable[Any]:
    if not enabled:
        return batches
    from tqdm.auto import tqdm

    if total is None and hasattr(batches, "__len__"):
        total = len(batches)
    return tqdm(batches, total=total, desc="calibrate", unit="batch", leave=False)


def _reduce_amax_across_ranks(active: dict[str, TensorQuantizer]) -> None:
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return
    for q in active.values():
        torch.distributed.all_reduce(q.amax, op=torch.distributed.ReduceOp.MAX)


def quantizer_summary(model: nn.Module) -> list[dict[str, Any]]:
    """One row per quantizer: name, mode, bits, axis, amax (scalar, or min/max over channels)."""
    rows = []
    for name, q in quantizers(model).items():
        amax = q.amax.detach().float().cpu()
        rows.append(
            {
                "name": name,
                "mode": q.mode.value,
                "num_bits": q.desc.num_bits,
                "axis": q.desc.axis,
                "unsigned": q.desc.unsigned,
                "amax": amax.tolist(),
                "amax_min": float(amax.min()) if amax.numel() else None,
                "amax_max": float(amax.max()) if amax.numel() else None,
            }
        )
    return rows
