"""Prepare and run benchmark cells: models, exported graphs and engines are made once per model and
reused across cells; each cell measures latency, memory and parity against eager FP32."""

from __future__ import annotations

import copy
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch

import qdqbert
from engines import compare, measure_cpu, measure_cuda
from engines.errors import EngineError
from exporter import data
from exporter.onnx_export import export_onnx
from exporter.tasks import INPUT_NAMES, get_task

from .matrix import BACKENDS, MODELS, Cell

TASK = get_task("feature-extraction")


class Skip(Exception):
    """A cell that cannot run here (backend missing, no GPU, out of memory); the run goes on."""


def _rss_mb() -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


class ModelBench:
    """Everything one model shape needs: eager models, calibration, ONNX graphs, engines."""

    def __init__(self, name: str, workdir: Path, calib_samples: int = 32) -> None:
        self.name, self.workdir = name, workdir / name
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.calib_samples = calib_samples
        shape, self.needs_gpu = MODELS[name]
        self.shape = shape
        self.cuda = torch.cuda.is_available()

    @cached_property
    def tokenizer(self):
        from transformers import AutoTokenizer

        from exporter.preparation import default_model_dir

        return AutoTokenizer.from_pretrained(default_model_dir())

    @cached_property
    def fp32(self) -> torch.nn.Module:
        from exporter.preparation import default_model_dir

        if self.shape == "embedded":
            model = qdqbert.QDQBertModel.from_pretrained(default_model_dir())
        else:
            torch.manual_seed(0)
            model = qdqbert.QDQBertModel(qdqbert.QDQBertConfig(**self.shape))
        qdqbert.set_quantization(model, False)
        return model.eval()

    @cached_property
    def fake_quant(self) -> torch.nn.Module:
        model = copy.deepcopy(self.fp32)
        qdqbert.set_quantization(model, True)
        qdqbert.calibrate(model, self.calib_batches, method="percentile", percentile=99.99, progress=False)
        return model

    @cached_property
    def calib_batches(self) -> list[dict[str, torch.Tensor]]:
        samples = data.builtin_corpus()[: self.calib_samples]
        return data.batches(data.encode(samples, self.tokenizer, TASK, 128), 8)

    def inputs(self, batch: int, seq: int) -> dict[str, torch.Tensor]:
        """Real English text filling every position (passages joined), batch × seq."""
        corpus = [s.text for s in data.builtin_corpus()]
        texts = [" ".join(corpus[i:] + corpus[:i]) for i in range(batch)]
        encoded = self.tokenizer(texts, truncation=True, max_length=seq, padding="max_length", return_tensors="pt")
        return {k: encoded[k] for k in INPUT_NAMES}

    def _export(self, name: str, model: torch.nn.Module, half: bool = False) -> Path:
        """`name`.onnx once per model; half: from an FP16 copy (the model itself stays FP32)."""
        path = self.workdir / f"{name}.onnx"
        if not path.exists():
            export_onnx(copy.deepcopy(model).half() if half else model, TASK, self.inputs(2, 16), path)
        return path

    @cached_property
    def onnx_fp32(self) -> Path:
        return self._export("fp32", self.fp32)

    @cached_property
    def onnx_int8(self) -> Path:
        return self._export("int8", self.fake_quant)

    @cached_property
    def onnx_int8_gemm(self) -> Path:
        """Q/DQ on the GEMMs only: the residual adds left in float (`--skip-quant '**.add_*'`), the
        same ops ONNX Runtime's own quantizers quantize."""
        from exporter.preparation import skipped_quantizers

        model = copy.deepcopy(self.fake_quant)
        found = qdqbert.quantizers(model)
        for name in skipped_quantizers(model, ["**.add_*"]):
            found[name].disable()
        return self._export("int8-gemm", model)

    @cached_property
    def onnx_dynamic(self) -> Path:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        path = self.workdir / "dynamic.onnx"
        quantize_dynamic(str(self.onnx_fp32), str(path), per_channel=True, weight_type=QuantType.QInt8)
        return path

    @cached_property
    def onnx_static(self) -> Path:
        from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

        batches = [{k: v.numpy() for k, v in b.items()} for b in self.calib_batches]

        class Reader(CalibrationDataReader):
            def __init__(self) -> None:
                self.items = iter(batches)

            def get_next(self):
                return next(self.items, None)

        path = self.workdir / "static.onnx"
        quantize_static(str(self.onnx_fp32), str(path), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)  # fmt: skip
        return path

    def engine(self, precision: str, batch: int, seq: int) -> Path:
        from engines.trt_builder import BuildOptions, Profile, available_flavors, build_engine

        flavors = available_flavors()
        if not flavors:
            raise Skip("neither TensorRT nor TensorRT-RTX is installed")
        if not self.cuda:
            raise Skip("TensorRT engines run only on a GPU")
        # INT8 engines keep their float parts in FP16, as TensorRT deployments (and demoBERT) run them
        onnx_path = self._export(f"{precision}-fp16", self.fake_quant if precision == "int8" else self.fp32, half=True)
        plan = self.workdir / f"{precision}-b{batch}-s{seq}" / "model.plan"
        if not plan.exists():
            shape = ((1, 1), (batch, seq), (batch, seq))
            build_engine(onnx_path, plan, [Profile({n: shape for n in INPUT_NAMES})], BuildOptions(flavor=flavors[0]))
        return plan


