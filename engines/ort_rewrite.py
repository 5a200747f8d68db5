"""The ONNX Runtime CPU backend's own session graph: activation Q/DQ pairs as uint8 with zero point 128.

TensorRT needs symmetric signed int8 (zero point 0); ONNX Runtime's x86 integer kernels are fastest
with unsigned activations (u8s8), and with signed ones it fuses only part of the MatMuls. An int8
pair Q(x; s, 0) → DQ(·; s, 0) and a uint8 pair Q(x; s, 128) → DQ(·; s, 128) represent exactly the
same real values (q' = q + 128), so the rewrite changes speed, not results. Weight Q/DQ (constant
inputs) stay signed per-channel. `model.onnx` for TensorRT is never modified: this graph lives in
memory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def unsigned_activations(path: str | Path) -> tuple[bytes, dict[str, Any]]:
    """Serialized copy of the model with int8 activation Q/DQ pairs turned uint8/128, plus a summary."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    constants = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    rewritten = skipped = 0
    added: set[str] = set()
    for node in graph.node:
        if node.op_type != "QuantizeLinear" or node.input[0] in constants or len(node.input) < 3:
            continue
        zero = constants.get(node.input[2])
        dequantizers = [c for c in consumers.get(node.output[0], []) if c.op_type == "DequantizeLinear"]
        if (
            zero is None
            or zero.dtype != np.int8
            or np.any(zero != 0)
            or len(dequantizers) != len(consumers[node.output[0]])
        ):
            skipped += 1  # not a plain symmetric pair: leave it exactly as exported
            continue
        name = f"{node.input[2]}__uint8_128"
        if name not in added:
            graph.initializer.append(numpy_helper.from_array(np.full(zero.shape, 128, dtype=np.uint8), name))
            added.add(name)
        node.input[2] = name
        for dq in dequantizers:
            dq.input[2] = name
        rewritten += 1
    _drop_unused_constants(graph)
    summary = {"rewrite": "int8 activation Q/DQ → uint8 zero point 128 (same real values)",
               "pairs_rewritten": rewritten, "pairs_left_signed": skipped}  # fmt: skip
    return model.SerializeToString(), summary


def _drop_unused_constants(graph) -> None:
    used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    keep = [n for n in graph.node if not (n.op_type == "Constant" and n.output[0] not in used)]
    del graph.node[:]
    graph.node.extend(keep)
    initializers = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(initializers)
