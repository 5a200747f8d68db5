"""Eager PyTorch as the reference runner (FP32, FP16 or fake-quant, on CPU or CUDA)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from .base import Runner, TensorSpec

DTYPES = {"fp32": torch.float32, "fp16": torch.float16}


class EagerRunner(Runner):
    """Runs a module that takes the named inputs as keyword arguments and returns an object (or dict)
    holding the named outputs. The module's quantizer state is the caller's business."""

    def __init__(
        self,
        model: nn.Module,
        input_names: tuple[str, ...],
        output_names: tuple[str, ...],
        *,
        name: str = "eager",
        device: str = "cpu",
        dtype: str = "fp32",
    ) -> None:
        self.name = name
        self.device = torch.device(device)
        self.dtype = dtype
        self.model = model.to(self.device, DTYPES[dtype]).eval()
        self._inputs = [TensorSpec(n, "int64", ("batch", "sequence")) for n in input_names]
        self._outputs = [TensorSpec(n, "float32", ()) for n in output_names]

    @torch.inference_mode()
    def run(self, feed: dict[str, Any]) -> dict[str, np.ndarray]:
        tensors = {k: torch.as_tensor(v).to(self.device) for k, v in feed.items()}
        result = self.model(**tensors)
        return {spec.name: result[spec.name].float().cpu().numpy() for spec in self._outputs}

    def run_torch(self, feed: dict[str, torch.Tensor]) -> Any:
        """Run on tensors already on the device (for latency: no host copies)."""
        with torch.inference_mode():
            return self.model(**feed)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "backend": "pytorch", "torch": torch.__version__, "device": str(self.device),
                "dtype": self.dtype}  # fmt: skip