def run_cell(bench: ModelBench, cell: Cell, reference_cache: dict, warmup: int, iters: int) -> dict[str, Any]:
    """Latency, memory and parity of one cell; raises Skip when it cannot run here."""
    needs_gpu = BACKENDS[cell.backend][0] or bench.needs_gpu
    if needs_gpu and not bench.cuda:
        raise Skip("needs a CUDA GPU")
    on_gpu = cell.backend.startswith(("eager", "compile", "tensorrt")) or cell.backend == "ort-cuda-fp32"
    device = "cuda" if bench.cuda and on_gpu else "cpu"
    inputs = bench.inputs(cell.batch, cell.seq)
    ref_key = (cell.model, cell.batch, cell.seq)
    if ref_key not in reference_cache:
        with torch.inference_mode():
            reference_cache[ref_key] = bench.fp32(**inputs).last_hidden_state.float().numpy()
    reference = {"last_hidden_state": reference_cache[ref_key]}
    run, run_once = _runner(bench, cell, inputs, device)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        if cell.backend.startswith("ort"):  # ORT returns when its own stream is done: time on the host
            timing = measure_cpu(run, batch=cell.batch, warmup=warmup, iters=iters)
        else:
            timing = measure_cuda(run, batch=cell.batch, warmup=warmup, iters=iters)
        if cell.backend.startswith(("eager", "compile")):
            memory = {"peak_gpu_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1)}
        else:  # the library allocates outside torch: what the whole device has in use
            free, total = torch.cuda.mem_get_info()
            memory = {"gpu_used_mb": round((total - free) / 2**20, 1)}
    else:
        timing = measure_cpu(run, batch=cell.batch, warmup=warmup, iters=iters)
        memory = {"rss_mb": _rss_mb()}
    outputs = {"last_hidden_state": run_once()}
    parity = compare(reference, outputs, "cosine", inputs["attention_mask"].numpy())
    return timing | memory | {"device": device, "parity_vs_fp32": parity["outputs"]["last_hidden_state"]
                              | {"pooled_cosine": parity["agreement"]["value"]}}  # fmt: skip


def _runner(bench: ModelBench, cell: Cell, inputs: dict[str, torch.Tensor], device: str):
    """(timed callable, callable returning the output as float32 numpy)."""
    backend = cell.backend
    if backend.startswith(("eager", "compile")):
        model = bench.fake_quant if backend == "eager-fake-quant" else bench.fp32
        model = copy.deepcopy(model).to(device)
        if backend in ("eager-fp16", "compile-fp16"):
            model = model.half()
        if backend == "compile-fp16":
            model = torch.compile(model, mode="reduce-overhead")  # CUDA graphs, no GEMM autotuning
        feed = {k: v.to(device) for k, v in inputs.items()}

        def run():
            with torch.inference_mode():
                return model(**feed).last_hidden_state

        return run, lambda: run().float().cpu().numpy()
    if backend.startswith("ort"):
        from engines.ort_runner import OnnxRuntimeRunner

        path = {"ort-fp32": "onnx_fp32", "ort-cuda-fp32": "onnx_fp32", "ort-int8-qdq": "onnx_int8",
                "ort-int8-qdq-u8": "onnx_int8", "ort-int8-qdq-gemm": "onnx_int8_gemm", "ort-quantize-dynamic": "onnx_dynamic",
                "ort-quantize-static": "onnx_static"}[backend]  # fmt: skip
        provider = "cuda" if device == "cuda" else "cpu"
        try:
            runner = OnnxRuntimeRunner(getattr(bench, path), level="all", provider=provider,
                                       unsigned_activations=backend.endswith("-u8"))  # fmt: skip
        except (ImportError, EngineError) as exc:
            raise Skip(str(exc)) from None
        feed = {k: v.numpy() for k, v in inputs.items()}
        once = lambda: runner.run(feed)["last_hidden_state"].astype(np.float32)  # noqa: E731
        if provider == "cuda":
            on_device = {k: v.to(device) for k, v in inputs.items()}
            return (lambda: runner.run_torch(on_device)), once
        return (lambda: runner.run(feed)), once
    if backend.startswith("tensorrt"):
        from engines.trt_runner import TensorRTRunner

        plan = bench.engine(backend.split("-")[1], cell.batch, cell.seq)
        try:
            runner = TensorRTRunner(plan, cuda_graph=backend.endswith("-graph"))
        except EngineError as exc:  # e.g. TensorRT-RTX on a GPU it does not support
            raise Skip(str(exc)) from None
        feed = {k: v.to(runner.device) for k, v in inputs.items()}
        return (lambda: runner.run_torch(feed)), (lambda: runner.run(feed)["last_hidden_state"])
    raise Skip(f"unknown backend {backend}")
