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
    candidates = calibrate_candidates(model, batches, (method,), percentile, num_batches=num_batches,
                                      progress=progress, reduce_across_ranks=reduce_across_ranks)  # fmt: skip
    return {n: q for n, q in quantizers(model).items() if n in candidates[method]}


@torch.no_grad()
def calibrate_candidates(
    model: nn.Module,
    batches: Iterable[Any],
    methods: Iterable[str] = CALIB_METHODS,
    percentile: float = 99.99,
    *,
    num_batches: int | None = None,
    progress: bool = True,
    reduce_across_ranks: bool = True,
) -> dict[str, dict[str, torch.Tensor]]:
    """Collect statistics once and compute the amax of every method in `methods` from them:
    {method: {quantizer name: amax}}. The model is left quantizing with the first method's amax;
    `load_amax(model, result[m])` switches to another without running the data again."""
    methods = tuple(methods)
    unknown = [m for m in methods if m not in CALIB_METHODS]
    if unknown or not methods:
        raise QuantizerError(
            f"calibration method {unknown or methods!r} is unknown; use one of {', '.join(CALIB_METHODS)}"
        )
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
        candidates: dict[str, dict[str, torch.Tensor]] = {method: {} for method in methods}
        pairs = [(method, name) for method in methods for name in active]
        for method, name in _progress(pairs, len(pairs), progress, "ranges", "range"):
            kwargs = {"percentile": percentile} if method == "percentile" else {}
            candidates[method][name] = active[name].compute_calib_amax(method, **kwargs).to(active[name].amax.device)
    finally:
        model.train(was_training)
        for q in active.values():  # never leave a quantizer collecting, even after an error
            q._calibrator = None
            q.enable_quant()
    if reduce_across_ranks and torch.distributed.is_available() and torch.distributed.is_initialized():
        for amaxes in candidates.values():
            for amax in amaxes.values():
                torch.distributed.all_reduce(amax, op=torch.distributed.ReduceOp.MAX)
    load_amax(model, candidates[methods[0]])
    return candidates


def load_amax(model: nn.Module, amaxes: Mapping[str, torch.Tensor]) -> None:
    """Set the amax of the named quantizers (e.g. one method's result of calibrate_candidates)."""
    found = quantizers(model)
    for name, amax in amaxes.items():
        found[name].set_amax(amax)


def _progress(items: Iterable[Any], total: int | None, enabled: bool, desc: str = "calibrate", unit: str = "batch"):
    if not enabled:
        return items
    from tqdm.auto import tqdm

    if total is None and hasattr(items, "__len__"):
        total = len(items)
    return tqdm(items, total=total, desc=desc, unit=unit, leave=False)


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
