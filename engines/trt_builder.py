"""Build `.plan` engines with TensorRT 10/11 (`tensorrt`) or TensorRT-RTX (`tensorrt_rtx`).

One code path for both flavors: Builder → OnnxParser → strongly typed network → builder config →
optimization profiles → build_serialized_network. Precision comes from the graph (Q/DQ for INT8,
FP16 tensors for FP16): no INT8/FP16 builder flags. TensorRT-RTX builds on a machine without a GPU
("CPU-only AOT"); its engines then run on the compute capabilities it was told to target.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import EngineError, MissingDependencyError
from .files import sha256_file, write_atomic

FLAVORS = {"tensorrt": "tensorrt", "tensorrt-rtx": "tensorrt_rtx"}
ENGINE_JSON_VERSION = 1


@dataclass(frozen=True)
class Profile:
    """min/opt/max shape of every input, e.g. {"input_ids": ((1, 1), (8, 128), (32, 128))}."""

    shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]

    def __post_init__(self) -> None:
        for name, (lo, opt, hi) in self.shapes.items():
            if not (len(lo) == len(opt) == len(hi)) or any(a > b or b > c for a, b, c in zip(lo, opt, hi)):
                raise EngineError(f"profile for {name}: need min ≤ opt ≤ max on every axis, got {lo}, {opt}, {hi}")

    def to_dict(self) -> dict[str, Any]:
        return {
            name: {"min": list(lo), "opt": list(opt), "max": list(hi)} for name, (lo, opt, hi) in self.shapes.items()
        }


@dataclass
class BuildOptions:
    """flavor: "tensorrt" or "tensorrt-rtx" (None: the first one installed).
    workspace_mib: memory-pool limit for the workspace (None: the library's default).
    optimization_level: builder optimization level 0-5 (None: default 3).
    compute_capabilities: TensorRT-RTX targets, e.g. ["8.6", "8.9"] (None: the library's default;
        on a machine without a GPU, the RTX builder needs them or its own default list).
    timing_cache: file reused across builds where the flavor supports it."""

    flavor: str | None = None
    workspace_mib: int | None = None
    optimization_level: int | None = None
    compute_capabilities: list[str] | None = None
    timing_cache: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def available_flavors() -> list[str]:
    """Installed flavors, most capable first."""
    found = []
    for flavor, module in FLAVORS.items():
        try:
            importlib.import_module(module)
        except Exception:  # noqa: BLE001 - a broken install (missing CUDA libs) counts as absent
            continue
        found.append(flavor)
    return found


def import_flavor(flavor: str):
    if flavor not in FLAVORS:
        raise EngineError(f"TensorRT flavor {flavor!r} is unknown; use one of {', '.join(FLAVORS)}")
    try:
        return importlib.import_module(FLAVORS[flavor])
    except Exception as exc:
        extra = "tensorrt-rtx" if flavor == "tensorrt-rtx" else "tensorrt (NVIDIA's container or pip index)"
        raise MissingDependencyError(
            f"{flavor} is not installed or cannot load ({type(exc).__name__}); install {extra} or pick another backend"
        ) from None


def _parser_errors(parser) -> list[str]:
    errors = []
    for i in range(parser.num_errors):
        err = parser.get_error(i)
        node = err.node_name() if hasattr(err, "node_name") else ""
        errors.append(f"{node or 'node ' + str(err.node())}: {err.desc()}")
    return errors


def build_engine(onnx_path: str | Path, plan_path: str | Path, profiles: list[Profile],
                 options: BuildOptions | None = None) -> dict[str, Any]:  # fmt: skip
    """Build `plan_path` from `onnx_path`; write it and `engine.json` beside it atomically.

    Returns the engine.json content. Raises EngineError with the parser's messages (node + text)
    when the graph is rejected, and when the builder fails."""
    options = options or BuildOptions()
    flavor = options.flavor or next(iter(available_flavors()), None)
    if flavor is None:
        raise MissingDependencyError(
            "neither TensorRT nor TensorRT-RTX is installed: pip install 'qdqbert-trt[tensorrt-rtx]'"
        )
    trt = import_flavor(flavor)
    onnx_path, plan_path = Path(onnx_path), Path(plan_path)
    logger = trt.Logger(trt.Logger.ERROR)
    builder = trt.Builder(logger)
    network = builder.create_network(_strongly_typed_flag(trt))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = _parser_errors(parser)
        raise EngineError(f"{flavor} parser rejected {onnx_path.name}: " + "; ".join(errors[:5])
                          + (f" (+{len(errors) - 5} more)" if len(errors) > 5 else ""))  # fmt: skip
    config = builder.create_builder_config()
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED  # layer types and dtypes for the inspector
    if options.workspace_mib:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mib << 20)
    if options.optimization_level is not None:
        config.builder_optimization_level = options.optimization_level
    if options.compute_capabilities and hasattr(config, "set_compute_capability"):
        config.num_compute_capabilities = len(options.compute_capabilities)
        for i, cc in enumerate(options.compute_capabilities):
            config.set_compute_capability(_compute_capability(trt, cc), i)
    cache = _load_timing_cache(config, options.timing_cache)
    inputs = {network.get_input(i).name: network.get_input(i) for i in range(network.num_inputs)}
    for profile in profiles:
        unknown = sorted(set(profile.shapes) - set(inputs))
        if unknown:
            raise EngineError(f"profile names inputs {unknown} that the network does not have ({sorted(inputs)})")
        trt_profile = builder.create_optimization_profile()
        for name, (lo, opt, hi) in profile.shapes.items():
            trt_profile.set_shape(name, lo, opt, hi)
        config.add_optimization_profile(trt_profile)
    start = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    seconds = time.perf_counter() - start
    if serialized is None:
        raise EngineError(
            f"{flavor} could not build an engine from {onnx_path.name} (run with --verbose for the builder log)"
        )
    if cache is not None and options.timing_cache:
        _save_timing_cache(config, options.timing_cache)
    meta = {
        "format_version": ENGINE_JSON_VERSION,
        "flavor": flavor,
        "library_version": trt.__version__,
        "plan": plan_path.name,
        "plan_bytes": serialized.nbytes,
        "plan_sha256": hashlib.sha256(memoryview(serialized)).hexdigest(),
        "onnx": onnx_path.name,
        "onnx_sha256": sha256_file(onnx_path),
        "build_seconds": round(seconds, 3),
        "compute_capabilities": options.compute_capabilities,
        "builder_optimization_level": options.optimization_level,
        "profiles": [p.to_dict() for p in profiles],
        "inputs": [_io(network.get_input(i)) for i in range(network.num_inputs)],
        "outputs": [_io(network.get_output(i)) for i in range(network.num_outputs)],
        "layers": network.num_layers,
        "layer_precisions": _layer_precisions(trt, serialized, flavor, options.compute_capabilities),
    }
    write_atomic(plan_path, bytes(serialized))
    write_atomic(plan_path.with_name("engine.json"), (json.dumps(meta, indent=2) + "\n").encode())
    return meta


def _layer_precisions(trt, serialized, flavor: str, compute_capabilities: list[str] | None) -> dict[str, Any]:
    """The engine inspector's layer summary where this machine can deserialize the plan; else why not."""
    import torch

    from .layers import inspect_engine
    from .trt_runner import check_compatible

    try:
        check_compatible({"flavor": flavor, "library_version": trt.__version__,
                          "compute_capabilities": compute_capabilities}, trt, torch)  # fmt: skip
    except EngineError as exc:
        return {"unavailable": f"the engine inspector reads a deserialized engine: {exc}"}
    engine = trt.Runtime(trt.Logger(trt.Logger.ERROR)).deserialize_cuda_engine(serialized)
    if engine is None:
        return {"unavailable": f"{flavor} could not deserialize the plan on this GPU"}
    return inspect_engine(engine, trt)


def _strongly_typed_flag(trt) -> int:
    flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    return 0 if flag is None else 1 << int(flag)


def _compute_capability(trt, text: str):
    enum = trt.ComputeCapability
    name = "SM" + text.replace(".", "")
    if not hasattr(enum, name):
        known = [f"{n[2:-1]}.{n[-1]}" for n in enum.__members__ if n.startswith("SM")]
        raise EngineError(f"compute capability {text} is not a TensorRT-RTX target; use one of {', '.join(known)}")
    return getattr(enum, name)


# TensorRT DataType names → numpy names (what engine.json and the runners speak)
_NUMPY_DTYPES = {"float": "float32", "half": "float16", "bf16": "bfloat16", "int8": "int8", "int32": "int32",
                 "int64": "int64", "bool": "bool", "uint8": "uint8", "fp8": "float8_e4m3fn"}  # fmt: skip


def numpy_dtype(trt_dtype) -> str:
    """`trt.DataType.HALF` → "float16" (either flavor)."""
    name = str(trt_dtype).split(".")[-1].lower()
    return _NUMPY_DTYPES.get(name, name)


def _io(tensor) -> dict[str, Any]:
    return {"name": tensor.name, "dtype": numpy_dtype(tensor.dtype), "shape": list(tensor.shape)}


def _load_timing_cache(config, path: str | None):
    if not path or not hasattr(config, "create_timing_cache"):
        return None
    data = Path(path).read_bytes() if Path(path).is_file() else b""
    cache = config.create_timing_cache(data)
    config.set_timing_cache(cache, ignore_mismatch=False)
    return cache


def _save_timing_cache(config, path: str) -> None:
    cache = config.get_timing_cache()
    if cache is not None:
        write_atomic(Path(path), bytes(cache.serialize()))


def engine_facts(meta: dict[str, Any]) -> dict[str, Any]:
    """The short engine summary for reports."""
    keys = (
        "flavor",
        "library_version",
        "plan_bytes",
        "build_seconds",
        "compute_capabilities",
        "layers",
        "layer_precisions",
    )
    return {k: meta.get(k) for k in keys} | {"profiles": len(meta.get("profiles", []))}
