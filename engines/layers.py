"""Layer-precision summary of a built engine, from TensorRT's engine inspector.

The inspector reads a *deserialized* engine, so this needs a GPU the plan runs on; on other machines
the summary says why it is missing. Engines are built with profiling verbosity DETAILED (same plan
size) so the inspector reports each layer's type and its tensors' data types.

TensorRT 10 / TensorRT-RTX describe a tensor's type in one string ("Format/Datatype": "Row major
linear Int8 format"); TensorRT 11 splits it into "DataType" and "Format". Both are read.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

# substrings of the inspector's type text → our names; order matters ("int8" before "int")
_TYPE_WORDS = (("int8", "int8"), ("fp8", "fp8"), ("bf16", "bf16"), ("fp16", "fp16"), ("half", "fp16"),
               ("fp32", "fp32"), ("float", "fp32"), ("int32", "int32"), ("int64", "int64"), ("bool", "bool"))  # fmt: skip


def tensor_dtype(tensor: dict[str, Any]) -> str:
    """Data type of one tensor entry of the inspector's JSON."""
    text = str(tensor.get("DataType") or tensor.get("Format/Datatype") or "").lower()
    return next((name for word, name in _TYPE_WORDS if word in text), "unknown")


def layer_summary(info: str | dict[str, Any]) -> dict[str, Any]:
    """Count the engine's layers by the data type of their first input (the precision the layer
    computes in: an INT8 GEMM reads int8) and by layer type; list the GEMM-like layers that do not
    read int8, which is where a missing Q/DQ pair shows."""
    data = json.loads(info) if isinstance(info, str) else info
    layers = data.get("Layers", [])
    if layers and not isinstance(layers[0], dict):
        return {"layers": len(layers), "detail": "layer names only: rebuild with profiling verbosity DETAILED"}
    by_precision: Counter[str] = Counter()
    by_type: Counter[str] = Counter()
    float_gemms = []
    for layer in layers:
        tensors = layer.get("Inputs") or layer.get("Outputs") or [{}]
        precision = tensor_dtype(tensors[0])
        kind = str(layer.get("LayerType", "unknown"))
        by_precision[precision] += 1
        by_type[kind] += 1
        if any(word in kind.lower() for word in ("gemm", "matrixmultiply", "convolution")) and precision != "int8":
            float_gemms.append(str(layer.get("Name", "?")))
    return {"layers": len(layers), "by_input_precision": dict(by_precision.most_common()),
            "by_type": dict(by_type.most_common()), "gemm_layers_not_int8": float_gemms}  # fmt: skip


def inspect_engine(engine, trt) -> dict[str, Any]:
    """Summary of a deserialized engine (ICudaEngine of either flavor)."""
    inspector = engine.create_engine_inspector()
    return layer_summary(inspector.get_engine_information(trt.LayerInformationFormat.JSON))
