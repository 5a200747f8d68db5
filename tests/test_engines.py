"""engines/: TensorRT-RTX builds on the CPU, engine.json, readable parser errors, runtime checks,
ONNX Runtime runner, the uint8 rewrite, Triton config, parity metrics."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

import qdqbert
from engines import EngineError, best_spans, compare
from engines.trt_builder import Profile, available_flavors, build_engine
from exporter.onnx_export import export_onnx
from exporter.tasks import get_task
from tests.conftest import padded_batch, tiny_config

onnx = pytest.importorskip("onnx", reason="onnx not installed (pip install 'qdqbert-trt[onnx]')")
needs_rtx = pytest.mark.skipif(
    "tensorrt-rtx" not in available_flavors(),
    reason="TensorRT-RTX not installed (pip install 'qdqbert-trt[tensorrt-rtx]')",
)
PROFILE = Profile({n: ((1, 1), (4, 16), (8, 64)) for n in ("input_ids", "attention_mask", "token_type_ids")})


@pytest.fixture(scope="module")
def tiny_qa_onnx(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = qdqbert.QDQBertForQuestionAnswering(tiny_config()).eval()
    batch = padded_batch()
    qdqbert.calibrate(model, [batch], progress=False)
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    return export_onnx(model, get_task("qa"), batch, path)


@pytest.mark.tensorrt
@needs_rtx
def test_rtx_builds_tiny_graph_and_describes_it(tiny_qa_onnx, tmp_path):
    meta = build_engine(tiny_qa_onnx, tmp_path / "model.plan", [PROFILE])
    on_disk = json.loads((tmp_path / "engine.json").read_text())
    assert on_disk == meta and meta["flavor"] == "tensorrt-rtx"
    assert (tmp_path / "model.plan").stat().st_size == meta["plan_bytes"] > 0
    assert [i["name"] for i in meta["inputs"]] == ["input_ids", "attention_mask", "token_type_ids"]
    assert {i["dtype"] for i in meta["inputs"]} == {"int64"}
    assert {o["dtype"] for o in meta["outputs"]} == {"float32"}  # numpy names, not TensorRT's ("float")
    assert [o["name"] for o in meta["outputs"]] == ["start_logits", "end_logits"]
    assert meta["profiles"][0]["input_ids"] == {"min": [1, 1], "opt": [4, 16], "max": [8, 64]}
    from engines.files import sha256_file

    assert meta["onnx_sha256"] == sha256_file(tiny_qa_onnx)
    if not torch.cuda.is_available():  # the inspector needs a deserialized engine: say why there is none
        assert "needs a CUDA GPU" in meta["layer_precisions"]["unavailable"]


# Inspector JSON in the two documented schemas: TensorRT 10 / RTX ("Format/Datatype" text) and
# TensorRT 11 ("DataType" split out). A fused INT8 GEMM, a float one and a Myelin region.
INSPECTOR_10 = {"Layers": [
    {"Name": "attn.q + qdq", "LayerType": "CaskGemmMatrixMultiply",
     "Inputs": [{"Name": "x", "Format/Datatype": "Row major linear Int8 format"}],
     "Outputs": [{"Name": "y", "Format/Datatype": "Row major linear FP16 format"}]},
    {"Name": "pooler.dense", "LayerType": "CaskGemmMatrixMultiply",
     "Inputs": [{"Name": "h", "Format/Datatype": "Row major linear FP32 format"}]},
    {"Name": "{ForeignNode[layernorm]}", "LayerType": "Myelin",
     "Inputs": [{"Name": "z", "Format/Datatype": "Row major linear FP32 format"}]},
]}  # fmt: skip
INSPECTOR_11 = {"Layers": [
    {"Name": "attn.q + qdq", "LayerType": "CaskGemmMatrixMultiply", "Inputs": [{"DataType": "Int8"}]},
    {"Name": "pooler.dense", "LayerType": "CaskGemmMatrixMultiply", "Inputs": [{"DataType": "Half"}]},
    {"Name": "{ForeignNode[layernorm]}", "LayerType": "Myelin", "Inputs": [{"DataType": "Float"}]},
]}  # fmt: skip


def test_layer_summary_reads_both_inspector_schemas():
    from engines.layers import layer_summary

    old = layer_summary(json.dumps(INSPECTOR_10))
    assert old["layers"] == 3 and old["by_input_precision"] == {"fp32": 2, "int8": 1}
    assert old["by_type"] == {"CaskGemmMatrixMultiply": 2, "Myelin": 1}
    assert old["gemm_layers_not_int8"] == ["pooler.dense"]
    new = layer_summary(INSPECTOR_11)
    assert new["by_input_precision"] == {"int8": 1, "fp16": 1, "fp32": 1}
    assert new["gemm_layers_not_int8"] == ["pooler.dense"]
    assert "DETAILED" in layer_summary({"Layers": ["a", "b"]})["detail"]


@needs_rtx
def test_rtx_refuses_gpus_it_cannot_run_on():
    """TensorRT-RTX's own list of compute capabilities decides; an H100 (9.0) is not on it."""
    from types import SimpleNamespace

    import tensorrt_rtx

    from engines.trt_builder import _compute_capability
    from engines.trt_runner import check_compatible

    def gpu(major, minor, name):
        cuda = SimpleNamespace(is_available=lambda: True, get_device_capability=lambda: (major, minor),
                               get_device_name=lambda: name)  # fmt: skip
        return SimpleNamespace(cuda=cuda)

    meta = {"flavor": "tensorrt-rtx", "library_version": tensorrt_rtx.__version__, "compute_capabilities": None}
    with pytest.raises(EngineError, match=r"do not run on this GPU \(NVIDIA H100.*9\.0\); use full TensorRT"):
        check_compatible(meta, tensorrt_rtx, gpu(9, 0, "NVIDIA H100 80GB HBM3"))
    check_compatible(meta, tensorrt_rtx, gpu(8, 9, "NVIDIA L4"))
    with pytest.raises(EngineError, match="rebuild with --compute-capability 8.9"):
        check_compatible(meta | {"compute_capabilities": ["8.6"]}, tensorrt_rtx, gpu(8, 9, "NVIDIA L4"))
    with pytest.raises(EngineError, match=r"use one of .*8\.9.*12\.0"):
        _compute_capability(tensorrt_rtx, "9.0")


