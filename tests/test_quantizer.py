"""TensorQuantizer, QuantDescriptor, QuantLinear: formula, states, gradients, state_dict."""

import numpy as np
import pytest
import torch

from qdqbert.errors import QuantizerError
from qdqbert.quant import QuantDescriptor, QuantLinear, TensorQuantizer


def onnx_qdq(x: np.ndarray, scale: np.ndarray, qmin: int, qmax: int, axis: int | None = None) -> np.ndarray:
    """QuantizeLinear → DequantizeLinear as the ONNX spec writes it (round half to even, saturate)."""
    if axis is not None:
        shape = [1] * x.ndim
        shape[axis] = -1
        scale = scale.reshape(shape)
    q = np.clip(np.rint(x / scale), qmin, qmax)
    return (q * scale).astype(np.float32)


def test_per_tensor_matches_onnx_formula():
    x = torch.randn(64, 33) * 3
    q = TensorQuantizer(QuantDescriptor())
    q.set_amax(4.0)
    expected = onnx_qdq(x.numpy(), np.float32(4.0 / 127), -128, 127)
    np.testing.assert_allclose(q(x).numpy(), expected, atol=1e-6)
    # saturation: values beyond amax clip to 127*scale, and -128*scale on the negative side
    assert q(torch.tensor([100.0])).item() == pytest.approx(4.0)
    assert q(torch.tensor([-100.0])).item() == pytest.approx(-4.0 * 128 / 127)


def test_per_channel_matches_onnx_formula():
    w = torch.randn(8, 16)
    q = TensorQuantizer(QuantDescriptor(axis=0, calib_method="max"), num_channels=8)
    amax = w.abs().amax(1)
    q.set_amax(amax)
    expected = onnx_qdq(w.numpy(), (amax / 127).numpy(), -128, 127, axis=0)
    np.testing.assert_allclose(q(w).numpy(), expected, atol=1e-6)


def test_unsigned_and_narrow_range():
    x = torch.rand(100) * 2
    q = TensorQuantizer(QuantDescriptor(unsigned=True))
    q.set_amax(2.0)
    np.testing.assert_allclose(q(x).numpy(), onnx_qdq(x.numpy(), np.float32(2 / 255), 0, 255), atol=1e-6)
    narrow = TensorQuantizer(QuantDescriptor(narrow_range=True))
    narrow.set_amax(1.0)
    assert narrow(torch.tensor([-5.0])).item() == pytest.approx(-1.0)


def test_uncalibrated_quantizer_refuses_to_quantize():
    q = TensorQuantizer()
    q.name = "layer.0.input_quantizer"
    with pytest.raises(QuantizerError, match="layer.0.input_quantizer has no amax"):
        q(torch.randn(3))
    q.disable()
    x = torch.randn(3)
    assert q(x) is x


def test_calibrate_mode_passes_through_and_collects():
    q = TensorQuantizer(QuantDescriptor(calib_method="max"))
    q.enable_calib()
    x = torch.tensor([0.5, -3.0, 2.0])
    assert torch.equal(q(x), x)
    q.load_calib_amax("max")
    assert q.amax.item() == 3.0 and q.is_calibrated


def test_calibration_rejects_non_finite_tensors():
    q = TensorQuantizer()
    q.enable_calib()
    with pytest.raises(QuantizerError, match="inf/NaN"):
        q(torch.tensor([1.0, float("-inf")]))


def test_descriptor_validation():
    with pytest.raises(QuantizerError, match="num_bits"):
        QuantDescriptor(num_bits=16)
    with pytest.raises(QuantizerError, match="unknown key"):
        QuantDescriptor.from_dict({"num_bits": 8, "learn_amax": True})
    assert QuantDescriptor.from_dict({"num_bits": 4, "axis": 0}).quant_range == (-8, 7)


def test_zero_amax_is_floored_so_scales_stay_positive():
    q = TensorQuantizer(QuantDescriptor(axis=0, calib_method="max"), num_channels=2)
    q.set_amax(torch.tensor([0.0, 1.0]))
    assert (q.amax > 0).all()


def test_straight_through_gradient():
    q = TensorQuantizer()
    q.set_amax(1.0)
    x = torch.tensor([0.3, -0.7, 5.0], requires_grad=True)
    q(x).sum().backward()
    # identity inside the range, zero where the value was clipped
    assert x.grad.tolist() == [1.0, 1.0, 0.0]


