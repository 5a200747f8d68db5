"""`TensorQuantizer`: the fake-quant node, a small state machine (calibrate / quantize / disabled)."""

from __future__ import annotations

import math
from enum import Enum

import torch
from torch import nn

from ..errors import QuantizerError
from .calib import CALIB_METHODS, HistogramCalibrator, MaxCalibrator
from .descriptor import QUANT_DESC_8BIT_PER_TENSOR, QuantDescriptor

# Smallest amax kept: a zero amax (an all-zero channel) would give a zero scale, which ONNX and
# TensorRT reject. Clamped once when amax is set, never at run time, so scales stay constants.
AMAX_FLOOR = 1e-6


class QuantMode(str, Enum):
    QUANTIZE = "quantize"
    CALIBRATE = "calibrate"
    DISABLED = "disabled"


class TensorQuantizer(nn.Module):
    """Fake-quantizes a tensor with a symmetric (zero point 0) scale of amax / bound.

    `amax` is a buffer, so it travels with `state_dict` and checkpoints; NaN means "not calibrated".
    In quantize mode the forward is `torch.fake_quantize_per_{tensor,channel}_affine`, which the ONNX
    exporter turns into QuantizeLinear/DequantizeLinear and whose gradient is the clipped
    straight-through estimator (QAT). amax itself is frozen during QAT (pytorch-quantization's
    default `learn_amax=False`): scales stay the calibrated ones, weights adapt to them.
    """

    def __init__(self, desc: QuantDescriptor = QUANT_DESC_8BIT_PER_TENSOR, num_channels: int | None = None) -> None:
        super().__init__()
        if (desc.axis is None) != (num_channels is None):
            raise QuantizerError(
                f"TensorQuantizer: axis={desc.axis} needs num_channels (per-channel) and axis=None needs none"
            )
        self.desc = desc
        self.name = "TensorQuantizer"  # set to the module path by the model (see name_quantizers)
        shape = () if num_channels is None else (num_channels,)
        self.register_buffer("amax", torch.full(shape, math.nan, dtype=torch.float32))  # float32 in any model dtype
        self.mode = QuantMode.QUANTIZE
        self._calibrator: MaxCalibrator | HistogramCalibrator | None = None
        self._calibrated_for: tuple | None = None

    def _apply(self, fn, recurse: bool = True):
        """`.half()` / `.to(dtype)` move amax to the new device but keep it float32: scales are
        computed in float32 (ONNX QuantizeLinear before opset 19 takes float32 scales), and an fp16
        amax would round the calibrated ranges."""
        before = self.amax
        super()._apply(fn, recurse)
        if self.amax.dtype != before.dtype:
            self._buffers["amax"] = before.to(self.amax.device)
        return self

    # -- state machine ---------------------------------------------------------------------------
    @property
    def is_calibrated(self) -> bool:
        # cached per amax storage and version: the check runs on every forward, and reading a CUDA
        # tensor's value would synchronize the device each time
        if self.amax.is_inference():  # inference tensors keep no version counter
            return bool(torch.isfinite(self.amax).all())
        key = (self.amax.data_ptr(), self.amax._version, self.amax.device)
        if self._calibrated_for is None or self._calibrated_for[0] != key:
            self._calibrated_for = (key, bool(torch.isfinite(self.amax).all()))
        return self._calibrated_for[1]

    def enable_calib(self) -> None:
        """Collect statistics on every forward (the tensor passes through unquantized)."""
        if self._calibrator is None:
            if self.desc.calib_method == "max":
                self._calibrator = MaxCalibrator(self.desc.axis)
            else:
                self._calibrator = HistogramCalibrator(unsigned=self.desc.unsigned)
        self.mode = QuantMode.CALIBRATE

    def enable_quant(self) -> None:
        self.mode = QuantMode.QUANTIZE

    def disable(self) -> None:
        self.mode = QuantMode.DISABLED

    def load_calib_amax(self, method: str = "percentile", **kwargs: float) -> None:
        """Turn the collected statistics into amax and drop them. Histogram quantizers take `method`
        (max / percentile / mse / entropy, with e.g. percentile=99.99); max quantizers always use max."""
        self.set_amax(self.compute_calib_amax(method, **kwargs))
        self._calibrator = None

    def compute_calib_amax(self, method: str = "percentile", **kwargs: float) -> torch.Tensor:
        """The amax `method` gives from the collected statistics, which are kept (to try several)."""
        if method not in CALIB_METHODS:
            raise QuantizerError(
                f"{self.name}: calibration method {method!r} is unknown; use one of {', '.join(CALIB_METHODS)}"
            )
        if self._calibrator is None:
            raise QuantizerError(f"{self.name}: no statistics collected; call enable_calib() and run data first")
        if isinstance(self._calibrator, MaxCalibrator):
            amax = self._calibrator.compute_amax("max")
        else:
            amax = self._calibrator.compute_amax(method, num_bits=self.desc.num_bits, **kwargs)
        if amax is None:
            raise QuantizerError(
                f"{self.name}: saw no data during calibration; make sure the calibration batches reach this layer"
            )
        return amax

    def set_amax(self, amax: torch.Tensor | float) -> None:
        amax = torch.as_tensor(amax, dtype=torch.float32).detach().to(self.amax.device)
        if amax.shape != self.amax.shape:
            raise QuantizerError(
                f"{self.name}: amax of shape {tuple(amax.shape)} given, expected {tuple(self.amax.shape)}"
            )
        if not torch.isfinite(amax).all():
            raise QuantizerError(
                f"{self.name}: amax is not finite ({amax.min().item()}..{amax.max().item()}); "
                "the tensor saw inf/NaN values (masks must never be quantized)"
            )
        with torch.no_grad():
            self.amax.copy_(amax.clamp(min=AMAX_FLOOR))

    # -- forward ---------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode is QuantMode.DISABLED:
            return x
        if self.mode is QuantMode.CALIBRATE:
            if not torch.isfinite(x).all():
                raise QuantizerError(
                    f"{self.name}: calibration input has inf/NaN values; this tensor cannot be quantized"
                )
            self._calibrator.collect(x)
            return x
        # (export and compile trace the graph once; the exporter checks calibration up front)
        if not (torch.jit.is_tracing() or torch.compiler.is_compiling()) and not self.is_calibrated:
            raise QuantizerError(
                f"{self.name} has no amax: run qdqbert.calibrate(model, batches) first, or "
                "qdqbert.quant.set_quantization(model, False) to run in floating point"
            )
        return fake_quant(x, self.amax, self.desc)

    def extra_repr(self) -> str:
        d = self.desc
        axis = "per-tensor" if d.axis is None else f"axis={d.axis}"
        if not self.is_calibrated:
            amax = "uncalibrated"
        elif self.amax.dim() == 0:
            amax = f"amax={self.amax.item():.4f}"
        else:
            amax = f"amax=[{self.amax.min().item():.4f}, {self.amax.max().item():.4f}]({self.amax.numel()})"
        return f"{d.num_bits}bit {'unsigned ' if d.unsigned else ''}{axis} {self.mode.value} {amax}"