@pytest.mark.tensorrt
@pytest.mark.slow
@needs_rtx
def test_rtx_builds_real_minilm_qa_graph(minilm_dir, tmp_path):
    from transformers import AutoTokenizer

    from exporter import data

    model = qdqbert.QDQBertForQuestionAnswering.from_pretrained(minilm_dir).eval()
    task = get_task("qa")
    encoded = data.encode(data.builtin_corpus()[:8], AutoTokenizer.from_pretrained(minilm_dir), task, 64)
    qdqbert.calibrate(model, [encoded], progress=False)
    path = export_onnx(model, task, encoded, tmp_path / "model.onnx")
    profile = Profile({n: ((1, 1), (8, 128), (32, 384)) for n in ("input_ids", "attention_mask", "token_type_ids")})
    meta = build_engine(path, tmp_path / "model.plan", [profile])
    assert meta["plan_bytes"] > 10_000_000 and meta["layers"] > 100


def _tamper(src: Path, dst: Path, edit) -> Path:
    model = onnx.load(str(src))
    edit(model.graph)
    onnx.save(model, str(dst))
    return dst


def _first_weight_qdq(graph):
    inits = {i.name: i for i in graph.initializer}
    for node in graph.node:
        if node.op_type == "QuantizeLinear" and node.input[0] in inits:
            return node, inits
    raise AssertionError("no weight QuantizeLinear")


@pytest.mark.tensorrt
@needs_rtx
def test_parser_error_for_nonzero_zero_point_is_readable(tiny_qa_onnx, tmp_path):
    def edit(graph):
        node = next(n for n in graph.node if n.op_type == "QuantizeLinear")
        zero = onnx.numpy_helper.from_array(np.array(3, dtype=np.int8), "bad_zero_point")
        graph.initializer.append(zero)
        node.input[2] = "bad_zero_point"

    broken = _tamper(tiny_qa_onnx, tmp_path / "broken.onnx", edit)
    with pytest.raises(EngineError, match="parser rejected broken.onnx") as info:
        build_engine(broken, tmp_path / "model.plan", [PROFILE])
    assert "QuantizeLinear" in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "model.plan").exists() and not (tmp_path / "engine.json").exists()


