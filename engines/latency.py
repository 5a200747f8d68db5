"""Latency: warm-up, then N timed runs; percentiles and throughput.

CPU: `time.perf_counter` around each call. GPU: CUDA events on the runner's stream, inputs already on
the device (no host copies inside the timed region).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np


def summarize(times_ms: list[float], batch: int) -> dict[str, Any]:
    t = np.asarray(times_ms)
    p50 = float(np.percentile(t, 50))
    return {"p50_ms": p50, "p90_ms": float(np.percentile(t, 90)), "p99_ms": float(np.percentile(t, 99)),
            "mean_ms": float(t.mean()), "min_ms": float(t.min()), "runs": len(t),
            "throughput_per_s": batch * 1000.0 / p50 if p50 > 0 else float("inf")}  # fmt: skip


def measure_cpu(fn: Callable[[], Any], *, batch: int, warmup: int = 3, iters: int = 20,
                progress: bool = False, label: str = "latency") -> dict[str, Any]:  # fmt: skip
    """Time `fn()` on the host clock."""
    for _ in range(warmup):
        fn()
    times = []
    steps = range(iters)
    if progress:
        from tqdm.auto import tqdm

        steps = tqdm(steps, desc=label, unit="run", leave=False)
    for _ in steps:
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return summarize(times, batch) | {"warmup": warmup, "clock": "perf_counter"}


def measure_cuda(fn: Callable[[], Any], *, batch: int, warmup: int = 10, iters: int = 100) -> dict[str, Any]:
    """Time `fn()` with CUDA events on the current stream (fn must only enqueue device work)."""
    import torch

    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(iters)]
    for start, end in events:
        start.record()
        fn()
        end.record()
    torch.cuda.synchronize()
    return summarize([s.elapsed_time(e) for s, e in events], batch) | {"warmup": warmup, "clock": "cuda_events"}
