"""Triton Inference Server model repository: `<name>/1/model.plan` (or `model.onnx`) + `config.pbtxt`."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

from .errors import EngineError
from .files import write_atomic

_TYPES = {"int64": "TYPE_INT64", "int32": "TYPE_INT32", "float32": "TYPE_FP32", "float16": "TYPE_FP16",
          "int8": "TYPE_INT8", "bool": "TYPE_BOOL"}  # fmt: skip


def onnx_io(path: str | Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(inputs, outputs) of an ONNX graph: name, numpy dtype name, shape with -1 for dynamic axes."""
    import onnx
    from onnx import helper

    graph = onnx.load(str(path), load_external_data=False).graph
    initializers = {i.name for i in graph.initializer}

    def describe(value) -> dict[str, Any]:
        tensor = value.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim]
        return {"name": value.name, "dtype": str(helper.tensor_dtype_to_np_dtype(tensor.elem_type)), "shape": dims}

    inputs = [describe(v) for v in graph.input if v.name not in initializers]
    return inputs, [describe(v) for v in graph.output]


def _tensor_block(kind: str, tensors: list[dict[str, Any]]) -> str:
    entries = []
    for t in tensors:
        if t["dtype"] not in _TYPES:
            raise EngineError(f"Triton has no data type for {t['name']} ({t['dtype']})")
        dims = ", ".join(str(d) for d in t["shape"][1:]) or "1"
        entries.append(
            f'  {{\n    name: "{t["name"]}"\n    data_type: {_TYPES[t["dtype"]]}\n    dims: [ {dims} ]\n  }}'
        )
    return f"{kind} [\n" + ",\n".join(entries) + "\n]\n"


def config_pbtxt(name: str, platform: str, inputs: list[dict], outputs: list[dict], max_batch_size: int,
                 preferred_batch: int, profiles: int = 0) -> str:  # fmt: skip
    """config.pbtxt text; the batch axis is Triton's (max_batch_size), the other dims follow the graph."""
    text = f'name: "{name}"\nplatform: "{platform}"\nmax_batch_size: {max_batch_size}\n'
    text += _tensor_block("input", inputs) + _tensor_block("output", outputs)
    if platform == "tensorrt_plan":
        listed = ", ".join(f'"{i}"' for i in range(max(profiles, 1)))
        text += f"instance_group [\n  {{\n    kind: KIND_GPU\n    count: 1\n    profile: [ {listed} ]\n  }}\n]\n"
    text += f"dynamic_batching {{\n  preferred_batch_size: [ {preferred_batch} ]\n}}\n"
    return text


def write_triton_repo(repo: str | Path, name: str, onnx_path: Path, plan_path: Path | None,
                      max_batch_size: int, preferred_batch: int, profiles: int = 1) -> Path:  # fmt: skip
    """Write `<repo>/<name>/1/<model file>` and `<repo>/<name>/config.pbtxt`; returns the model dir."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise EngineError(f"Triton model name {name!r}: use letters, digits, '_', '-', '.'")
    inputs, outputs = onnx_io(onnx_path)
    platform = "tensorrt_plan" if plan_path is not None else "onnxruntime_onnx"
    model_dir = Path(repo) / name
    version_dir = model_dir / "1"
    version_dir.mkdir(parents=True, exist_ok=True)
    source = plan_path if plan_path is not None else onnx_path
    target = version_dir / ("model.plan" if plan_path is not None else "model.onnx")
    staged = target.with_name(f".{target.name}.tmp")
    shutil.copyfile(source, staged)
    staged.replace(target)
    text = config_pbtxt(name, platform, inputs, outputs, max_batch_size, preferred_batch, profiles)
    write_atomic(model_dir / "config.pbtxt", text.encode())
    return model_dir
