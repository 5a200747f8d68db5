"""ONNX Runtime runner: CPU or CUDA execution provider, optimization level chosen and recorded.

`ORT_ENABLE_BASIC` runs Q/DQ literally (the parity reference); `all` lets ORT fuse Q/DQ into integer
kernels, which on AVX2 CPUs without VNNI can saturate and move INT8 outputs — the report states the
level used and the parity it gave.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .base import Runner, TensorSpec
from .errors import EngineError, require

LEVELS = ("disable", "basic", "extended", "all")
_ORT_DTYPES = {"tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(float)": "float32",
               "tensor(float16)": "float16"}  # fmt: skip


class OnnxRuntimeRunner(Runner):
    def __init__(
        self,
        model: str | os.PathLike | bytes,
        *,
        level: str = "basic",
        provider: str = "cpu",
        threads: int | None = None,
        unsigned_activations: bool = False,
        name: str | None = None,
    ) -> None:
        """level: graph optimization level (basic runs Q/DQ literally). unsigned_activations: run
        the uint8/128 rewrite of the activation Q/DQ pairs (see ort_rewrite), faster on x86 CPUs."""
        ort = require("onnxruntime", "onnx")
        if level not in LEVELS:
            raise EngineError(f"onnxruntime optimization level {level!r} is unknown; use one of {', '.join(LEVELS)}")
        self.level, self.provider = level, provider
        self.name = name or f"onnxruntime-{provider}-{level}" + ("-u8" if unsigned_activations else "")
        self.rewrite: dict[str, Any] | None = None
        options = ort.SessionOptions()
        options.graph_optimization_level = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[level]
        if threads:
            options.intra_op_num_threads = threads
        providers = {"cpu": ["CPUExecutionProvider"], "cuda": ["CUDAExecutionProvider"]}.get(provider)
        if providers is None:
            raise EngineError(f"onnxruntime provider {provider!r} is unknown; use cpu or cuda")
        if provider == "cuda" and "CUDAExecutionProvider" not in ort.get_available_providers():
            raise EngineError(
                "onnxruntime has no CUDA provider here: install 'qdqbert-trt[gpu]' (onnxruntime-gpu in place of onnxruntime) on a CUDA machine"
            )
        if not isinstance(model, bytes):
            path = Path(model)
            if not path.is_file():
                raise EngineError(f"ONNX model {path} does not exist")
            model = str(path)
            if unsigned_activations:
                from .ort_rewrite import unsigned_activations as rewrite

                try:
                    model, self.rewrite = rewrite(path)
                except Exception as exc:  # onnx raises DecodeError & co. for files that are not models
                    raise EngineError(f"{path} is not an ONNX model ({type(exc).__name__})") from None
        try:
            self.session = ort.InferenceSession(model, options, providers=providers)
        except Exception as exc:  # ORT raises its own exception types for invalid models
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise EngineError(
                f"onnxruntime cannot load {model if isinstance(model, str) else 'the model'}: {first}"
            ) from None
        self._inputs = [
            TensorSpec(i.name, _ORT_DTYPES.get(i.type, i.type), tuple(i.shape)) for i in self.session.get_inputs()
        ]
        self._outputs = [
            TensorSpec(o.name, _ORT_DTYPES.get(o.type, o.type), tuple(o.shape)) for o in self.session.get_outputs()
        ]
        self._version = ort.__version__

    def run(self, feed: dict[str, Any]) -> dict[str, np.ndarray]:
        feed = {k: (v.cpu().numpy() if hasattr(v, "cpu") else np.asarray(v)) for k, v in feed.items()}
        self.check_feed(feed)
        values = self.session.run(None, feed)
        return {spec.name: value for spec, value in zip(self._outputs, values)}

    def run_torch(self, feed: dict[str, Any]) -> list[Any]:
        """CUDA provider: bind torch CUDA tensors in place and leave the outputs on the GPU (OrtValues),
        so a latency loop times the model, not host copies. Returns once ORT's stream is done."""
        if self.provider != "cuda":
            raise EngineError(f"{self.name}: run_torch binds GPU tensors; use run() with the CPU provider")
        self.check_feed(feed)
        binding = self.session.io_binding()
        for name, tensor in feed.items():
            tensor = tensor.contiguous()
            binding.bind_input(name, "cuda", tensor.device.index or 0, np.dtype(str(tensor.dtype).replace("torch.", "")),
                               tuple(tensor.shape), tensor.data_ptr())  # fmt: skip
        for spec in self._outputs:
            binding.bind_output(spec.name, "cuda")
        self.session.run_with_iobinding(binding)
        return binding.get_outputs()

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "backend": "onnxruntime", "onnxruntime": self._version,
                "provider": self.provider, "optimization_level": self.level, "graph_rewrite": self.rewrite}  # fmt: skip

    def close(self) -> None:
        self.session = None
