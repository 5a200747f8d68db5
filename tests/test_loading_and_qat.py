"""Checkpoint errors, calibrate() contract, and a short QAT loop."""

import json

import pytest
import torch

import qdqbert
from qdqbert import CheckpointError, QuantizerError, calibrate, quantizers, set_quantization
from tests.conftest import padded_batch, tiny_config


def test_missing_directory(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        qdqbert.QDQBertModel.from_pretrained(tmp_path / "nope")


def test_directory_without_config(tmp_path):
    with pytest.raises(CheckpointError, match="config.json is missing"):
        qdqbert.QDQBertModel.from_pretrained(tmp_path)


def test_not_bert(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(CheckpointError, match="model_type 'gpt2' is not BERT"):
        qdqbert.QDQBertModel.from_pretrained(tmp_path)


def test_no_weights(tmp_path):
    tiny_config().save_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match="has no weights"):
        qdqbert.QDQBertModel.from_pretrained(tmp_path)


def test_mismatched_shapes_name_the_tensor(tmp_path):
    qdqbert.QDQBertModel(tiny_config()).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["intermediate_size"] = 40
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"intermediate\.dense\.\w+ has shape") as info:
        qdqbert.QDQBertModel.from_pretrained(tmp_path)
    assert "\n" not in str(info.value)


def test_calibrate_requires_batches_and_known_method():
    model = qdqbert.QDQBertModel(tiny_config())
    with pytest.raises(QuantizerError, match="no calibration batches"):
        calibrate(model, [], progress=False)
    with pytest.raises(QuantizerError, match="unknown"):
        calibrate(model, [padded_batch()], method="kl", progress=False)
    # a failed calibration leaves no quantizer stuck in calibrate mode
    assert all(q.mode.value == "quantize" for q in quantizers(model).values())


def test_calibrate_leaves_disabled_quantizers_alone():
    model = qdqbert.QDQBertModel(tiny_config())
    skipped = "encoder.layer.0.output.add_local_input_quantizer"
    quantizers(model)[skipped].disable()
    calibrate(model, [padded_batch()], progress=False)
    qs = quantizers(model)
    assert qs[skipped].mode.value == "disabled" and not qs[skipped].is_calibrated
    assert all(q.is_calibrated for n, q in qs.items() if n != skipped)


def test_qat_lowers_the_loss():
    torch.manual_seed(0)
    model = qdqbert.QDQBertForSequenceClassification(tiny_config(num_labels=2))
    batch = padded_batch(batch=8, seed=1)
    labels = (batch["input_ids"][:, 0] % 2).long()  # a learnable rule of the first token
    calibrate(model, [batch], progress=False)
    amax_before = {n: q.amax.clone() for n, q in quantizers(model).items()}
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    losses = []
    for _ in range(30):
        loss = model(**batch, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    # gradients flowed through the fake-quant nodes into the quantized linears; amax stayed frozen
    assert model.bert.encoder.layer[0].attention.self.query.weight.grad.abs().sum() > 0
    for name, q in quantizers(model).items():
        assert torch.equal(q.amax, amax_before[name])


def test_set_quantization_switches_every_quantizer():
    model = qdqbert.QDQBertModel(tiny_config())
    set_quantization(model, False)
    assert {q.mode.value for q in quantizers(model).values()} == {"disabled"}
    set_quantization(model, True)
    with pytest.raises(QuantizerError, match="has no amax"):
        model(**padded_batch())


def test_tensorflow_loader_names_the_missing_extra(tmp_path):
    pytest.importorskip("numpy")
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        with pytest.raises(qdqbert.MissingDependencyError, match=r"pip install 'qdqbert-trt\[tf\]'"):
            qdqbert.load_tf_weights_in_qdqbert(qdqbert.QDQBertModel(tiny_config()), tmp_path / "model.ckpt")
    else:
        pytest.skip("tensorflow is installed; the missing-extra path cannot be exercised")


def test_quantization_disabled_restores_every_mode_even_after_an_error():
    from qdqbert.quant import quantization_disabled

    model = qdqbert.QDQBertModel(tiny_config())
    qs = quantizers(model)
    skipped = "encoder.layer.1.attention.self.matmul_a_input_quantizer"
    qs[skipped].disable()
    with pytest.raises(RuntimeError), quantization_disabled(model):
        assert {q.mode.value for q in qs.values()} == {"disabled"}
        raise RuntimeError("boom")
    assert qs[skipped].mode.value == "disabled"
    assert all(q.mode.value == "quantize" for n, q in qs.items() if n != skipped)
