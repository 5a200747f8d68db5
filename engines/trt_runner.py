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
from .trt_builder import import_flavor, numpy_dtype


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
    gpu = f"{torch.cuda.get_device_name()}, compute capability {major}.{minor}"
    runs_on = getattr(trt, "ComputeCapability", None)
    if meta.get("flavor") == "tensorrt-rtx" and runs_on is not None and f"SM{major}{minor}" not in runs_on.__members__:
        raise EngineError(f"TensorRT-RTX engines do not run on this GPU ({gpu}); use full TensorRT there "
                          "(docker/Dockerfile, --backend tensorrt)")  # fmt: skip
    targets = meta.get("compute_capabilities")
    if targets and f"{major}.{minor}" not in targets:
        raise EngineError(f"the plan targets compute capability {', '.join(targets)}; this GPU is {gpu}: "
                          f"rebuild with --compute-capability {major}.{minor}")  # fmt: skip


class TensorRTRunner(Runner):
    """Runs a plan on the caller's current torch CUDA stream: inputs are copied, the engine enqueued and
    outputs allocated on that stream, so CUDA events on it time exactly the engine's work, and `run_torch`
    returns without synchronizing.

    cuda_graph: replay a CUDA graph per input shape instead of launching every kernel (launch-bound
    small batches gain most). TensorRT-RTX captures natively (its runtime config); full TensorRT is
    captured here with static input/output buffers, so `run_torch` then returns those buffers, which the
    next call overwrites (clone to keep them)."""

    def __init__(self, plan: str | Path, *, device: int = 0, name: str | None = None, cuda_graph: bool = False) -> None:
        import torch

        plan = Path(plan)
        self.meta = load_engine_meta(plan)
        trt = import_flavor(self.meta["flavor"])
        check_compatible(self.meta, trt, torch)
        self._torch, self._trt = torch, trt
        self.device = torch.device("cuda", device)
        self.cuda_graph = cuda_graph
        self.name = name or self.meta["flavor"] + ("-cuda-graph" if cuda_graph else "")
        self._logger = trt.Logger(trt.Logger.ERROR)
        self._runtime = trt.Runtime(self._logger)
        with torch.cuda.device(self.device):
            self.engine = self._runtime.deserialize_cuda_engine(plan.read_bytes())
            if self.engine is None:
                raise EngineError(
                    f"{self.meta['flavor']} could not deserialize {plan} (corrupt, or built for another GPU)"
                )
            # TensorRT-RTX captures CUDA graphs itself, per shape, once its JIT kernels exist
            self._native_graphs = cuda_graph and self.meta["flavor"] == "tensorrt-rtx"
            stream = torch.cuda.current_stream(self.device)
            self.contexts = []
            for index in range(self.engine.num_optimization_profiles):
                context = self._create_context()
                context.set_optimization_profile_async(index, stream.cuda_stream)
                self.contexts.append(context)
            stream.synchronize()
        self._graphs: dict[tuple, tuple[Any, dict[str, Any], dict[str, Any]]] = {}
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        is_input = {n: self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names}
        self._inputs = [self._spec(n) for n in names if is_input[n]]
        self._outputs = [self._spec(n) for n in names if not is_input[n]]

    def _create_context(self):
        if not hasattr(self.engine, "create_runtime_config"):
            return self.engine.create_execution_context()
        config = self.engine.create_runtime_config()
        if self._native_graphs:
            config.cuda_graph_strategy = self._trt.CudaGraphStrategy.WHOLE_GRAPH_CAPTURE
        return self.engine.create_execution_context(config)

    def _spec(self, name: str) -> TensorSpec:
        return TensorSpec(
            name, numpy_dtype(self.engine.get_tensor_dtype(name)), tuple(self.engine.get_tensor_shape(name))
        )

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

    def _bind(self, context, inputs: dict[str, Any]) -> dict[str, Any]:
        """Set shapes and addresses; allocate the outputs (on the current stream)."""
        torch = self._torch
        for name, tensor in inputs.items():
            context.set_input_shape(name, tuple(tensor.shape))
            context.set_tensor_address(name, tensor.data_ptr())
        outputs = {}
        for spec in self._outputs:
            shape = tuple(context.get_tensor_shape(spec.name))
            outputs[spec.name] = torch.empty(shape, dtype=getattr(torch, spec.dtype), device=self.device)
            context.set_tensor_address(spec.name, outputs[spec.name].data_ptr())
        return outputs

    def _enqueue(self, context, stream, shapes) -> None:
        if not context.execute_async_v3(stream.cuda_stream):
            raise EngineError(f"{self.name}: execute_async_v3 failed for shapes {shapes}")

    def run_torch(self, feed: dict[str, Any]) -> dict[str, Any]:
        """Enqueue on the current stream; returns device tensors without synchronizing."""
        self.check_feed(feed)
        with self._torch.cuda.device(self.device):  # the engine's GPU, whichever one is current
            return self._run_on_device(feed)

    def _run_on_device(self, feed: dict[str, Any]) -> dict[str, Any]:
        torch = self._torch
        stream = torch.cuda.current_stream(self.device)
        tensors = {k: torch.as_tensor(v).to(self.device, non_blocking=True).contiguous() for k, v in feed.items()}
        shapes = {k: tuple(v.shape) for k, v in tensors.items()}
        index = self._profile_for(shapes)
        if self.cuda_graph and not self._native_graphs:
            return self._replay(index, tensors, shapes, stream)
        outputs = self._bind(self.contexts[index], tensors)
        self._enqueue(self.contexts[index], stream, shapes)
        return outputs

    def _replay(self, index: int, tensors: dict[str, Any], shapes: dict, stream) -> dict[str, Any]:
        """Full TensorRT: capture one graph per (profile, shapes) into static buffers, then replay."""
        torch = self._torch
        key = (index, tuple(sorted(shapes.items())))
        if key not in self._graphs:
            context = self.contexts[index]
            static_inputs = {k: v.clone() for k, v in tensors.items()}
            outputs = self._bind(context, static_inputs)
            capturable = getattr(context, "is_stream_capturable", None)  # TensorRT ≥ 10.x, RTX ≥ 1.2
            if capturable is not None and not capturable(stream.cuda_stream):
                raise EngineError(
                    f"{self.name}: this engine cannot be captured in a CUDA graph; run it without cuda_graph"
                )
            self._enqueue(context, stream, shapes)  # a first launch settles shape-dependent state before capture
            graph = torch.cuda.CUDAGraph()
            side = torch.cuda.Stream(self.device)
            side.wait_stream(stream)
            with torch.cuda.graph(graph, stream=side):
                self._enqueue(context, side, shapes)
            stream.wait_stream(side)
            self._graphs[key] = (graph, static_inputs, outputs)
        graph, static_inputs, outputs = self._graphs[key]
        for name, tensor in tensors.items():
            static_inputs[name].copy_(tensor, non_blocking=True)
        graph.replay()
        return outputs

    def run(self, feed: dict[str, Any]) -> dict[str, np.ndarray]:
        return {k: v.float().cpu().numpy() for k, v in self.run_torch(feed).items()}

    def layer_summary(self) -> dict[str, Any]:
        """The engine inspector's layer-precision summary (see engines.layers)."""
        from .layers import inspect_engine

        return inspect_engine(self.engine, self._trt)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "backend": self.meta["flavor"], "version": self.meta["library_version"],
                "gpu": self._torch.cuda.get_device_name(self.device), "profiles": len(self.contexts),
                "cuda_graph": self.cuda_graph}  # fmt: skip

    def close(self) -> None:
        self._graphs = {}
        self.contexts = []
        self.engine = None