@pytest.mark.tensorrt
@needs_rtx
def test_parser_error_for_wrong_per_channel_scale_count(tiny_qa_onnx, tmp_path):
    def edit(graph):
        node, inits = _first_weight_qdq(graph)
        scale = onnx.numpy_helper.to_array(inits[node.input[1]])
        bad = onnx.numpy_helper.from_array(np.concatenate([scale, scale[:3]]), "bad_scale")
        zero = onnx.numpy_helper.from_array(np.zeros(len(scale) + 3, dtype=np.int8), "bad_zero")
        graph.initializer.extend([bad, zero])
        for n in graph.node:
            if n.op_type in ("QuantizeLinear", "DequantizeLinear") and n.input[1] == node.input[1]:
                n.input[1], n.input[2] = "bad_scale", "bad_zero"

    broken = _tamper(tiny_qa_onnx, tmp_path / "broken.onnx", edit)
    with pytest.raises(EngineError, match="parser rejected|could not build") as info:
        build_engine(broken, tmp_path / "model.plan", [PROFILE])
    assert "\n" not in str(info.value)


@pytest.mark.tensorrt
@needs_rtx
def test_runtime_refuses_truncated_foreign_or_gpu_less_plans(tiny_qa_onnx, tmp_path):
    from engines.trt_runner import TensorRTRunner

    build_engine(tiny_qa_onnx, tmp_path / "model.plan", [PROFILE])
    meta_path = tmp_path / "engine.json"
    meta = json.loads(meta_path.read_text())
    if not torch.cuda.is_available():
        with pytest.raises(EngineError, match="needs a CUDA GPU"):
            TensorRTRunner(tmp_path / "model.plan")
    meta_path.write_text(json.dumps(meta | {"library_version": "0.0.1"}))
    with pytest.raises(EngineError, match=r"built by tensorrt-rtx 0\.0\.1.*rebuild"):
        TensorRTRunner(tmp_path / "model.plan")
    meta_path.write_text(json.dumps(meta))
    data = (tmp_path / "model.plan").read_bytes()
    (tmp_path / "model.plan").write_bytes(data[: len(data) // 2])
    with pytest.raises(EngineError, match="truncated"):
        TensorRTRunner(tmp_path / "model.plan")
    (tmp_path / "model.plan").write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(EngineError, match="corrupt"):
        TensorRTRunner(tmp_path / "model.plan")


@pytest.mark.tensorrt
@pytest.mark.gpu
@pytest.mark.parametrize("flavor", ["tensorrt", "tensorrt-rtx"])
def test_engine_on_gpu_matches_onnxruntime_with_and_without_cuda_graphs(tiny_qa_onnx, tmp_path, flavor):
    if flavor not in available_flavors():
        pytest.skip(f"{flavor} is not installed here")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU here: TensorRT engines only run on a GPU")
    from engines.ort_runner import OnnxRuntimeRunner
    from engines.trt_builder import BuildOptions
    from engines.trt_runner import TensorRTRunner

    meta = build_engine(tiny_qa_onnx, tmp_path / "model.plan", [PROFILE], BuildOptions(flavor=flavor))
    try:
        launched = TensorRTRunner(tmp_path / "model.plan")
    except EngineError as exc:  # TensorRT-RTX on a GPU it does not support (e.g. the H100, 9.0)
        pytest.skip(str(exc))
    batch = padded_batch()
    with launched, TensorRTRunner(tmp_path / "model.plan", cuda_graph=True) as graphed:
        with OnnxRuntimeRunner(tiny_qa_onnx) as ort:
            want = ort.run(batch)
        got = launched.run(batch)
        for name in want:
            np.testing.assert_allclose(got[name], want[name], atol=5e-2)
        graphed.run(padded_batch(seed=1))  # capture with other values; replays copy into its static buffers
        replayed = graphed.run(batch)
        for name in got:
            np.testing.assert_array_equal(replayed[name], got[name])
        summary = launched.layer_summary()
        assert summary["layers"] > 0 and sum(summary["by_input_precision"].values()) == summary["layers"]
        with pytest.raises(EngineError, match="fit no optimization profile"):
            launched.run(padded_batch(seq=80))
    assert meta["layer_precisions"].get("layers", 0) > 0  # built on a GPU that runs it: inspected at build time


def test_onnxruntime_runner_errors(tiny_qa_onnx, tmp_path):
    from engines.ort_runner import OnnxRuntimeRunner

    (tmp_path / "junk.onnx").write_bytes(b"this is not a model")
    with pytest.raises(EngineError, match="cannot load"):
        OnnxRuntimeRunner(tmp_path / "junk.onnx")
    with pytest.raises(EngineError, match="does not exist"):
        OnnxRuntimeRunner(tmp_path / "missing.onnx")
    runner = OnnxRuntimeRunner(tiny_qa_onnx)
    batch = {k: v.numpy() for k, v in padded_batch().items()}
    with pytest.raises(EngineError, match=r"missing \['token_type_ids'\]"):
        runner.run({k: v for k, v in batch.items() if k != "token_type_ids"})
    with pytest.raises(EngineError, match="input input_ids has dtype int32, the engine expects int64"):
        runner.run(batch | {"input_ids": batch["input_ids"].astype(np.int32)})
    with pytest.raises(EngineError, match="rank"):
        runner.run(batch | {"input_ids": batch["input_ids"][0]})


def test_unsigned_rewrite_keeps_outputs(tiny_qa_onnx):
    from engines.ort_runner import OnnxRuntimeRunner

    batch = padded_batch()
    plain = OnnxRuntimeRunner(tiny_qa_onnx, level="basic").run(batch)
    rewritten = OnnxRuntimeRunner(tiny_qa_onnx, level="basic", unsigned_activations=True)
    assert rewritten.rewrite["pairs_rewritten"] == 2 * 14 and rewritten.rewrite["pairs_left_signed"] == 0
    for name, value in rewritten.run(batch).items():
        np.testing.assert_allclose(value, plain[name], atol=1e-6)


def test_triton_config_parses_as_model_config(tiny_qa_onnx, tmp_path):
    tritonclient = pytest.importorskip(
        "tritonclient", reason="tritonclient not installed (pip install 'qdqbert-trt[triton]')"
    )
    from google.protobuf import text_format

    from engines.triton import write_triton_repo

    # the ModelConfig definition ships inside tritonclient; load it without the grpc client
    path = os.path.join(os.path.dirname(tritonclient.__file__), "grpc", "model_config_pb2.py")
    spec = importlib.util.spec_from_file_location("model_config_pb2", path)
    model_config = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(model_config)
    model_dir = write_triton_repo(tmp_path, "qdqbert_qa", tiny_qa_onnx, None, max_batch_size=32, preferred_batch=8)
    config = text_format.Parse((model_dir / "config.pbtxt").read_text(), model_config.ModelConfig())
    assert config.platform == "onnxruntime_onnx" and config.max_batch_size == 32
    assert [i.name for i in config.input] == ["input_ids", "attention_mask", "token_type_ids"]
    assert [list(o.dims) for o in config.output] == [[-1], [-1]]
    assert (model_dir / "1" / "model.onnx").read_bytes() == tiny_qa_onnx.read_bytes()


def test_best_span_respects_order_mask_and_length():
    start = np.array([[-10.0, 5.0, 0.0, 0.0, 4.0]])
    end = np.array([[7.0, 0.0, 1.0, 0.0, 0.0]])
    # the best pair (4, 0) is invalid (end before start): the answer is (1, 2); masking the
    # tokens from 2 on leaves (1, 1)
    assert best_spans(start, end, None) == [(1, 2)]
    assert best_spans(start, end, np.array([[1, 1, 0, 0, 0]])) == [(1, 1)]


def test_compare_reports_distance_and_agreement():
    ref = {"logits": np.array([[1.0, 2.0], [3.0, 1.0]])}
    cand = {"logits": np.array([[1.0, 2.5], [0.0, 1.0]])}
    result = compare(ref, cand, "argmax")
    assert result["outputs"]["logits"]["max_abs"] == pytest.approx(3.0)
    assert result["agreement"] == {"metric": "argmax", "value": 0.5}


def test_tolerance_check_uses_polygraphy_semantics():
    pytest.importorskip("polygraphy", reason="polygraphy not installed (pip install 'qdqbert-trt[onnx]')")
    from engines import tolerance_check

    ref = {"a": np.zeros(4, np.float32), "b": np.ones(3, np.float32)}
    near = {"a": np.full(4, 0.009, np.float32), "b": np.ones(3, np.float32)}
    far = {"a": np.zeros(4, np.float32), "b": np.array([1, 1, 1.02], np.float32)}
    assert tolerance_check(ref, near, "int8") == {"atol": 1e-2, "passed": True, "outputs": {"a": True, "b": True}}
    assert tolerance_check(ref, far, "int8")["outputs"] == {"a": True, "b": False}
    assert not tolerance_check(ref, near, "fp32")["passed"]  # 1e-4 for FP32
