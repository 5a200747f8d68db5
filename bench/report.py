"""Markdown table and PNG plots of benchmark results (latency vs batch per backend; history)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from .results import REFERENCE_ROWS


def markdown_table(run: dict[str, Any]) -> str:
    lines = ["| model | batch | seq | backend | device | p50 ms | p90 ms | p99 ms | items/s | memory MB | cosine vs FP32 | max abs vs FP32 |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for cell in run["cells"].values():
        head = f"| {cell['model']} | {cell['batch']} | {cell['seq']} | {cell['backend']} |"
        if "skipped" in cell:
            lines.append(head + f" — | skipped: {cell['skipped']} | | | | | | |")
            continue
        parity = cell["parity_vs_fp32"]
        memory = cell.get("peak_gpu_mb", cell.get("rss_mb"))
        lines.append(head + f" {cell['device']} | {cell['p50_ms']:.2f} | {cell['p90_ms']:.2f} | {cell['p99_ms']:.2f} | "
                     f"{cell['throughput_per_s']:.1f} | {memory} | {parity['pooled_cosine']:.4f} | {parity['max_abs']:.3g} |")  # fmt: skip
    return "\n".join(lines)


def _ratios(run: dict[str, Any]) -> list[str]:
    """Speedups of every backend over eager FP32 in the same cell shape (measured side by side)."""
    base = {(c["model"], c["batch"], c["seq"]): c["p50_ms"] for c in run["cells"].values()
            if c["backend"] == "eager-fp32" and "p50_ms" in c}  # fmt: skip
    lines = ["| model | batch | seq | backend | speedup vs eager FP32 |", "|---|---|---|---|---|"]
    for c in run["cells"].values():
        key = (c["model"], c["batch"], c["seq"])
        if "p50_ms" in c and key in base and c["backend"] != "eager-fp32":
            lines.append(
                f"| {c['model']} | {c['batch']} | {c['seq']} | {c['backend']} | {base[key] / c['p50_ms']:.2f}× |"
            )
    return lines


def write_report(runs: list[dict[str, Any]], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    latest = runs[-1]
    env = latest["environment"]
    lines = [f"# Benchmark {env['date']}", "",
             f"CPU {env['cpu']} ({env['cpu_count']} cores), GPU {env['gpu'] or 'none'}, commit {env['git_commit']}, "
             f"warm-up {latest['settings']['warmup']}, timed runs {latest['settings']['iters']}.", "",
             markdown_table(latest), "", "## Speedups (same run, same shape)", "", *_ratios(latest), "",
             "## Published reference figures (other hardware, not measured here)", "",
             "| source | GPU | seq | INT8 ms | FP16 ms |", "|---|---|---|---|---|",
             *[f"| {r['source']} | {r['gpu']} | {r['seq']} | {r['int8_ms']} | {r['fp16_ms']} |" for r in REFERENCE_ROWS],
             ""]  # fmt: skip
    groups: dict[tuple, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for c in latest["cells"].values():
        if "p50_ms" in c:
            groups[(c["model"], c["seq"])][c["backend"]].append((c["batch"], c["p50_ms"]))
    for (model, seq), backends in sorted(groups.items()):
        fig, ax = plt.subplots(figsize=(6, 4))
        for backend, points in sorted(backends.items()):
            points.sort()
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=backend)
        ax.set(xlabel="batch", ylabel="p50 latency (ms)", title=f"{model}, sequence {seq}", xscale="log", yscale="log")
        batches = sorted({p[0] for points in backends.values() for p in points})
        ax.set_xticks(batches, [str(b) for b in batches])
        ax.minorticks_off()
        ax.legend(fontsize=7)
        name = f"latency-{model}-s{seq}.png"
        fig.tight_layout()
        fig.savefig(out / name, dpi=100)
        plt.close(fig)
        lines.append(f"![{model} s{seq}]({name})")
    if len(runs) > 1:
        _history_plot(runs, out / "history.png")
        lines.append("![history](history.png)")
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _history_plot(runs: list[dict], path: Path, highlight: int = 8) -> None:
    """Each cell's p50 relative to its first run; the cells that moved most in colour, the rest grey,
    the ±10% band `compare` starts from shaded."""
    import matplotlib.pyplot as plt
    import numpy as np

    keys = sorted({k for r in runs for k, c in r["cells"].items() if "p50_ms" in c})
    relative = {}
    for key in keys:
        ys = np.array([r["cells"].get(key, {}).get("p50_ms", np.nan) for r in runs], dtype=float)
        if np.count_nonzero(~np.isnan(ys)) >= 2:
            relative[key] = ys / ys[~np.isnan(ys)][0]
    movers = sorted(relative, key=lambda k: float(np.nanmax(np.abs(relative[k] - 1))), reverse=True)[:highlight]
    x = np.arange(len(runs))
    fig, ax = plt.subplots(figsize=(9, 4.5))
    ax.axhspan(0.9, 1.1, color="tab:green", alpha=0.1, label="±10%")
    for key, ys in relative.items():
        if key not in movers:
            ax.plot(x, ys, color="lightgray", linewidth=1)
    for key in movers:
        ax.plot(x, relative[key], marker="o", label=key)
    ax.axhline(1.0, color="black", linewidth=0.5)
    ax.set(
        ylabel="p50 / the cell's first p50",
        title=f"history: {len(relative)} cells, the {len(movers)} that moved most in colour",
    )
    labels = [r["environment"]["date"][:16].replace("T", " ") for r in runs]
    ax.set_xticks(x, labels, rotation=20, fontsize=7)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
