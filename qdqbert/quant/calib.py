"""Calibrators: collect statistics of a tensor, then choose its amax.

All share one interface (as in pytorch-quantization): `collect(x)`, `reset()`, `compute_amax(...)`.
Histogram collection is separate from how amax is chosen (percentile, MSE, entropy), and the amax
choosers are vectorized over all candidate ranges so a BERT-base model calibrates in seconds.
"""

from __future__ import annotations

import torch

from ..errors import QuantizerError

CALIB_METHODS = ("max", "percentile", "mse", "entropy")


def _reduce_amax(x: torch.Tensor, axis: int | None) -> torch.Tensor:
    """max(|x|) over the whole tensor, or over every dimension but `axis`."""
    x = x.detach().abs()
    if axis is None:
        return x.amax().float()
    dims = [d for d in range(x.dim()) if d != axis % x.dim()]
    return x.amax(dim=dims).float() if dims else x.float()


class MaxCalibrator:
    """Running max of |x|, per tensor or per channel."""

    def __init__(self, axis: int | None = None) -> None:
        self.axis = axis
        self._amax: torch.Tensor | None = None

    def collect(self, x: torch.Tensor) -> None:
        amax = _reduce_amax(x, self.axis)
        self._amax = amax if self._amax is None else torch.maximum(self._amax, amax)

    def reset(self) -> None:
        self._amax = None

    def compute_amax(self, method: str = "max", **_: object) -> torch.Tensor | None:
        if method != "max":
            raise QuantizerError(f"MaxCalibrator computes only method='max', not {method!r}")
        return None if self._amax is None else self._amax.clone()


