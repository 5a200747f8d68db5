"""The benchmark matrix: model shape × batch × sequence × backend, and how each cell is prepared.

Every cell runs the feature-extraction graph (last hidden state) of one model so backends are
comparable, and states its parity against eager FP32 on the same input (a fast but wrong engine
shows as wrong).
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass

MODELS = {
    # name: (BertConfig overrides or "embedded" for the real MiniLM, needs a GPU)
    "tiny": (dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37), False),
    "minilm": ("embedded", False),
    "bert-base": (dict(), False),
    "bert-large": (dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096), True),
}
BATCHES = (1, 8, 32)
SEQUENCES = (128, 384)
BACKENDS = {
    # name: (needs a GPU, what it is)
    "eager-fp32": (False, "PyTorch eager, float32"),
    "eager-fake-quant": (False, "PyTorch eager with fake-quant nodes (the INT8 reference)"),
    "eager-fp16": (True, "PyTorch eager, float16"),
    "compile-fp16": (
        True,
        "torch.compile(mode='reduce-overhead') float16 with CUDA graphs, the strongest PyTorch peer",
    ),
    "ort-fp32": (False, "ONNX Runtime, FP32 export, all optimizations"),
    "ort-cuda-fp32": (True, "ONNX Runtime CUDA execution provider, FP32 export, IO binding on GPU tensors"),
    "ort-int8-qdq": (False, "ONNX Runtime running our TensorRT-style Q/DQ graph, all optimizations"),
    "ort-int8-qdq-u8": (False, "the same graph with activation Q/DQ rewritten to uint8/128 (same values)"),
    "ort-int8-qdq-gemm": (False, "our Q/DQ graph with the residual adds left in float: the ops the peers quantize"),
    "ort-quantize-dynamic": (False, "peer: onnxruntime.quantization.quantize_dynamic, per-channel int8 weights"),
    "ort-quantize-static": (False, "peer: onnxruntime.quantization.quantize_static, QDQ, per-channel, MinMax"),
    "tensorrt-int8": (True, "TensorRT / TensorRT-RTX engine from our Q/DQ graph, float parts in FP16"),
    "tensorrt-int8-graph": (True, "the same engine replayed as a CUDA graph (launch overhead removed)"),
    "tensorrt-fp16": (True, "TensorRT / TensorRT-RTX engine from an FP16 export"),
}
QUICK = {"model": ("tiny",), "batch": (1,), "seq": (128,),
         "backend": ("eager-fp32", "eager-fake-quant", "ort-fp32", "ort-int8-qdq")}  # fmt: skip
# --gpu: what the nightly GPU run measures (the BERT shapes on the GPU backends)
GPU = {"model": ("bert-base", "bert-large"), "batch": BATCHES, "seq": SEQUENCES,
       "backend": tuple(name for name, (gpu, _) in BACKENDS.items() if gpu) + ("eager-fp32", "eager-fake-quant")}  # fmt: skip


@dataclass(frozen=True)
class Cell:
    model: str
    batch: int
    seq: int
    backend: str

    @property
    def key(self) -> str:
        return f"{self.model}/b{self.batch}/s{self.seq}/{self.backend}"

    def to_dict(self) -> dict:
        return asdict(self)


def parse_only(items: list[str]) -> dict[str, set[str]]:
    """`--only model=bert-base,minilm --only backend=ort-int8-qdq` → {"model": {...}, "backend": {...}}."""
    from exporter.errors import UsageError

    filters: dict[str, set[str]] = {}
    for item in items:
        key, _, values = item.partition("=")
        if key not in ("model", "batch", "seq", "backend") or not values:
            raise UsageError(f"--only {item!r}: use model=…, batch=…, seq=… or backend=… (comma-separated values)")
        filters.setdefault(key, set()).update(v.strip() for v in values.split(","))
    return filters


def cells(preset: str | None = None, only: dict[str, set[str]] | None = None) -> list[Cell]:
    """The matrix, or a preset ("quick", "gpu"), filtered by --only."""
    full = {"model": tuple(MODELS), "batch": BATCHES, "seq": SEQUENCES, "backend": tuple(BACKENDS)}
    axes = {"quick": QUICK, "gpu": GPU, None: full}[preset]
    selected = []
    for model, batch, seq, backend in itertools.product(axes["model"], axes["batch"], axes["seq"], axes["backend"]):
        cell = Cell(model, batch, seq, backend)
        if only and any(str(getattr(cell, k)) not in v for k, v in only.items()):
            continue
        selected.append(cell)
    return selected
