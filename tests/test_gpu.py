"""On a CUDA GPU: the eager runners (FP32, FP16, fake-quant) and ONNX Runtime's CUDA provider agree
with the same models on the CPU. Skipped with a reason where no GPU is visible."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import qdqbert
from engines import EagerRunner, compare
from tests.conftest import padded_batch, tiny_config

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here"),
]
OUTPUTS = ("last_hidden_state",)


def _real_batch(minilm_dir, batch: int = 4, seq: int = 128) -> dict[str, torch.Tensor]:
    from transformers import AutoTokenizer

    from exporter import data

    texts = [s.text for s in data.builtin_corpus()[:batch]]
    encoded = AutoTokenizer.from_pretrained(minilm_dir)(
        texts, truncation=True, max_length=seq, padding="longest", return_tensors="pt"
    )
    return {k: encoded[k] for k in ("input_ids", "attention_mask", "token_type_ids")}


def _runner(model, device: str, dtype: str = "fp32") -> EagerRunner:
    return EagerRunner(copy.deepcopy(model), tuple(padded_batch()), OUTPUTS, device=device, dtype=dtype)


@pytest.mark.slow
def test_eager_fp32_and_fp16_on_cuda_match_the_cpu(minilm_dir):
    model = qdqbert.QDQBertModel.from_pretrained(minilm_dir).eval()
    qdqbert.set_quantization(model, False)
    batch = _real_batch(minilm_dir)
    want = _runner(model, "cpu").run(batch)
    mask = batch["attention_mask"].numpy()
    fp32 = compare(want, _runner(model, "cuda").run(batch), "cosine", mask)["outputs"]["last_hidden_state"]
    assert fp32["max_abs"] < 1e-3 and fp32["cosine"] > 0.99999  # TF32 is off by default for matmuls
    fp16 = compare(want, _runner(model, "cuda", "fp16").run(batch), "cosine", mask)["outputs"]["last_hidden_state"]
    assert fp16["cosine"] > 0.999 and fp16["max_abs"] < 5e-2


def test_eager_fake_quant_on_cuda_matches_the_cpu():
    """A small model whose activations sit far from rounding boundaries: CUDA and CPU fake-quant
    kernels agree to float rounding (the real MiniLM is chaotic at INT8, see the noise floor)."""
    torch.manual_seed(0)
    model = qdqbert.QDQBertModel(tiny_config()).eval()
    batch = padded_batch()
    qdqbert.calibrate(model, [batch], progress=False)
    want = _runner(model, "cpu").run(batch)
    got = _runner(model, "cuda").run(batch)
    np.testing.assert_allclose(got["last_hidden_state"], want["last_hidden_state"], atol=1e-2)
    assert all(q.amax.device.type == "cpu" for q in qdqbert.quantizers(model).values())  # the copy moved, not ours


def test_onnxruntime_cuda_provider_matches_cpu(tmp_path):
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime not installed")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("onnxruntime has no CUDA provider here (install onnxruntime-gpu)")
    from engines.ort_runner import OnnxRuntimeRunner
    from exporter.onnx_export import export_onnx
    from exporter.tasks import get_task

    torch.manual_seed(0)
    model = qdqbert.QDQBertModel(tiny_config()).eval()
    qdqbert.set_quantization(model, False)
    batch = padded_batch()
    path = export_onnx(model, get_task("feature-extraction"), batch, tmp_path / "model.onnx")
    cpu = OnnxRuntimeRunner(path).run(batch)
    with OnnxRuntimeRunner(path, provider="cuda") as cuda:
        np.testing.assert_allclose(cuda.run(batch)["last_hidden_state"], cpu["last_hidden_state"], atol=1e-4)
        on_device = cuda.run_torch({k: v.cuda() for k, v in batch.items()})
    np.testing.assert_allclose(on_device[0].numpy(), cpu["last_hidden_state"], atol=1e-4)