class HistogramCalibrator:
    """Histogram of |x| with `num_bins` bins over [0, running max].

    Unlike pytorch-quantization, which appends bins when a later batch has a larger max (so a
    histogram can grow to hundreds of thousands of bins), the range here grows by an integer factor
    and neighbouring bins merge exactly: the bin count stays `num_bins` and the amax search stays
    cheap and bounded.
    """

    def __init__(self, num_bins: int = 2048, unsigned: bool = False, skip_zeros: bool = False) -> None:
        self.num_bins = num_bins
        self.unsigned = unsigned
        self.skip_zeros = skip_zeros
        self.reset()

    def reset(self) -> None:
        self.hist: torch.Tensor | None = None  # float64 counts, num_bins
        self.width: float = 0.0  # bin width; range is [0, width * num_bins]
        self.max: float = 0.0  # exact running max of |x|, for method="max"

    @property
    def bin_edges(self) -> torch.Tensor:
        return torch.arange(self.num_bins + 1, dtype=torch.float64) * self.width

    def collect(self, x: torch.Tensor) -> None:
        x = x.detach().abs().float().flatten()
        if self.skip_zeros:
            x = x[x > 0]
        if x.numel() == 0:
            return
        x_max = float(x.max())
        self.max = max(self.max, x_max)
        if self.hist is None:
            self.hist = torch.zeros(self.num_bins, dtype=torch.float64)
            self.width = x_max / self.num_bins if x_max > 0 else 1.0 / self.num_bins
        elif x_max > self.width * self.num_bins:
            factor = int(-(-x_max // (self.width * self.num_bins)))  # ceil
            pad = (-self.num_bins) % factor
            merged = torch.cat([self.hist, self.hist.new_zeros(pad)]).view(-1, factor).sum(1)
            self.hist = torch.cat([merged, merged.new_zeros(self.num_bins - merged.numel())])
            self.width *= factor
        top = self.width * self.num_bins
        self.hist += torch.histc(x.clamp(max=top), bins=self.num_bins, min=0.0, max=top).double()

    def compute_amax(
        self,
        method: str = "percentile",
        *,
        percentile: float = 99.99,
        num_bits: int = 8,
        start_bin: int = 128,
        stride: int = 1,
    ) -> torch.Tensor | None:
        if self.hist is None:
            return None
        if method == "max":
            amax = self.max
        elif method == "percentile":
            amax = percentile_amax(self.hist, self.bin_edges, percentile)
        elif method == "mse":
            amax = mse_amax(self.hist, self.bin_edges, num_bits, self.unsigned, start_bin, stride)
        elif method == "entropy":
            amax = entropy_amax(self.hist, self.bin_edges, num_bits, self.unsigned, start_bin, stride)
        else:
            raise QuantizerError(f"calibration method {method!r} is unknown: use one of {', '.join(CALIB_METHODS)}")
        return torch.tensor(float(amax), dtype=torch.float32)


def percentile_amax(hist: torch.Tensor, edges: torch.Tensor, percentile: float) -> float:
    """Right edge of the bin where the cumulative count reaches `percentile` %."""
    if not 0 < percentile <= 100:
        raise QuantizerError(f"percentile={percentile}: use a value in (0, 100], e.g. 99.99")
    # compare counts, not fractions: 99.9 / 100 rounds above 0.999 and would skip a bin
    target = torch.tensor([percentile / 100 * float(hist.sum()) * (1 - 1e-12)], dtype=hist.dtype)
    idx = int(torch.searchsorted(torch.cumsum(hist, 0), target).clamp(max=len(hist) - 1))
    return float(edges[idx + 1])


def _chunks(start: int, stop: int, stride: int, size: int):
    candidates = torch.arange(start, stop, stride)
    yield from torch.split(candidates, max(1, size))


def mse_amax(
    hist: torch.Tensor, edges: torch.Tensor, num_bits: int, unsigned: bool, start_bin: int = 128, stride: int = 1
) -> float:
    """The bin centre that, used as amax, minimizes the histogram-weighted quantization MSE."""
    centers = (edges[1:] + edges[:-1]) / 2
    bound = (1 << num_bits) - 1 if unsigned else (1 << (num_bits - 1)) - 1
    best_err, best_i = float("inf"), len(centers) - 1
    for idx in _chunks(min(start_bin, len(centers) - 1), len(centers), stride, (1 << 22) // len(centers)):
        amax = centers[idx].unsqueeze(1)  # (C, 1)
        scale = bound / amax
        quant = torch.round(centers * scale).clamp(max=bound) / scale
        err = ((quant - centers) ** 2 * hist).mean(1)
        k = int(torch.argmin(err))
        if float(err[k]) < best_err:
            best_err, best_i = float(err[k]), int(idx[k])
    return float(centers[best_i])


def entropy_amax(
    hist: torch.Tensor, edges: torch.Tensor, num_bits: int, unsigned: bool, start_bin: int = 128, stride: int = 1
) -> float:
    """The range [0, edges[i]] whose quantized distribution has the least KL divergence to the data.

    Exactly pytorch-quantization's `_compute_amax_entropy` (TensorRT's legacy entropy calibrator):
    for every candidate i, the reference keeps bins[:i] with the clipped tail added to the last bin,
    the candidate spreads each of 2^(b-1) groups of bins evenly over its non-empty bins. All
    candidates are evaluated at once, in chunks, instead of one Python loop per candidate.
    """
    bins = hist.clone()
    bins[0] = bins[1] if len(bins) > 1 else bins[0]
    n = len(bins)
    nbins = 1 << (num_bits - 1 + int(unsigned))
    tail = torch.flip(torch.cumsum(torch.flip(bins, [0]), 0), [0])  # tail[i] = sum(bins[i:])
    j = torch.arange(n)
    nonzero = bins > 0
    divergences, arguments = [], []
    for cand in _chunks(min(start_bin, n), n + 1, stride, (1 << 21) // n):
        cand_f = cand.to(torch.float64).unsqueeze(1)
        # np.linspace(0, i, nbins + 1) exactly: k * (i / nbins), last edge = i
        space = torch.arange(nbins + 1, dtype=torch.float64) * (cand_f / nbins)
        space[:, -1] = cand_f[:, 0]
        inside = j < cand.unsqueeze(1)  # (C, n)
        group = torch.searchsorted(space, j.to(torch.float64).expand(len(cand), n).contiguous(), right=True) - 1
        group = group.clamp(0, nbins - 1)
        used = inside & nonzero
        weights = torch.where(inside, bins, bins.new_zeros(()))
        sums = torch.zeros(len(cand), nbins, dtype=torch.float64).scatter_add_(1, group, weights)
        counts = torch.zeros(len(cand), nbins, dtype=torch.float64).scatter_add_(1, group, used.double())
        q = torch.where(used, torch.gather(sums / counts.clamp(min=1), 1, group), bins.new_zeros(()))
        p = weights.clone()
        last = (cand - 1).unsqueeze(1)
        p.scatter_add_(1, last, torch.where(cand < n, tail[cand.clamp(max=n - 1)], 0.0).unsqueeze(1))
        p = p / p.sum(1, keepdim=True)
        q = q / q.sum(1, keepdim=True).clamp(min=1e-300)
        ratio = torch.where(p > 0, p / q, torch.ones_like(p))
        kl = torch.where(p > 0, p * torch.log(ratio), torch.zeros_like(p)).sum(1)
        kl = torch.where(((p > 0) & (q == 0)).any(1), torch.full_like(kl, float("inf")), kl)
        divergences.append(kl)
        arguments.append(cand)
    div = torch.cat(divergences)
    args = torch.cat(arguments)
    best = len(div) - 1 - int(torch.argmin(torch.flip(div, [0])))  # last minimum, as the reference
    return float(edges[int(args[best])])
