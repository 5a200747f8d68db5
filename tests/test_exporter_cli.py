"""`python -m exporter`: build for every task, both exporters, determinism, check, bad input."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import transformers

import qdqbert
from exporter.cli import main
from exporter.tasks import TASKS
from tests.conftest import tiny_config

pytest.importorskip("onnxruntime", reason="onnxruntime not installed (pip install 'qdqbert-trt[onnx]')")

FAST = ["--num-calib", "8", "--num-eval", "8", "--latency-iters", "1", "--seq-len", "32", "--batch", "1,4,8"]


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory, minilm_dir) -> Path:
    """A tiny random BERT checkpoint with the real MiniLM tokenizer beside it."""
    path = tmp_path_factory.mktemp("tiny-bert")
    torch.manual_seed(0)
    config = transformers.BertConfig(**tiny_config(vocab_size=30522).to_dict() | {"model_type": "bert"})
    transformers.BertForPreTraining(config).save_pretrained(path)
    transformers.AutoTokenizer.from_pretrained(minilm_dir).save_pretrained(path)
    return path


def _build(out: Path, *args: str) -> dict:
    assert main(["build", "--out", str(out), *FAST, *args]) == 0
    return json.loads((out / "report.json").read_text())


@pytest.mark.parametrize("task", list(TASKS))
def test_build_every_task_on_tiny_model(task, tiny_dir, tmp_path):
    report = _build(tmp_path / task, "--task", task, "--model", str(tiny_dir))
    for name in ("model.onnx", "quant.json", "report.json", "report.md"):
        assert (tmp_path / task / name).is_file()
    validation = report["export"]["validation"]
    assert validation["ok"], validation["issues"]
    assert validation["quantize_linear"] == validation["dequantize_linear"] == 2 * 20
    assert validation["encoder_matmuls_quantized"] == validation["encoder_matmuls"] == 2 * 8
    basic = report["parity"]["onnxruntime-cpu-basic"]["vs_fake_quant"]
    for output, metrics in basic["outputs"].items():
        assert metrics["max_abs"] < 1e-2, (task, output, metrics)
    assert basic["agreement"]["value"] >= 0.95
    # Polygraphy's comparator agrees at the documented INT8 tolerance
    assert report["parity"]["onnxruntime-cpu-basic"]["tolerance"] | {"outputs": None} == {
        "atol": 1e-2,
        "passed": True,
        "outputs": None,
    }
    assert set(report["latency"]) >= {"eager-fp32", "eager-fake-quant", "onnxruntime-cpu-basic", "onnxruntime-cpu-all"}


def test_fp32_export_matches_fp32_model(tiny_dir, tmp_path):
    report = _build(tmp_path / "fp32", "--task", "qa", "--model", str(tiny_dir), "--precision", "fp32")
    assert report["export"]["validation"]["quantize_linear"] == 0
    for metrics in report["parity"]["onnxruntime-cpu-basic"]["vs_fp32"]["outputs"].values():
        assert metrics["max_abs"] < 1e-4
    assert report["parity"]["onnxruntime-cpu-basic"]["tolerance"]["passed"]
    assert "vs_fake_quant" not in report["parity"]["onnxruntime-cpu-basic"]


def test_dynamo_exporter(tiny_dir, tmp_path):
    report = _build(tmp_path / "dyn", "--task", "qa", "--model", str(tiny_dir), "--exporter", "dynamo")
    assert report["export"]["opset"] == 18 and report["export"]["validation"]["ok"]
    for metrics in report["parity"]["onnxruntime-cpu-basic"]["vs_fake_quant"]["outputs"].values():
        assert metrics["max_abs"] < 1e-2


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_same_command_twice_gives_identical_files(exporter, tiny_dir, tmp_path):
    args = [
        "--task",
        "sequence-classification",
        "--model",
        str(tiny_dir),
        "--exporter",
        exporter,
        "--backend",
        "onnxruntime",
    ]
    _build(tmp_path / "a", *args)
    _build(tmp_path / "b", *args)
    for name in ("model.onnx", "quant.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


@pytest.mark.slow
@pytest.mark.parametrize("task", list(TASKS))
def test_build_every_task_on_embedded_checkpoint(task, tmp_path):
    report = _build(tmp_path / task, "--task", task, "--backend", "onnxruntime")
    assert report["export"]["validation"]["ok"]
    assert report["export"]["validation"]["quantize_linear"] == 6 * 20
    floor = report["parity"]["noise-floor"]["vs_fake_quant"]
    ort = report["parity"]["onnxruntime-cpu-basic"]["vs_fake_quant"]
    # ONNX Runtime differs from eager fake-quant by about the model's own rounding-flip noise, no more
    for name, metrics in ort["outputs"].items():
        assert 1 - metrics["cosine"] <= 3 * (1 - floor["outputs"][name]["cosine"]) + 1e-4, (task, name)


@pytest.mark.slow
def test_fp32_export_of_real_minilm_matches(tmp_path):
    report = _build(tmp_path / "fp32", "--task", "qa", "--precision", "fp32", "--backend", "onnxruntime")
    result = report["parity"]["onnxruntime-cpu-basic"]["vs_fp32"]
    assert all(m["max_abs"] < 1e-4 for m in result["outputs"].values())
    assert result["agreement"]["value"] == 1.0


def test_check_reruns_parity(tiny_dir, tmp_path):
    out = tmp_path / "qa"
    first = _build(out, "--task", "qa", "--model", str(tiny_dir), "--backend", "onnxruntime")
    assert main(["check", "--out", str(out)]) == 0
    second = json.loads((out / "report.json").read_text())
    a = first["parity"]["onnxruntime-cpu-basic"]["vs_fake_quant"]["outputs"]["start_logits"]
    b = second["parity"]["onnxruntime-cpu-basic"]["vs_fake_quant"]["outputs"]["start_logits"]
    assert a["max_abs"] == pytest.approx(b["max_abs"], abs=1e-7)  # same model, same amax, same data


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "exporter", *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def _assert_one_line_error(result: subprocess.CompletedProcess, expected: str) -> None:
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and expected in errors[0], result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "args,expected",
    [
        (["--task", "qa", "--model", "missing-dir"], "does not exist"),
        (["--task", "summarize"], "unknown task 'summarize'"),
        (["--task", "qa", "--calib-data", "empty.txt"], "holds no samples"),
        (["--task", "qa", "--calib-data", "binary.txt"], "not readable UTF-8"),
        (["--task", "qa", "--calib-data", "bad.jsonl"], "not valid JSONL"),
        (["--task", "qa", "--seq-len", "4096"], "exceeds the model's max_position_embeddings (512)"),
        (["--task", "qa", "--out", "a-file"], "is a file"),
        (["--task", "qa", "--model", "not-bert"], "is not BERT"),
        (["--task", "qa", "--backend", "tensorrt"], "--backend tensorrt is not installed"),
        (["--task", "qa", "--skip-quant", "nothing*"], "matches no quantizer"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(args, expected, tmp_path):
    (tmp_path / "empty.txt").write_text("\n\n")
    (tmp_path / "binary.txt").write_bytes(b"\xff\xfe\x00bad")
    (tmp_path / "bad.jsonl").write_text('{"text": "ok"}\n{broken\n')
    (tmp_path / "a-file").write_text("x")
    (tmp_path / "not-bert").mkdir()
    (tmp_path / "not-bert" / "config.json").write_text('{"model_type": "t5"}')
    before = sorted(p.name for p in tmp_path.iterdir())
    result = _cli("build", *FAST, *args, cwd=tmp_path)
    if "--out" not in args:
        assert not (tmp_path / "build").exists()
    _assert_one_line_error(result, expected)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no staging leftovers either


def test_verbose_shows_the_traceback(tmp_path):
    result = _cli("build", "--task", "qa", "--model", "missing", "--verbose", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" in result.stderr


def test_fewer_samples_than_num_calib_warns_and_uses_all(tiny_dir, tmp_path):
    data = tmp_path / "five.txt"
    data.write_text("\n".join(f"Sentence number {i} is about a quiet harbour town." for i in range(5)))
    result = _cli("build", "--task", "qa", "--model", str(tiny_dir), "--calib-data", str(data), "--out",
                  str(tmp_path / "out"), *FAST, "--num-calib", "50", "--backend", "onnxruntime", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "asked for 50 samples but the data holds 5; using all 5" in result.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["calibration"]["samples"] == 5


def test_calibrate_then_export(tiny_dir, tmp_path):
    assert main(["calibrate", "--task", "qa", "--model", str(tiny_dir), "--out", str(tmp_path / "cal"),
                 "--num-calib", "8", "--seq-len", "32"]) == 0  # fmt: skip
    model = qdqbert.QDQBertForQuestionAnswering.from_pretrained(tmp_path / "cal")
    assert all(q.is_calibrated for q in qdqbert.quantizers(model).values())
    assert main(["export", "--task", "qa", "--model", str(tmp_path / "cal"), "--out", str(tmp_path / "onnx"),
                 "--exporter", "dynamo", "--strict"]) == 0  # fmt: skip
    assert json.loads((tmp_path / "onnx" / "validation.json").read_text())["ok"]


def test_export_refuses_an_uncalibrated_checkpoint(tiny_dir, tmp_path):
    result = _cli("export", "--task", "qa", "--model", str(tiny_dir), "--out", str(tmp_path / "x"), cwd=tmp_path)
    _assert_one_line_error(result, "is not calibrated")
    assert not (tmp_path / "x").exists()


def _squad(path: Path) -> None:
    context = "The lighthouse keeper climbed the stairs at dusk. The harbour lay to the west of the town."
    qas = [
        {"id": "1", "question": "Who climbed the stairs?", "answers": [{"text": "The lighthouse keeper", "answer_start": 0}]},
        {"id": "2", "question": "When did he climb?", "answers": [{"text": "dusk", "answer_start": context.index("dusk")}]},
        {"id": "3", "question": "Where was the harbour?", "answers": [{"text": "to the west of the town",
                                                                     "answer_start": context.index("to the west")}]},
    ]  # fmt: skip
    path.write_text(json.dumps({"data": [{"paragraphs": [{"context": context, "qas": qas}]}]}))


@pytest.mark.parametrize("distill", [False, True])
def test_qat_fine_tunes_and_build_accepts_the_result(distill, tiny_dir, tmp_path):
    _squad(tmp_path / "train.json")
    args = ["qat", "--task", "qa", "--model", str(tiny_dir), "--train-data", str(tmp_path / "train.json"),
            "--out", str(tmp_path / "qat"), "--epochs", "30", "--lr", "3e-3", "--batch-size", "3",
            "--num-calib", "8", "--seq-len", "48"] + (["--distill"] if distill else [])  # fmt: skip
    assert main(args) == 0
    history = json.loads((tmp_path / "qat" / "qat.json").read_text())["loss"]
    # the distillation term (to an FP32 teacher with its own random head) cannot reach zero
    assert len(history) == 30 and history[-1] < (0.8 if distill else 0.5) * history[0]
    model = qdqbert.QDQBertForQuestionAnswering.from_pretrained(tmp_path / "qat")
    assert all(q.is_calibrated for q in qdqbert.quantizers(model).values())
    report = _build(tmp_path / "out", "--task", "qa", "--model", str(tmp_path / "qat"), "--backend", "onnxruntime")
    assert report["head_trained"] and report["export"]["validation"]["ok"]


def test_qat_refuses_unlabelled_data(tiny_dir, tmp_path):
    (tmp_path / "plain.txt").write_text("just a sentence\n")
    result = _cli("qat", "--task", "sequence-classification", "--model", str(tiny_dir), "--train-data",
                  str(tmp_path / "plain.txt"), "--out", str(tmp_path / "q"), "--num-calib", "4", "--seq-len", "32",
                  cwd=tmp_path)  # fmt: skip
    _assert_one_line_error(result, "needs a label on every sample")
    assert not (tmp_path / "q").exists()


def test_torchrun_calibration_agrees_across_ranks(tiny_dir, tmp_path):
    """Two gloo processes calibrate disjoint shards; the reduced amax is identical on both ranks."""
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "exporter", "calibrate", "--task", "qa", "--model", str(tiny_dir), "--out", str(tmp_path / "cal"),
         "--num-calib", "16", "--seq-len", "32"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    found = dict(re.findall(r"rank (\d)/2: calibration digest ([0-9a-f]{16})", result.stderr))
    assert set(found) == {"0", "1"} and len(set(found.values())) == 1, result.stderr[-2000:]
    assert (tmp_path / "cal" / "quant.json").is_file()


def test_skip_quant_glob_stays_within_one_dotted_part():
    from exporter.sensitivity import glob_regex, role

    ffn = glob_regex("bert.encoder.layer.*.output.add_local_input_quantizer")
    assert ffn.match("bert.encoder.layer.11.output.add_local_input_quantizer")
    assert not ffn.match("bert.encoder.layer.0.attention.output.add_local_input_quantizer")
    assert glob_regex("**add_local*").match("bert.encoder.layer.0.attention.output.add_local_input_quantizer")
    assert role("bert.encoder.layer.7.attention.self.matmul_a_input_quantizer") == (
        "bert.encoder.layer.*.attention.self.matmul_a_input_quantizer"
    )


def test_sensitivity_sweep_ranks_every_role(tiny_dir, tmp_path):
    report = _build(tmp_path / "qa", "--task", "qa", "--model", str(tiny_dir), "--backend", "onnxruntime")
    sweep = report["sensitivity"]
    assert len(sweep["roles"]) == 20 and all(r["quantizers"] == 2 for r in sweep["roles"])
    gains = [r["gain"] for r in sweep["roles"]]
    assert gains == sorted(gains, reverse=True)
    assert "## Sensitivity" in (tmp_path / "qa" / "report.md").read_text()
    # leaving the top role in float really removes those quantizers from the graph
    top = sweep["roles"][0]["role"]
    skipped = _build(tmp_path / "skip", "--task", "qa", "--model", str(tiny_dir), "--backend", "onnxruntime",
                     "--skip-quant", top, "--no-sensitivity")  # fmt: skip
    assert skipped["calibration"]["disabled"] == [top.replace("*", str(i)) for i in range(2)]
    assert skipped["export"]["validation"]["quantize_linear"] == 2 * 20 - 2
    assert "sensitivity" not in skipped


@pytest.mark.parametrize("command", ["build", "check", "calibrate", "export", "qat"])
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0 and "--verbose" in capsys.readouterr().out


def test_min_cosine_leaves_costly_roles_in_float(tiny_dir, tmp_path, capsys):
    report = _build(tmp_path / "qa", "--task", "qa", "--model", str(tiny_dir), "--backend", "onnxruntime",
                    "--min-cosine", "1.0", "--no-sensitivity")  # fmt: skip
    auto = report["calibration"]["auto_skip"]
    history = auto["cosine_after_each_step"]
    assert not auto["reached"] and len(auto["skipped"]) <= 4
    assert history == sorted(history) and len(history) == len(auto["skipped"]) + 1  # each skip helped
    quant = json.loads((tmp_path / "qa" / "quant.json").read_text())
    disabled = {row["name"] for row in quant["quantizers"] if row["mode"] == "disabled"}
    assert len(disabled) == 2 * len(auto["skipped"])
    assert "--min-cosine 1.0 not reached" in capsys.readouterr().err


@pytest.mark.parametrize("parent_existed", [True, False])
def test_strict_validation_failure_leaves_nothing(parent_existed, tiny_dir, tmp_path):
    """A failure after export (--strict: residual adds left unquantized) removes the staging files,
    the parent directory only if the build created it."""
    if parent_existed:
        (tmp_path / "existing").mkdir()
    result = _cli("build", "--task", "qa", "--model", str(tiny_dir), "--skip-quant", "**add_local*", "--strict",
                  "--out", "existing/qa", *FAST, cwd=tmp_path)  # fmt: skip
    _assert_one_line_error(result, "(--strict)")
    assert (tmp_path / "existing").is_dir() == parent_existed
    if parent_existed:
        assert not any((tmp_path / "existing").iterdir())


def _labelled(tmp_path: Path) -> dict[str, Path]:
    rows = [("The harbour was calm at dawn.", 0), ("The storm flooded the valley.", 1),
            ("Bread rises slowly in a cool kitchen.", 0), ("Lightning struck near the stadium.", 1)]  # fmt: skip
    (tmp_path / "cls.csv").write_text("text,label\n" + "".join(f'"{t}",{label}\n' for t, label in rows))
    tokens = [{"tokens": t.rstrip(".").split(), "tags": [i % 3 for i in range(len(t.split()))]} for t, _ in rows]
    (tmp_path / "tok.jsonl").write_text("".join(json.dumps(r) + "\n" for r in tokens))
    return {"sequence-classification": tmp_path / "cls.csv", "token-classification": tmp_path / "tok.jsonl"}


@pytest.mark.parametrize("task,labels", [("sequence-classification", 2), ("token-classification", 3)])
def test_qat_on_labelled_csv_and_jsonl(task, labels, tiny_dir, tmp_path):
    data = _labelled(tmp_path)[task]
    assert main(["qat", "--task", task, "--model", str(tiny_dir), "--train-data", str(data), "--out",
                 str(tmp_path / "qat"), "--epochs", "20", "--lr", "3e-3", "--batch-size", "4", "--num-calib", "4",
                 "--seq-len", "32"]) == 0  # fmt: skip
    history = json.loads((tmp_path / "qat" / "qat.json").read_text())["loss"]
    assert history[-1] < history[0]
    assert qdqbert.QDQBertConfig.from_pretrained(tmp_path / "qat").num_labels == labels  # sized by the data
    report = _build(tmp_path / "out", "--task", task, "--model", str(tmp_path / "qat"), "--backend", "onnxruntime")
    assert report["head_trained"]


def test_unexpected_errors_are_one_line_too(tiny_dir, tmp_path, monkeypatch, capsys):
    import exporter.pipeline

    def broken(*args, **kwargs):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(exporter.pipeline, "export_onnx", broken)
    assert main(["build", "--task", "qa", "--model", str(tiny_dir), "--out", str(tmp_path / "x"), *FAST]) == 3
    err = capsys.readouterr().err
    assert "error: internal error (ZeroDivisionError: division by zero); rerun with --verbose" in err
    assert "Traceback" not in err and not (tmp_path / "x").exists()


def test_auto_calibrator_keeps_the_method_closest_to_fp32(tiny_dir, tmp_path, capsys):
    args = ("--task", "qa", "--model", str(tiny_dir), "--backend", "onnxruntime", "--no-sensitivity")
    report = _build(tmp_path / "auto", *args, "--calibrator", "auto")
    calibration = report["calibration"]
    scores = calibration["cosine_to_fp32_by_method"]
    assert calibration["requested"] == "auto" and set(scores) == {"max", "percentile", "mse", "entropy"}
    assert calibration["method"] == max(scores, key=scores.get)
    assert f"calibrator auto → {calibration['method']}" in capsys.readouterr().err
    # the same ranges as calibrating with the chosen method directly
    _build(tmp_path / "direct", *args, "--calibrator", calibration["method"])
    auto, direct = (json.loads((tmp_path / d / "quant.json").read_text()) for d in ("auto", "direct"))
    assert auto["calibrator"] == calibration["method"] and auto["quantizers"] == direct["quantizers"]


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_int8_with_fp16_float_parts_puts_qdq_in_fp16(exporter, tiny_dir, tmp_path):
    """--float-dtype fp16: DequantizeLinear must feed the MatMuls directly in fp16 (opset 19), not
    through a Cast that hides the INT8 GEMM pattern; ONNX Runtime runs it, TensorRT-RTX parses it."""
    import onnx

    report = _build(tmp_path / "f16", "--task", "qa", "--model", str(tiny_dir), "--float-dtype", "fp16",
                    "--exporter", exporter, "--no-sensitivity")  # fmt: skip
    validation = report["export"]["validation"]
    assert report["export"]["opset"] == 19 and validation["ok"]
    assert validation["encoder_matmuls_quantized"] == validation["encoder_matmuls"] > 0
    graph = onnx.load(str(tmp_path / "f16" / "model.onnx")).graph
    producer = {out: node for node in graph.node for out in node.output}
    inits = {init.name: init for init in graph.initializer}
    for node in graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            assert inits[node.input[1]].data_type == onnx.TensorProto.FLOAT16
        if node.op_type == "QuantizeLinear" and node.input[0] in producer:
            assert producer[node.input[0]].op_type != "Cast"
    for metrics in report["parity"]["onnxruntime-cpu-basic"]["vs_fake_quant"]["outputs"].values():
        assert metrics["cosine"] > 0.999  # fp16 rounding against the float32 fake-quant model
    if "tensorrt-rtx" in report["versions"] or "tensorrt_rtx" in report["versions"]:
        assert report["engine"]["plan_bytes"] > 0


def test_report_renders_the_gpu_only_entries(tiny_dir, tmp_path):
    """The engine's layer summary and the CUDA-graph check only exist where a GPU runs the plan;
    their report lines are rendered from a real report with those entries added."""
    from exporter.report import render_markdown

    report = _build(tmp_path / "qa", "--task", "qa", "--model", str(tiny_dir), "--no-sensitivity")
    report["engine"] = {"flavor": "tensorrt", "layer_precisions": {
        "layers": 3, "by_input_precision": {"int8": 2, "fp16": 1}, "by_type": {"Gemm": 3},
        "gemm_layers_not_int8": ["pooler.dense"]}}  # fmt: skip
    report["parity"]["tensorrt-cuda-graph"] = {"identical_to": None, "max_abs_vs_launched": 0.00125}
    markdown = render_markdown(report)
    assert "3 layers by input precision: int8 2, fp16 1; GEMM layers not in int8: pooler.dense" in markdown
    assert "tensorrt-cuda-graph: outputs differ from the launched engine by up to 0.00125" in markdown


def test_fp16_qdq_rewrite_keeps_unrelated_casts():
    """Only the Casts the rewrite bypasses go; a float Cast that is a graph output stays."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from exporter.qdq_fp16 import fp16_qdq

    nodes = [helper.make_node("Cast", ["x"], ["xf"], to=TensorProto.FLOAT),
             helper.make_node("QuantizeLinear", ["xf", "s", "zp"], ["q"]),
             helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["d"]),
             helper.make_node("Cast", ["d"], ["y"], to=TensorProto.FLOAT16),
             helper.make_node("Cast", ["x"], ["z"], to=TensorProto.FLOAT)]  # fmt: skip
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT16, [2, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT16, [2, 4]),
         helper.make_tensor_value_info("z", TensorProto.FLOAT, [2, 4])],
        [numpy_helper.from_array(np.array(0.1, np.float32), "s"), numpy_helper.from_array(np.array(0, np.int8), "zp")],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    assert fp16_qdq(model) == 1
    assert [n.op_type for n in model.graph.node] == ["QuantizeLinear", "DequantizeLinear", "Cast"]
    assert [o.name for o in model.graph.output] == ["d", "z"] and model.opset_import[0].version == 19
    onnx.checker.check_model(model, full_check=True)
