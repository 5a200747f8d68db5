"""ONNX export with explicit QuantizeLinear/DequantizeLinear pairs, written atomically.

Two exporters: TorchScript (`dynamo=False`, opset 17; torch's own Q/DQ symbolics) and dynamo
(opset ≥ 18; our `qdqbert::fake_quant` op is translated to Q/DQ here). Scales are constants because
amax is a buffer and `amax / bound` folds at export; zero points are 0.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

import torch
from torch import nn

from qdqbert.quant import QuantMode, quantizers

from .errors import ExportError, UsageError
from .tasks import INPUT_NAMES, Task

EXPORTERS = ("torchscript", "dynamo")
TWO_GB = 2**31


class TaskGraph(nn.Module):
    """The model as the ONNX graph sees it: three named inputs in, the task's outputs out, in order."""

    def __init__(self, model: nn.Module, task: Task) -> None:
        super().__init__()
        self.model = model
        self.output_names = task.outputs

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor):
        out = self.model(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids, return_dict=True
        )
        return tuple(out[name] for name in self.output_names)


def check_exportable(model: nn.Module) -> None:
    """Every enabled quantizer must be calibrated and expressible as ONNX Q/DQ."""
    for name, q in quantizers(model).items():
        if q.mode is QuantMode.DISABLED:
            continue
        if q.mode is QuantMode.CALIBRATE or not q.is_calibrated:
            raise ExportError(f"{name} is not calibrated; run calibration before export (or disable it)")
        if q.desc.narrow_range:
            raise ExportError(
                f"{name} uses narrow_range, which ONNX QuantizeLinear cannot express; export with narrow_range=False"
            )
        if q.desc.num_bits != 8:
            raise ExportError(f"{name} uses {q.desc.num_bits} bits; ONNX Q/DQ (and TensorRT) need 8")


def _dynamo_translations(opset: int) -> dict:
    import onnxscript

    op = onnxscript.values.Opset("", opset)

    def fake_quant(x, scale, axis: int, qmin: int, qmax: int):
        zero_type = onnxscript.ir.DataType.INT8 if qmin < 0 else onnxscript.ir.DataType.UINT8
        zero_point = op.Cast(op.Mul(scale, op.Constant(value_float=0.0)), to=zero_type)  # folds to constant 0
        quantized = op.QuantizeLinear(x, scale, zero_point, axis=max(axis, 0))
        return op.DequantizeLinear(quantized, scale, zero_point, axis=max(axis, 0))

    return {torch.ops.qdqbert.fake_quant.default: fake_quant}


def export_onnx(
    model: nn.Module,
    task: Task,
    example: dict[str, torch.Tensor],
    path: str | os.PathLike,
    *,
    opset: int | None = None,
    exporter: str = "torchscript",
) -> Path:
    """Export `model` for `task` to `path` (atomically: a temporary file, then rename)."""
    if exporter not in EXPORTERS:
        raise UsageError(f"exporter {exporter!r} is unknown; use one of {', '.join(EXPORTERS)}")
    opset = opset or (17 if exporter == "torchscript" else 18)
    if exporter == "dynamo" and opset < 18:
        raise UsageError(
            f"--opset {opset} with the dynamo exporter emits invalid Split nodes; use --opset 18 or higher"
        )
    if opset < 13:
        raise UsageError(f"--opset {opset} has no per-channel QuantizeLinear; use 13 or higher (17 recommended)")
    check_exportable(model)
    path = Path(path)
    graph = TaskGraph(model, task).eval()
    args = tuple(example[name] for name in INPUT_NAMES)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".export-") as tmp:
        staged = Path(tmp) / path.name
        with torch.no_grad(), _quiet_export():
            try:
                if exporter == "torchscript":
                    torch.onnx.export(
                        graph, args, str(staged), dynamo=False, opset_version=opset,
                        input_names=list(INPUT_NAMES), output_names=list(task.outputs),
                        dynamic_axes=task.input_axes | task.output_axes, do_constant_folding=True,
                    )  # fmt: skip
                else:
                    dims = {
                        axis: torch.export.Dim(axis_name, min=1)
                        for axis, axis_name in task.input_axes["input_ids"].items()
                    }
                    program = torch.onnx.export(
                        graph, args, dynamo=True, opset_version=opset,
                        input_names=list(INPUT_NAMES), output_names=list(task.outputs),
                        dynamic_shapes={name: dims for name in INPUT_NAMES},
                        custom_translation_table=_dynamo_translations(opset), verbose=False,
                    )  # fmt: skip
                    program.save(str(staged), external_data=program.model_proto.ByteSize() >= TWO_GB)
            except Exception as exc:  # the exporters raise many types; the first line says what broke
                raise ExportError(f"{exporter} export failed: {str(exc).strip().splitlines()[0]}") from exc
        _finalize(staged, path)
    return path


def graph_opset(path: str | os.PathLike) -> int:
    """The default-domain opset a written graph declares (FP16 Q/DQ graphs are raised to 19)."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))


def _finalize(staged: Path, path: Path) -> None:
    """Re-save in one canonical form (external data only past 2 GB), then move into place."""
    import onnx

    from .qdq_fp16 import fp16_qdq

    proto = onnx.load(str(staged))
    _bypass_constant_identities(proto.graph)
    fp16_qdq(proto)  # FP16 models: Q/DQ in fp16 at opset 19 instead of wrapped in Casts
    big = proto.ByteSize() >= TWO_GB
    final_tmp = staged.with_suffix(".final")
    onnx.save_model(proto, str(final_tmp), save_as_external_data=big, location=path.name + ".data")
    if big:
        os.replace(final_tmp.parent / (path.name + ".data"), path.parent / (path.name + ".data"))
    os.replace(final_tmp, path)


def _bypass_constant_identities(graph) -> None:
    """The TorchScript exporter shares equal initializers through Identity nodes; point consumers at
    the initializer itself so every Q/DQ scale is a plain constant input."""
    initializers = {init.name for init in graph.initializer}
    outputs = {o.name for o in graph.output}
    alias = {
        node.output[0]: node.input[0]
        for node in graph.node
        if node.op_type == "Identity" and node.input[0] in initializers and node.output[0] not in outputs
    }
    if not alias:
        return
    keep = [node for node in graph.node if not (node.op_type == "Identity" and node.output[0] in alias)]
    for node in keep:
        for i, name in enumerate(node.input):
            if name in alias:
                node.input[i] = alias[name]
    del graph.node[:]
    graph.node.extend(keep)


@contextlib.contextmanager
def _quiet_export():
    """The exporters print progress and warnings meant for torch developers; keep the CLI readable."""
    import logging
    import warnings

    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
