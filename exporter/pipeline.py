"""The `build` pipeline: load → calibrate → export → validate → engine → check → report, and
`check` (replay the parity and latency of an existing build)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from engines.files import sha256_file, write_atomic

from . import data as data_mod
from .checking import auto_skip, check, machine, versions
from .errors import UsageError
from .onnx_export import export_onnx, graph_opset
from .preparation import (
    BuildConfig,
    apply_quant_json,
    engine_flavor,
    eval_inputs,
    load,
    prepare_quantizers,
    quant_json,
    skipped_quantizers,
    validate_config,
)
from .staging import Staging
from .tasks import INPUT_NAMES, Task
from .validate import validate_graph

ARTIFACTS = ("model.onnx", "model.onnx.data", "quant.json", "model.plan", "engine.json", "report.json", "report.md")


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
    report: dict[str, Any] = {"inputs": asdict(config) | {"model": str(config.model_dir)}, "versions": versions(),
                              "machine": machine(), "warnings": warnings}  # fmt: skip
    with Staging(out) as staging:
        stage = staging.path
        log(f"calibrating ({config.calibrator}, {len(calib_samples)} samples)" if config.precision == "int8"
            else f"precision {config.precision}: no calibration")  # fmt: skip
        report["calibration"] = prepare_quantizers(loaded, config, calib_samples, eval_samples)
        if config.calibrator == "auto" and config.precision == "int8":
            scores = report["calibration"]["cosine_to_fp32_by_method"]
            log("calibrator auto → " + report["calibration"]["method"] + " (cosine to FP32: "
                + ", ".join(f"{m} {c:.4f}" for m, c in scores.items()) + ")")  # fmt: skip
        if config.min_cosine is not None and config.precision == "int8":
            log(f"leaving the costliest quantizer roles in float until cosine to FP32 ≥ {config.min_cosine}")
            report["calibration"]["auto_skip"] = auto_skip(loaded, config, eval_samples)
            if not report["calibration"]["auto_skip"]["reached"]:
                note(f"--min-cosine {config.min_cosine} not reached: cosine to FP32 "
                     f"{report['calibration']['auto_skip']['cosine_after_each_step'][-1]:.4f} after skipping "
                     f"{len(report['calibration']['auto_skip']['skipped'])} role(s)")  # fmt: skip
        write_atomic(stage / "quant.json", quant_json(loaded.model, report["calibration"]))
        if config.float_dtype == "fp16":
            loaded.model.half()
        log(f"exporting ONNX ({config.exporter})")
        example = eval_inputs(loaded, config, eval_samples[: config.batch[1]])[0]
        start = time.perf_counter()
        onnx_path = export_onnx(loaded.model, loaded.task, example, stage / "model.onnx",
                                opset=config.opset, exporter=config.exporter)  # fmt: skip
        export_seconds = time.perf_counter() - start
        validation = validate_graph(onnx_path)
        report["export"] = {"exporter": config.exporter, "opset": graph_opset(onnx_path),
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
    if config.triton_repo:
        from engines.triton import write_triton_repo

        plan = out / "model.plan"
        model_dir = write_triton_repo(config.triton_repo, f"qdqbert_{loaded.task.name.replace('-', '_')}",
                                      out / "model.onnx", plan if plan.exists() else None,
                                      max_batch_size=config.batch[2], preferred_batch=config.batch[1])  # fmt: skip
        log(f"Triton model repository entry → {model_dir}")
    return report


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
