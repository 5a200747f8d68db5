"""Results files (one JSON per run) with the environment every number depends on; run-to-run
comparison with a noise-aware threshold."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import torch

FORMAT_VERSION = 1

# Published figures from other hardware, shown beside ours and labelled as such (DESIGN.md):
# TensorRT demoBERT, BERT-base, batch 1, average latency in ms.
REFERENCE_ROWS = [
    {"source": "TensorRT demoBERT (published)", "gpu": "A100", "seq": 128, "int8_ms": 0.54, "fp16_ms": 0.62},
    {"source": "TensorRT demoBERT (published)", "gpu": "A100", "seq": 384, "int8_ms": 1.14, "fp16_ms": 1.26},
    {"source": "TensorRT demoBERT (published)", "gpu": "L4", "seq": 128, "int8_ms": 0.61, "fp16_ms": 1.00},
    {"source": "TensorRT demoBERT (published)", "gpu": "L40S", "seq": 128, "int8_ms": 0.34, "fp16_ms": 0.48},
]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def environment() -> dict[str, Any]:
    from exporter.checking import versions

    gpu = None
    if torch.cuda.is_available():
        gpu = {"name": torch.cuda.get_device_name(), "capability": ".".join(map(str, torch.cuda.get_device_capability())),
               "cuda": torch.version.cuda, "driver": _nvidia_driver()}  # fmt: skip
    return {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "git_commit": _git_commit(),
            "cpu": _cpu_model(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "gpu": gpu,
            "platform": platform.platform(), "versions": versions()}  # fmt: skip


def _nvidia_driver() -> str | None:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def load(path: str | Path) -> dict[str, Any]:
    from exporter.errors import UsageError

    path = Path(path)
    try:
        content = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"results file {path} is not readable JSON ({exc})") from None
    if content.get("format_version") != FORMAT_VERSION or "cells" not in content:
        raise UsageError(f"{path} is not a bench results file (format_version {FORMAT_VERSION} with cells)")
    return content


def noise(cell: dict[str, Any]) -> float:
    """Relative run-to-run spread of a cell: (p90 - p50) / p50, at least 1%."""
    return max((cell["p90_ms"] - cell["p50_ms"]) / cell["p50_ms"], 0.01)


def compare_runs(old: dict[str, Any], new: dict[str, Any], threshold: float = 0.10) -> list[dict[str, Any]]:
    """One row per cell present in both runs: p50 ratio, the noise allowance, and the verdict.

    A cell regresses when new p50 > old p50 × (1 + threshold + noise of both runs): a slowdown must
    beat the threshold *and* the spread each run measured for itself."""
    rows = []
    for key, new_cell in new["cells"].items():
        old_cell = old["cells"].get(key)
        if not old_cell or "p50_ms" not in old_cell or "p50_ms" not in new_cell:
            continue
        ratio = new_cell["p50_ms"] / old_cell["p50_ms"]
        allowance = threshold + noise(old_cell) + noise(new_cell)
        verdict = "slower" if ratio > 1 + allowance else "faster" if ratio < 1 - allowance else "same"
        rows.append({"cell": key, "old_ms": old_cell["p50_ms"], "new_ms": new_cell["p50_ms"], "ratio": ratio,
                     "allowance": allowance, "verdict": verdict})  # fmt: skip
    return rows