def test_quant_linear_state_dict_keeps_amax():
    layer = QuantLinear(6, 4)
    layer.input_quantizer.set_amax(2.5)
    layer.weight_quantizer.set_amax(layer.weight.detach().abs().amax(1))
    state = layer.state_dict()
    assert {"weight", "bias", "input_quantizer.amax", "weight_quantizer.amax"} <= set(state)
    other = QuantLinear(6, 4)
    other.load_state_dict(state)
    x = torch.randn(5, 6)
    assert torch.equal(layer(x), other(x))


@pytest.mark.parametrize("axis", [None, 0])
def test_export_op_equals_eager_kernel_with_gradient(axis):
    """The custom op torch.export traces computes and differentiates exactly like the eager path."""
    from qdqbert.quant.tensor_quantizer import _fake_quant_kernel, _fake_quant_op

    scale = torch.rand(5) + 0.01 if axis == 0 else torch.tensor(0.02)
    x = (torch.randn(5, 6) * 3).requires_grad_()
    y = _fake_quant_op(x, scale, -1 if axis is None else axis, -128, 127)
    y.sum().backward()
    grad = x.grad.clone()
    x.grad = None
    want = _fake_quant_kernel(x, scale, -1 if axis is None else axis, -128, 127)
    want.sum().backward()
    assert torch.equal(y, want) and torch.equal(grad, x.grad)
    if axis is None:
        assert 0 < grad.sum() < x.numel()  # some values clipped: their gradient is zero


@pytest.mark.parametrize("axis", [None, 0])
def test_inference_path_is_bit_identical_to_pytorch_kernel(axis):
    from qdqbert.quant.tensor_quantizer import _fake_quant_inference, _fake_quant_kernel

    scale = torch.rand(64) + 0.01 if axis == 0 else torch.tensor(0.0173)
    x = torch.randn(64, 1000) * 3
    x[0, :10] = scale.flatten()[0] * (torch.arange(10) + 0.5)  # exact ties: round half to even
    a = _fake_quant_kernel(x, scale, -1 if axis is None else 0, -128, 127)
    b = _fake_quant_inference(x, scale, -1 if axis is None else 0, -128, 127)
    assert torch.equal(a, b)


def test_quant_linear_weight_cache_follows_weight_and_amax():
    layer = QuantLinear(8, 4)
    layer.input_quantizer.set_amax(4.0)
    layer.weight_quantizer.set_amax(layer.weight.detach().abs().amax(1))
    x = torch.randn(2, 8)
    with torch.no_grad():
        first = layer(x)
        layer.weight.mul_(0.5)  # an in-place update (an optimizer step) must invalidate the cache
        second = layer(x)
        layer.weight_quantizer.set_amax(layer.weight.abs().amax(1))
        third = layer(x)
    assert not torch.equal(first, second) and not torch.equal(second, third)
    expected = torch.nn.functional.linear(layer.input_quantizer(x), layer.weight_quantizer(layer.weight), layer.bias)
    assert torch.equal(third, expected)


def test_calibration_state_follows_every_way_amax_changes():
    q = TensorQuantizer()
    assert not q.is_calibrated
    q.set_amax(2.0)
    assert q.is_calibrated
    with torch.no_grad():
        q.amax.fill_(float("nan"))  # in place (what weight init does)
    assert not q.is_calibrated
    q.load_state_dict({"amax": torch.tensor(3.0)})
    assert q.is_calibrated
    q.amax = torch.tensor(float("nan"))  # a new tensor (what checkpoint loading may do)
    assert not q.is_calibrated


def test_half_keeps_ranges_float32_and_exact():
    """`.half()` must not round the calibrated ranges: scales are computed in float32."""
    layer = QuantLinear(8, 4)
    layer.input_quantizer.set_amax(1.2345678)
    layer.weight_quantizer.set_amax(torch.linspace(0.1, 0.7, 4))
    before = {n: b.clone() for n, b in layer.named_buffers()}
    layer.half()
    assert layer.weight.dtype == torch.float16
    for name, buffer in layer.named_buffers():
        assert buffer.dtype == torch.float32 and torch.equal(buffer, before[name])
    x = torch.randn(2, 8).half()
    assert layer(x).dtype == torch.float16


def test_fp16_checkpoint_load_keeps_calibrated_ranges_float32(tmp_path):
    import qdqbert
    from tests.conftest import padded_batch, tiny_config

    torch.manual_seed(0)
    model = qdqbert.QDQBertModel(tiny_config()).eval()
    qdqbert.calibrate(model, [padded_batch()], progress=False)
    model.save_pretrained(tmp_path)
    loaded = qdqbert.QDQBertModel.from_pretrained(tmp_path, dtype=torch.float16)
    saved = qdqbert.quantizers(model)
    for name, q in qdqbert.quantizers(loaded).items():
        assert q.amax.dtype == torch.float32 and torch.equal(q.amax, saved[name].amax)
