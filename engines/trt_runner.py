"""Run a `.plan` with TensorRT or TensorRT-RTX: torch CUDA tensors as device buffers (no pycuda).

Before deserializing, the plan is checked against its `engine.json` (size and sha256: a truncated or
corrupted file; flavor and library version: a plan from another build; GPU compute capability:
a target it was not built for), so every mismatch is a one-line error instead of a crash inside
the library. One execution context per optimization profile; inputs outside every profile are
refused with the ranges that would fit.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .base import Runner, TensorSpec
from .errors import EngineError
from .files import sha256_file
from .trt_builder import import_flavor

_TORCH_DTYPES = {"float32": "float32", "float": "float32", "half": "float16", "float16": "float16",
                 "int64": "int64", "int32": "int32", "int8": "int8", "bool": "bool"}  # fmt: skip


def load_engine_meta(plan: Path) -> dict[str, Any]:
    """engine.json beside the plan, checked against the plan file itself."""
    if not plan.is_file():
        raise EngineError(f"engine {plan} does not exist")
    meta_path = plan.with_name("engine.json")
    if not meta_path.is_file():
        raise EngineError(f"{meta_path} is missing: the plan's build facts are needed to check it; rebuild the engine")
    try:
        meta = json.loads(meta_path.read_text())
    except ValueError as exc:
        raise EngineError(f"{meta_path} is not valid JSON ({exc})") from None
    size = plan.stat().st_size
    if size != meta.get("plan_bytes"):
        raise EngineError(f"{plan} has {size} bytes but engine.json records {meta.get('plan_bytes')}: the file is "
                          "truncated or from another build; rebuild it")  # fmt: skip
    if meta.get("plan_sha256") and sha256_file(plan) != meta["plan_sha256"]:
        raise EngineError(f"{plan} does not match the sha256 in engine.json: the file is corrupt; rebuild it")
    return meta


def check_compatible(meta: dict[str, Any], trt, torch) -> None:
    """Refuse a plan built by another flavor/version, or for another GPU."""
    if trt.__version__ != meta.get("library_version"):
        raise EngineError(f"the plan was built by {meta.get('flavor')} {meta.get('library_version')}, this is "
                          f"{trt.__version__}: rebuild it with this version (plans are not portable across versions)")  # fmt: skip
    if not torch.cuda.is_available():
        raise EngineError(f"running a {meta.get('flavor')} plan needs a CUDA GPU and none is visible here")
    major, minor = torch.cuda.get_device_capability()
    targets = meta.get("compute_capabilities")
    if targets and f"{major}.{minor}" not in targets:
        raise EngineError(f"the plan targets compute capability {', '.join(targets)}; this GPU "
                          f"({torch.cuda.get_device_name()}) is {major}.{minor}: rebuild with --compute-capability {major}.{minor}")  # fmt: skip


class TensorRTRunner(Runner):
    def __init__(self, plan: str | Path, *, device: int = 0, name: str | None = None) -> None:
        import torch

        plan = Path(plan)
        self.meta = load_engine_meta(plan)
        trt = import_flavor(self.meta["flavor"])
        check_compatible(self.meta, trt, torch)
        self._torch, self._trt = torch, trt
        self.device = torch.device("cuda", device)
        self.name = name or self.meta["flavor"]
        self._logger = trt.Logger(trt.Logger.ERROR)
        self._runtime = trt.Runtime(self._logger)
        with torch.cuda.device(self.device):
            self.engine = self._runtime.deserialize_cuda_engine(plan.read_bytes())
        if self.engine is None:
            raise EngineError(f"{self.meta['flavor']} could not deserialize {plan} (corrupt, or built for another GPU)")
        self.stream = torch.cuda.Stream(self.device)
        self.contexts = []
        for index in range(self.engine.num_optimization_profiles):
            context = self.engine.create_execution_context()
            context.set_optimization_profile_async(index, self.stream.cuda_stream)
            self.contexts.append(context)
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        is_input = {n: self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names}
        self._inputs = [self._spec(n) for n in names if is_input[n]]
        self._outputs = [self._spec(n) for n in names if not is_input[n]]

    def _spec(self, name: str) -> TensorSpec:
        dtype = str(self.engine.get_tensor_dtype(name)).split(".")[-1].lower()
        return TensorSpec(name, _TORCH_DTYPES.get(dtype, dtype), tuple(self.engine.get_tensor_shape(name)))

    def _profile_for(self, shapes: dict[str, tuple[int, ...]]) -> int:
        ranges = []
        for index in range(self.engine.num_optimization_profiles):
            fits = True
            for name, shape in shapes.items():
                lo, _, hi = self.engine.get_tensor_profile_shape(name, index)
                ranges.append(f"{name}: min {tuple(lo)} max {tuple(hi)}")
                fits &= len(lo) == len(shape) and all(a <= s <= b for a, s, b in zip(lo, shape, hi))
            if fits:
                return index
        received = ", ".join(f"{n} {s}" for n, s in shapes.items())
        raise EngineError(f"{self.name}: input shapes {received} fit no optimization profile ({'; '.join(ranges[:3])})")

    def run_torch(self, feed: dict[str, Any]) -> dict[str, Any]:
        """Run on device tensors; returns device tensors (for latency: no host copies)."""
        torch = self._torch
        self.check_feed(feed)
        tensors = {k: torch.as_tensor(v).to(self.device).contiguous() for k, v in feed.items()}
        shapes = {k: tuple(v.shape) for k, v in tensors.items()}
        index = self._profile_for(shapes)
        context = self.contexts[index]
        for name, tensor in tensors.items():
            context.set_input_shape(name, tensor.shape)
            context.set_tensor_address(name, tensor.data_ptr())
        outputs = {}
        for spec in self._outputs:
            shape = tuple(context.get_tensor_shape(spec.name))
            outputs[spec.name] = torch.empty(shape, dtype=getattr(torch, spec.dtype), device=self.device)
            context.set_tensor_address(spec.name, outputs[spec.name].data_ptr())
        if not context.execute_async_v3(self.stream.cuda_stream):
            raise EngineError(f"{self.name}: execute_async_v3 failed for shapes {shapes}")
        self.stream.synchronize()
        return outputs

    def run(self, feed: dict[str, Any]) -> dict[str, np.ndarray]:
        return {k: v.float().cpu().numpy() for k, v in self.run_torch(feed).items()}

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "backend": self.meta["flavor"], "version": self.meta["library_version"],
                "gpu": self._torch.cuda.get_device_name(self.device), "profiles": len(self.contexts)}  # fmt: skip

    def close(self) -> None:
        self.contexts = []
        self.engine = None
