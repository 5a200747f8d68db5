"""The check stage: parity of every runnable backend against eager FP32 and eager fake-quant,
the noise floor, latency, the sensitivity sweep, and the facts (versions, machine) a report records."""

from __future__ import annotations

import os
import platform
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

import qdqbert
from engines import EagerRunner, compare, concat_outputs, measure_cpu, tolerance_check
from engines.errors import EngineError
from qdqbert import quantizers
from qdqbert.quant import QuantMode, quantization_disabled

from .preparation import BuildConfig, Loaded, eval_inputs
from .tasks import INPUT_NAMES, Task


def run_all(runner, batches: list[dict[str, torch.Tensor]]) -> dict[str, np.ndarray]:
    return concat_outputs([runner.run(b) for b in batches])


def eval_mask(batches: list[dict[str, torch.Tensor]], task: Task) -> np.ndarray | None:
    if task.choices:
        return None
    return concat_outputs([{"m": b["attention_mask"].numpy()} for b in batches])["m"]


def check(loaded: Loaded, config: BuildConfig, onnx_path: Path, samples, engine_meta: dict | None,
          warn: Callable[[str], None]) -> dict[str, Any]:  # fmt: skip
    """Parity of every runnable backend against eager FP32 and (INT8) eager fake-quant, latency, and
    (INT8, --sensitivity) the per-role sensitivity sweep: {"parity", "latency", "sensitivity"}."""
    from engines.ort_runner import OnnxRuntimeRunner

    task, model = loaded.task, loaded.model
    batches = eval_inputs(loaded, config, samples)
    mask = eval_mask(batches, task)
    opt_batch = batches[0]
    parity: dict[str, Any] = {}
    latency: dict[str, Any] = {}
    results = {"parity": parity, "latency": latency}
    fp32_ref = EagerRunner(model, INPUT_NAMES, task.outputs, name="eager-fp32")
    with quantization_disabled(model):
        fp32_chunks = [fp32_ref.run(b) for b in batches]
        latency["eager-fp32"] = _latency(lambda: fp32_ref.run(opt_batch), opt_batch, config)
    fp32 = concat_outputs(fp32_chunks)
    reference = None
    if config.precision == "int8":
        quant_ref = EagerRunner(model, INPUT_NAMES, task.outputs, name="eager-fake-quant")
        reference = run_all(quant_ref, batches)
        parity["eager-fake-quant"] = {"vs_fp32": compare(fp32, reference, task.agreement, mask)}
        perturbed = _run_perturbed(model, quant_ref, batches)
        parity[NOISE_FLOOR] = {"vs_fake_quant": compare(reference, perturbed, task.agreement, mask)}
        latency["eager-fake-quant"] = _latency(lambda: quant_ref.run(opt_batch), opt_batch, config)
        if config.sensitivity:
            from .sensitivity import sweep

            subset = batches[:2]
            results["sensitivity"] = sweep(model, subset, concat_outputs(fp32_chunks[:2]), lambda: run_all(quant_ref, subset),
                                           task.agreement, eval_mask(subset, task))  # fmt: skip

    for provider, level in (("cpu", "basic"), ("cpu", "all")) + ((("cuda", "all"),) if _ort_cuda() else ()):
        try:
            runner = OnnxRuntimeRunner(onnx_path, level=level, provider=provider)
        except EngineError as exc:
            warn(str(exc))
            parity[f"onnxruntime-{provider}-{level}"] = {"error": str(exc)}
            continue
        with runner:
            parity[runner.name] = _backend_parity(runner, batches, reference, fp32, task, mask, config.precision)
            if provider == "cuda":  # GPU tensors bound in place; ORT returns when its stream is done
                on_device = {k: v.cuda() for k, v in opt_batch.items()}
                latency[runner.name] = _latency(partial(runner.run_torch, on_device), opt_batch, config)
            else:
                latency[runner.name] = _latency(partial(runner.run, opt_batch), opt_batch, config)
    if engine_meta is not None:
        _check_engine(onnx_path.with_name("model.plan"), batches, reference, fp32, task, mask, config.precision,
                      parity, latency)  # fmt: skip
    return results


def _ort_cuda() -> bool:
    """ONNX Runtime's CUDA provider is installed (onnxruntime-gpu) and a GPU is visible."""
    try:
        import onnxruntime
    except ImportError:
        return False
    return torch.cuda.is_available() and "CUDAExecutionProvider" in onnxruntime.get_available_providers()


def _backend_parity(runner, batches, reference, fp32, task: Task, mask, precision: str) -> dict[str, Any]:
    """A backend's settings and its distance to eager fake-quant and to eager FP32."""
    outputs = run_all(runner, batches)
    result = {"settings": runner.describe(), "vs_fp32": compare(fp32, outputs, task.agreement, mask)}
    if reference is not None:  # INT8: also against the fake-quant model it was exported from
        result["vs_fake_quant"] = compare(reference, outputs, task.agreement, mask)
    # pass/fail at the documented tolerance of this precision, against the model it was exported from
    result["tolerance"] = tolerance_check(reference if reference is not None else fp32, outputs, precision)
    return result


