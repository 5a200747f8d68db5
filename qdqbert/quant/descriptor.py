"""`QuantDescriptor`: how one tensor is quantized (bits, per-tensor or per-channel, range, calibrator)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from ..errors import QuantizerError

CALIB_METHODS = ("max", "histogram")


@dataclass(frozen=True)
class QuantDescriptor:
    """Validated, immutable quantization settings, as in pytorch-quantization.

    num_bits: integer bits (2..8; 8 is what TensorRT and ONNX QuantizeLinear take).
    axis: None for one scale per tensor, or the channel axis (int) for per-channel scales.
    narrow_range: use [-(2^(b-1)-1), 2^(b-1)-1] instead of [-2^(b-1), 2^(b-1)-1]. ONNX QuantizeLinear
        cannot express the narrow range, so an export refuses it.
    unsigned: quantize to [0, 2^b - 1] (for tensors known to be non-negative).
    calib_method: "max" (running max of |x|) or "histogram" (then percentile / mse / entropy).
    """

    num_bits: int = 8
    axis: int | None = None
    narrow_range: bool = False
    unsigned: bool = False
    calib_method: str = "histogram"

    def __post_init__(self) -> None:
        if not isinstance(self.num_bits, int) or not 2 <= self.num_bits <= 8:
            raise QuantizerError(f"QuantDescriptor num_bits={self.num_bits!r}: use an integer from 2 to 8")
        if self.axis is not None and not isinstance(self.axis, int):
            raise QuantizerError(f"QuantDescriptor axis={self.axis!r}: use None (per-tensor) or an int axis")
        if self.calib_method not in CALIB_METHODS:
            raise QuantizerError(
                f"QuantDescriptor calib_method={self.calib_method!r}: use one of {', '.join(CALIB_METHODS)}"
            )
        if self.unsigned and self.narrow_range:
            raise QuantizerError("QuantDescriptor: narrow_range applies to signed ranges only; drop one of them")

    @property
    def bound(self) -> int:
        """The largest quantized value; scale = amax / bound."""
        return (1 << self.num_bits) - 1 if self.unsigned else (1 << (self.num_bits - 1)) - 1

    @property
    def quant_range(self) -> tuple[int, int]:
        """(quant_min, quant_max) of the integer grid."""
        if self.unsigned:
            return 0, self.bound
        return (-self.bound if self.narrow_range else -self.bound - 1), self.bound

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QuantDescriptor:
        """Build from a dict; unknown keys are an error, not silently dropped."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise QuantizerError(f"QuantDescriptor: unknown key(s) {unknown}; known keys are {sorted(known)}")
        return cls(**data)


# Presets matching pytorch-quantization's QuantLinear defaults: activations per-tensor from a
# histogram, weights per output channel (axis 0) from their max.
QUANT_DESC_8BIT_PER_TENSOR = QuantDescriptor(num_bits=8, calib_method="histogram")
QUANT_DESC_8BIT_WEIGHT_PER_CHANNEL = QuantDescriptor(num_bits=8, axis=0, calib_method="max")
