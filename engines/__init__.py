"""Build and run engines behind one small interface: TensorRT / TensorRT-RTX, ONNX Runtime, eager
PyTorch; parity and latency. Importing this package needs neither CUDA, TensorRT nor ONNX Runtime."""

from .base import Runner, TensorSpec
from .compare import TOLERANCES, best_spans, compare, concat_outputs, tolerance_check
from .errors import EngineError
from .latency import measure_cpu, measure_cuda
from .torch_runner import EagerRunner

__all__ = [
    "TOLERANCES",
    "EagerRunner",
    "EngineError",
    "Runner",
    "TensorSpec",
    "best_spans",
    "compare",
    "concat_outputs",
    "measure_cpu",
    "measure_cuda",
    "tolerance_check",
]
