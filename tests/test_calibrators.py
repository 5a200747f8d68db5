"""Calibrators against NumPy references on known distributions."""

import numpy as np
import pytest
import torch

from qdqbert.quant import HistogramCalibrator, MaxCalibrator, entropy_amax, mse_amax


def _kl(p: np.ndarray, q: np.ndarray) -> float:
    p = p / p.sum()
    q = q / q.sum()
    mask = p > 0
    if np.any(q[mask] == 0):
        return float("inf")
    return float(np.sum(p[mask] * np.log(p[mask] / q[mask])))


def reference_entropy(hist: np.ndarray, edges: np.ndarray, num_bits=8, unsigned=False, start_bin=128) -> float:
    """pytorch-quantization's _compute_amax_entropy, loop for loop."""
    bins = hist.copy()
    bins[0] = bins[1]
    nbins = 1 << (num_bits - 1 + int(unsigned))
    divergences, arguments = [], []
    for i in range(start_bin, len(bins) + 1):
        space = np.linspace(0, i, num=nbins + 1)
        digitized = np.digitize(range(i), space) - 1
        digitized[bins[:i] == 0] = -1
        new_counts = np.zeros(nbins)
        for idx, d in enumerate(digitized):
            if d != -1:
                new_counts[d] += bins[idx]
        values, counts = np.unique(digitized[digitized != -1], return_counts=True)
        new_counts[values] /= counts
        new_density = np.array([new_counts[d] if d != -1 else 0.0 for d in digitized])
        reference = bins[:i].copy()
        reference[-1] += bins[i:].sum()
        divergences.append(_kl(reference, new_density))
        arguments.append(i)
    divergences = np.array(divergences)
    last_argmin = len(divergences) - 1 - np.argmin(divergences[::-1])
    return float(edges[arguments[last_argmin]])


def reference_mse(hist, edges, num_bits=8, start_bin=128) -> float:
    centers = (edges[1:] + edges[:-1]) / 2
    bound = 2 ** (num_bits - 1) - 1
    best, best_amax = np.inf, None
    for i in range(start_bin, len(centers)):
        scale = bound / centers[i]
        quant = np.clip(np.round(centers * scale), None, bound) / scale
        err = np.mean((quant - centers) ** 2 * hist)
        if err < best:
            best, best_amax = err, centers[i]
    return float(best_amax)


def gaussian_with_outliers(n=200_000, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, generator=g)
    x[:20] = torch.linspace(8, 12, 20)  # a few large outliers
    return x


def test_max_calibrator_per_tensor_and_per_channel():
    cal = MaxCalibrator()
    cal.collect(torch.tensor([1.0, -4.0]))
    cal.collect(torch.tensor([3.0]))
    assert cal.compute_amax().item() == 4.0
    per_channel = MaxCalibrator(axis=0)
    w = torch.randn(5, 7)
    per_channel.collect(w)
    np.testing.assert_allclose(per_channel.compute_amax().numpy(), np.abs(w.numpy()).max(1))


def test_percentile_within_one_bin_of_numpy():
    x = gaussian_with_outliers()
    cal = HistogramCalibrator()
    for chunk in x.split(50_000):
        cal.collect(chunk)
    width = float(cal.bin_edges[1])
    for pct in (99.0, 99.9, 99.99):
        expected = np.percentile(np.abs(x.numpy()), pct)
        assert abs(cal.compute_amax("percentile", percentile=pct).item() - expected) <= width + 1e-6


def test_histogram_growing_range_merges_bins_exactly():
    cal = HistogramCalibrator(num_bins=64)
    cal.collect(torch.linspace(0, 1, 1000))
    cal.collect(torch.linspace(0, 3.5, 1000))  # range grows by 4x
    assert cal.hist.numel() == 64 and cal.hist.sum().item() == 2000
    expected, _ = np.histogram(
        np.concatenate([np.linspace(0, 1, 1000), np.linspace(0, 3.5, 1000)]), bins=cal.bin_edges.numpy()
    )
    assert np.abs(cal.hist.numpy() - expected).sum() <= 4  # only values on bin edges may move
    assert cal.compute_amax("max").item() == pytest.approx(3.5)


@pytest.mark.parametrize("unsigned", [False, True])
def test_entropy_equals_pytorch_quantization_loop(unsigned):
    x = gaussian_with_outliers(50_000)
    cal = HistogramCalibrator(num_bins=400, unsigned=unsigned)
    cal.collect(x)
    hist, edges = cal.hist, cal.bin_edges
    start = 256 if unsigned else 128  # twice the levels when unsigned
    got = entropy_amax(hist, edges, 8, unsigned, start_bin=start)
    want = reference_entropy(hist.numpy(), edges.numpy(), 8, unsigned, start_bin=start)
    assert got == pytest.approx(want)


def test_mse_equals_loop_reference():
    cal = HistogramCalibrator(num_bins=512)
    cal.collect(gaussian_with_outliers(50_000))
    got = mse_amax(cal.hist, cal.bin_edges, 8, False)
    assert got == pytest.approx(reference_mse(cal.hist.numpy(), cal.bin_edges.numpy()))


@pytest.mark.parametrize("method", ["mse", "entropy"])
def test_mse_and_entropy_clip_outliers(method):
    x = gaussian_with_outliers()
    cal = HistogramCalibrator()
    cal.collect(x)
    amax = cal.compute_amax(method).item()
    p99 = np.percentile(np.abs(x.numpy()), 99)
    assert p99 < amax < float(x.abs().max())


def test_candidates_from_one_pass_equal_separate_calibrations():
    """calibrate_candidates collects once and computes every method; each result must equal a
    calibration run with that method alone (same data, fresh statistics)."""
    import copy

    import qdqbert
    from qdqbert.quant import calibrate_candidates, load_amax
    from tests.conftest import padded_batch, tiny_config

    torch.manual_seed(0)
    model = qdqbert.QDQBertModel(tiny_config()).eval()
    batches = [padded_batch(seed=s) for s in range(3)]
    fresh = copy.deepcopy(model)
    methods = ("max", "percentile", "mse")  # entropy is the same mechanism, only slower
    candidates = calibrate_candidates(model, batches, methods, progress=False)
    assert set(candidates) == set(methods)
    for method in methods:
        separate = copy.deepcopy(fresh)
        qdqbert.calibrate(separate, batches, method=method, progress=False)
        for name, q in qdqbert.quantizers(separate).items():
            torch.testing.assert_close(candidates[method][name].reshape(q.amax.shape), q.amax, rtol=0, atol=0)
    activations = [n for n in candidates["max"] if "weight" not in n]
    assert any(candidates["mse"][n] < candidates["max"][n] for n in activations)  # the methods differ
    left = {n: q.amax.clone() for n, q in qdqbert.quantizers(model).items()}
    assert all(torch.equal(left[n], candidates["max"][n].reshape(left[n].shape)) for n in left)  # the first method
    load_amax(model, candidates["mse"])
    for name, q in qdqbert.quantizers(model).items():
        torch.testing.assert_close(q.amax, candidates["mse"][name].reshape(q.amax.shape))