def _check_engine(plan: Path, batches, reference, fp32, task: Task, mask, precision: str, parity: dict,
                  latency: dict) -> None:  # fmt: skip
    """Parity and CUDA-event latency of the engine, where this machine can run it."""
    from engines import measure_cuda
    from engines.trt_runner import TensorRTRunner

    try:
        runner = TensorRTRunner(plan)
    except EngineError as exc:
        parity["tensorrt"] = {"skipped": str(exc)}
        return
    timed = [runner]
    feed = {k: v.to(runner.device) for k, v in batches[0].items()}
    with runner:
        parity[runner.name] = _backend_parity(runner, batches, reference, fp32, task, mask, precision)
        graphed = TensorRTRunner(plan, cuda_graph=True)
        try:
            replayed = graphed.run(feed)  # a CUDA-graph replay must give the launched engine's outputs
            launched = runner.run(feed)
            diff = max(float(np.abs(value - replayed[name]).max()) for name, value in launched.items())
            parity[graphed.name] = {"identical_to": runner.name if diff == 0 else None, "max_abs_vs_launched": diff}
            timed.append(graphed)
        except EngineError as exc:  # not capturable: the launched engine is still checked
            parity[graphed.name] = {"skipped": str(exc)}
        for each in timed:  # both enqueue on the current stream, where the events are recorded
            timing = measure_cuda(partial(each.run_torch, feed), batch=len(batches[0]["input_ids"]))
            latency[each.name] = timing | {"shape": list(batches[0]["input_ids"].shape)}
        graphed.close()


NOISE_FLOOR = "noise-floor"


PERTURBATION = 1e-6


def _run_perturbed(model: torch.nn.Module, runner: EagerRunner, batches) -> dict[str, np.ndarray]:
    """The fake-quant model's own sensitivity: outputs when every quantizer's input carries relative
    noise of 1e-6 (seeded), about the float error another library's kernels make in each op.

    A quantized network is discontinuous: such noise moves some values across a rounding boundary,
    and each flip moves a tensor by a whole quantization step, which later layers amplify. Another
    runtime's INT8 outputs can only be judged against this floor, not against 1e-6."""
    generator = torch.Generator().manual_seed(0)

    def jitter(_module, args):
        (x,) = args
        noise = torch.randn(x.shape, generator=generator).to(x.device, x.dtype)
        return (x * (1 + PERTURBATION * noise),)

    hooks = [q.register_forward_pre_hook(jitter) for q in quantizers(model).values() if q.mode is QuantMode.QUANTIZE]
    try:
        return run_all(runner, batches)
    finally:
        for hook in hooks:
            hook.remove()


def _latency(fn: Callable[[], Any], batch: dict[str, torch.Tensor], config: BuildConfig) -> dict[str, Any]:
    shape = list(batch["input_ids"].shape)
    return measure_cpu(fn, batch=shape[0], warmup=2, iters=config.latency_iters) | {"shape": shape}


def _fp32_reference(loaded: Loaded, config: BuildConfig, samples):
    """(batches, run the model as it is now, its FP32 outputs, mask): what the quantizer searches score
    against. Two evaluation batches, as in the sensitivity sweep."""
    batches = eval_inputs(loaded, config, samples)[:2]
    runner = EagerRunner(loaded.model, INPUT_NAMES, loaded.task.outputs, name="eager")
    with quantization_disabled(loaded.model):
        fp32 = run_all(runner, batches)
    return batches, partial(run_all, runner, batches), fp32, eval_mask(batches, loaded.task)


def auto_skip(loaded: Loaded, config: BuildConfig, samples) -> dict[str, Any]:
    """--min-cosine: greedily leave the most costly quantizer roles in float (see sensitivity)."""
    from .sensitivity import greedy_skip

    batches, run, fp32, mask = _fp32_reference(loaded, config, samples)
    return greedy_skip(loaded.model, batches, fp32, run, loaded.task.agreement, mask, config.min_cosine)


def choose_calibrator(loaded: Loaded, config: BuildConfig, samples,
                      candidates: dict[str, dict[str, torch.Tensor]]) -> dict[str, Any]:  # fmt: skip
    """--calibrator auto: load each method's ranges in turn and keep the one whose outputs are closest
    to FP32 (mean output cosine on two evaluation batches)."""
    from qdqbert.quant import load_amax

    from .sensitivity import mean_cosine

    batches, run, fp32, mask = _fp32_reference(loaded, config, samples)
    scores = {}
    for method, amaxes in candidates.items():
        load_amax(loaded.model, amaxes)
        scores[method] = mean_cosine(fp32, run(), loaded.task.agreement, mask)
    best = max(scores, key=scores.__getitem__)
    load_amax(loaded.model, candidates[best])
    return {"method": best, "requested": "auto", "cosine_to_fp32_by_method": scores, "scored_batches": len(batches)}


def versions() -> dict[str, str]:
    import transformers

    found = {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
             "qdqbert-trt": qdqbert.__version__}  # fmt: skip
    for module in ("onnx", "onnxruntime", "tensorrt", "tensorrt_rtx"):
        try:
            found[module] = __import__(module).__version__
        except Exception:  # noqa: BLE001 - absent or broken optional library
            continue
    return found


def machine() -> dict[str, Any]:
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"platform": platform.platform(), "cpu": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "gpu": gpu}  # fmt: skip