def fake_quant(x: torch.Tensor, amax: torch.Tensor, desc: QuantDescriptor) -> torch.Tensor:
    """Quantize-dequantize with scale = amax / bound and zero point 0 (ONNX Q/DQ semantics)."""
    qmin, qmax = desc.quant_range
    dtype = x.dtype
    if dtype != torch.float32:
        x = x.float()  # fake-quant kernels (and QuantizeLinear before opset 19) take float32
    scale = amax / desc.bound
    axis = -1 if desc.axis is None else desc.axis % x.dim()
    if torch.compiler.is_compiling():
        # torch.export / torch.compile: one opaque op that the dynamo ONNX exporter maps to Q/DQ
        y = torch.ops.qdqbert.fake_quant(x, scale, axis, qmin, qmax)
    elif not torch.jit.is_tracing() and not (torch.is_grad_enabled() and x.requires_grad):
        y = _fake_quant_inference(x, scale, axis, qmin, qmax)
    else:
        y = _fake_quant_kernel(x, scale, axis, qmin, qmax)
    return y if dtype == torch.float32 else y.to(dtype)


def _fake_quant_kernel(x: torch.Tensor, scale: torch.Tensor, axis: int, qmin: int, qmax: int) -> torch.Tensor:
    if axis < 0:
        zero_point = torch.zeros((), dtype=torch.int32, device=x.device)
        return torch.fake_quantize_per_tensor_affine(x, scale, zero_point, qmin, qmax)
    zero_point = torch.zeros(scale.shape, dtype=torch.int32, device=x.device)
    return torch.fake_quantize_per_channel_affine(x, scale, zero_point, axis, qmin, qmax)


def _fake_quant_inference(x: torch.Tensor, scale: torch.Tensor, axis: int, qmin: int, qmax: int) -> torch.Tensor:
    """Bit-identical to PyTorch's fake-quant kernel (x · (1/scale), round half to even, clamp,
    · scale) without the gradient mask it also computes: ~10x faster on CPU when no grad is needed."""
    if axis >= 0:
        scale = scale.view([-1 if d == axis else 1 for d in range(x.dim())])
    y = x * (1.0 / scale)
    return y.round_().clamp_(qmin, qmax).mul_(scale)


# The same computation as a custom op (axis -1 = per-tensor). PyTorch's own fake-quant ops trace to
# `*_cachemask_tensor_qparams`, which torch.export cannot handle; this op traces as itself.
@torch.library.custom_op("qdqbert::fake_quant", mutates_args=())
def _fake_quant_op(x: torch.Tensor, scale: torch.Tensor, axis: int, qmin: int, qmax: int) -> torch.Tensor:
    return _fake_quant_kernel(x, scale, axis, qmin, qmax)


@_fake_quant_op.register_fake
def _(x: torch.Tensor, scale: torch.Tensor, axis: int, qmin: int, qmax: int) -> torch.Tensor:
    return torch.empty_like(x)


def _setup_context(ctx, inputs, output) -> None:
    x, scale, axis, qmin, qmax = inputs
    if axis >= 0:
        scale = scale.view([-1 if d == axis else 1 for d in range(x.dim())])
    q = torch.round(x / scale)
    ctx.save_for_backward((q >= qmin) & (q <= qmax))


def _backward(ctx, grad):
    (inside,) = ctx.saved_tensors
    return grad * inside, None, None, None, None  # clipped straight-through estimator


_fake_quant_op.register_autograd(_backward, setup_context=_setup_context)
