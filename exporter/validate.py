"""Validation of an exported Q/DQ graph: what TensorRT needs to build a fully INT8 encoder.

Checks: onnx.checker and strict shape inference; only standard ONNX domains; no leftover fake-quant
ops; every Q/DQ has a constant, positive scale and a zero point of 0; every MatMul/Gemm inside the
encoder has both inputs fed by DequantizeLinear; every residual Add before an encoder LayerNorm too.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# ops that only move data: a DequantizeLinear behind them still feeds the consumer (TensorRT
# propagates Q/DQ through them)
_TRANSPARENT = {"Transpose", "Reshape", "Identity", "Unsqueeze", "Squeeze", "Flatten"}
_STANDARD_DOMAINS = {"", "ai.onnx"}


@dataclass
class GraphValidation:
    ok: bool = True
    checker: str = "ok"
    op_counts: dict[str, int] = field(default_factory=dict)
    quantize_linear: int = 0
    dequantize_linear: int = 0
    encoder_matmuls: int = 0
    encoder_matmuls_quantized: int = 0
    residual_adds: int = 0
    residual_adds_quantized: int = 0
    issues: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _in_encoder(node) -> bool:
    """TorchScript names nodes by module path; dynamo records it in the node's metadata."""
    if "/encoder/" in node.name or "encoder.layer" in node.name:
        return True
    return any(p.key == "namespace" and ".encoder." in p.value for p in node.metadata_props)


def validate_graph(path: str | Path) -> GraphValidation:
    import onnx
    from onnx import numpy_helper

    result = GraphValidation()
    path = Path(path)
    try:
        onnx.checker.check_model(str(path), full_check=False)
        model = onnx.load(str(path))
        onnx.shape_inference.infer_shapes(model, strict_mode=True)
    except Exception as exc:  # checker and inference raise their own types
        result.ok = False
        result.checker = str(exc).strip().splitlines()[0]
        result.issues.append(f"onnx checker / shape inference: {result.checker}")
        return result

    graph = model.graph
    producers = {out: node for node in graph.node for out in node.output}
    constants = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    result.op_counts = dict(sorted(Counter(n.op_type for n in graph.node).items()))
    result.quantize_linear = result.op_counts.get("QuantizeLinear", 0)
    result.dequantize_linear = result.op_counts.get("DequantizeLinear", 0)

    for node in graph.node:
        if node.domain not in _STANDARD_DOMAINS:
            result.issues.append(f"{node.name}: op {node.domain}::{node.op_type} is outside the standard ONNX domain")
        if "fake" in node.op_type.lower() and "quant" in node.op_type.lower():
            result.issues.append(f"{node.name}: leftover fake-quant op {node.op_type}")
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            _check_qdq(node, constants, result)

    def fed_by_dq(tensor: str) -> bool:
        node = producers.get(tensor)
        while node is not None and node.op_type in _TRANSPARENT:
            node = producers.get(node.input[0])
        return node is not None and node.op_type == "DequantizeLinear"

    for node in graph.node:
        if not _in_encoder(node):
            continue
        if node.op_type in ("MatMul", "Gemm"):
            result.encoder_matmuls += 1
            if all(fed_by_dq(t) for t in node.input[:2]):
                result.encoder_matmuls_quantized += 1
            else:
                result.issues.append(
                    f"{node.name}: {node.op_type} inside the encoder has an input not fed by DequantizeLinear"
                )
        if node.op_type == "LayerNormalization":
            add = producers.get(node.input[0])
            if add is None or add.op_type != "Add":
                continue
            result.residual_adds += 1
            if all(fed_by_dq(t) for t in add.input):
                result.residual_adds_quantized += 1
            else:
                result.issues.append(
                    f"{add.name}: residual Add before {node.name} has an input not fed by DequantizeLinear"
                )
    result.ok = not result.issues
    return result


def _check_qdq(node, constants: dict[str, np.ndarray], result: GraphValidation) -> None:
    scale_name = node.input[1]
    zero_name = node.input[2] if len(node.input) > 2 else ""
    if scale_name not in constants:
        result.issues.append(f"{node.name}: {node.op_type} scale {scale_name} is computed at run time, not a constant")
    elif not (constants[scale_name] > 0).all():
        result.issues.append(f"{node.name}: {node.op_type} has a non-positive scale")
    if zero_name:
        if zero_name not in constants:
            result.issues.append(f"{node.name}: {node.op_type} zero point {zero_name} is not a constant")
        elif np.any(constants[zero_name] != 0):
            result.issues.append(f"{node.name}: {node.op_type} has a non-zero zero point (TensorRT needs symmetric)")
