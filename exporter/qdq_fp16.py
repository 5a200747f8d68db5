"""FP16 graphs: Q/DQ pairs in float16 instead of wrapped in Casts.

The fake-quant kernels (and QuantizeLinear before opset 19) take float32, so an FP16 model exports
each quantizer as Cast(fp32) → QuantizeLinear → DequantizeLinear → Cast(fp16). Between a
DequantizeLinear and the MatMul it feeds, that Cast hides the pattern TensorRT fuses into an INT8
GEMM, and the graph validation rightly reports the MatMuls as not quantized. Opset 19 lets Q/DQ take
float16 scales, so this rewrite drops both Casts: QuantizeLinear reads the fp16 tensor, both nodes
use an fp16 copy of the scale, DequantizeLinear yields fp16 and feeds the MatMul directly. Weights
(float32 initializers after constant folding, fp16 values in the model) become fp16 initializers.
The other ops of these graphs mean the same at opset 19 as at 17/18.
"""

from __future__ import annotations

from typing import Any

FLOAT, FLOAT16 = 1, 10  # onnx.TensorProto data types
QDQ_OPSET = 19


def fp16_qdq(model: Any) -> int:
    """Rewrite every Cast-wrapped Q/DQ pair of `model` (onnx.ModelProto) in place; returns how many.
    Raises the default-domain opset to 19 when it rewrites any."""
    import numpy as np
    from onnx import numpy_helper, shape_inference

    graph = model.graph
    inferred = shape_inference.infer_shapes(model).graph
    dtype = {vi.name: vi.type.tensor_type.elem_type for vi in [*inferred.value_info, *inferred.input, *inferred.output]}
    producer = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    inits = {init.name: init for init in graph.initializer}
    fp16_names: dict[str, str] = {}

    def as_fp16(name: str) -> str:
        """An fp16 copy of a float32 initializer (made once, shared like the original)."""
        if name not in fp16_names:
            value = numpy_helper.to_array(inits[name]).astype(np.float16)
            fp16_names[name] = name + "_fp16"
            graph.initializer.append(numpy_helper.from_array(value, fp16_names[name]))
        return fp16_names[name]

    drop, bypassed, retyped, rewritten = set(), set(), set(), 0
    for q in [n for n in graph.node if n.op_type == "QuantizeLinear"]:
        dqs = consumers.get(q.output[0], [])
        if len(dqs) != 1 or dqs[0].op_type != "DequantizeLinear" or q.input[1] not in inits:
            continue
        dq = dqs[0]
        after = consumers.get(dq.output[0], [])
        if not after or not all(_cast_to(n) == FLOAT16 for n in after):
            continue
        source = producer.get(q.input[0])
        if source is not None and _cast_to(source) == FLOAT and dtype.get(source.input[0]) == FLOAT16:
            q.input[0] = source.input[0]
            bypassed.add(id(source))  # dropped below unless something else reads it
        elif q.input[0] in inits and inits[q.input[0]].data_type == FLOAT:
            q.input[0] = as_fp16(q.input[0])
        else:
            continue
        q.input[1] = dq.input[1] = as_fp16(q.input[1])
        retyped.add(dq.output[0])
        for cast in after:  # readers of the fp16 Cast now read the DequantizeLinear itself
            for reader in consumers.get(cast.output[0], []):
                reader.input[:] = [dq.output[0] if name == cast.output[0] else name for name in reader.input]
            for output in graph.output:
                if output.name == cast.output[0]:
                    output.name = dq.output[0]
            drop.add(id(cast))
        rewritten += 1
    if not rewritten:
        return 0
    readers = {name for node in graph.node if id(node) not in drop for name in node.input}
    readers |= {output.name for output in graph.output}
    keep = [n for n in graph.node if id(n) not in drop and not (id(n) in bypassed and n.output[0] not in readers)]
    del graph.node[:]
    graph.node.extend(keep)
    used = {name for node in graph.node for name in node.input}
    kept_inits = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept_inits)
    for info in graph.value_info:  # the dynamo exporter records each tensor's type
        if info.name in retyped:
            info.type.tensor_type.elem_type = FLOAT16
    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx") and opset.version < QDQ_OPSET:
            opset.version = QDQ_OPSET
    return rewritten


def _cast_to(node) -> int | None:
    if node.op_type != "Cast":
        return None
    return next((a.i for a in node.attribute if a.name == "to"), None)
