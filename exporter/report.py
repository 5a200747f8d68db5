"""report.md and the short summary printed at the end of `build` / `check`."""

from __future__ import annotations

from typing import Any


def _fmt(value: Any, digits: int = 4) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return "—" if value is None else str(value)


def parity_rows(report: dict[str, Any]) -> list[tuple[str, str, str, dict]]:
    """(backend, reference, output, metrics) for every comparison in the report."""
    rows = []
    for backend, entry in report.get("parity", {}).items():
        for ref_key, ref_name in (("vs_fake_quant", "eager fake-quant"), ("vs_fp32", "eager FP32")):
            result = entry.get(ref_key)
            if not result:
                continue
            agreement = result["agreement"]
            for output, metrics in result["outputs"].items():
                rows.append((backend, ref_name, output, metrics | {"agreement": agreement}))
    return rows


def _layers(summary: dict[str, Any] | None) -> str:
    """engine.json's layer_precisions in one line."""
    if not summary or "unavailable" in summary or "detail" in summary:
        return (summary or {}).get("unavailable") or (summary or {}).get("detail") or "—"
    precisions = ", ".join(f"{k} {v}" for k, v in summary["by_input_precision"].items())
    gemms = summary["gemm_layers_not_int8"]
    return f"{summary['layers']} layers by input precision: {precisions}; GEMM layers not in int8: " + (
        ", ".join(gemms[:10]) + (f" (+{len(gemms) - 10})" if len(gemms) > 10 else "") if gemms else "none"
    )


def render_markdown(report: dict[str, Any]) -> str:
    inputs, export = report["inputs"], report.get("export", {})
    validation = export.get("validation", {})
    lines = [
        f"# qdqbert-trt build report: {inputs['task']}",
        "",
        f"- model: `{inputs['model']}`"
        + ("" if report.get("head_trained", True) else " (task head untrained: random, seeded)"),
        f"- precision: {inputs['precision']} (float parts {inputs['float_dtype']}), calibrator: "
        f"{inputs['calibrator']}"
        + (f" {inputs['percentile']}" if inputs["calibrator"] == "percentile" else "")
        + f", calibration samples: {report.get('calibration', {}).get('samples', '—')}",
        f"- exporter: {export.get('exporter')} opset {export.get('opset')}, ONNX {export.get('bytes', 0) / 1e6:.1f} MB",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in report.get("versions", {}).items()),
        "",
        "## Graph validation",
        "",
        f"- QuantizeLinear / DequantizeLinear: {validation.get('quantize_linear')} / {validation.get('dequantize_linear')}",
        f"- encoder MatMul/Gemm with both inputs quantized: {validation.get('encoder_matmuls_quantized')} of "
        f"{validation.get('encoder_matmuls')}",
        f"- residual Adds before LayerNorm with both inputs quantized: {validation.get('residual_adds_quantized')} of "
        f"{validation.get('residual_adds')}",
        f"- result: {'ok' if validation.get('ok') else str(len(validation.get('issues', []))) + ' issue(s)'}",
    ]
    for issue in validation.get("issues", [])[:20]:
        lines.append(f"  - {issue}")
    engine = report.get("engine", {})
    lines += ["", "## Engine", ""]
    if "skipped" in engine:
        lines.append(f"- not built: {engine['skipped']}")
    else:
        lines += [f"- {k}: {_layers(v) if k == 'layer_precisions' else _fmt(v)}" for k, v in engine.items()]
    lines += ["", "## Parity", "", "| backend | reference | output | max abs | mean abs | cosine | agreement |",
              "|---|---|---|---|---|---|---|"]  # fmt: skip
    for backend, ref, output, m in parity_rows(report):
        agreement = m["agreement"]
        lines.append(f"| {backend} | {ref} | {output} | {_fmt(m.get('max_abs'))} | {_fmt(m.get('mean_abs'))} | "
                     f"{_fmt(m.get('cosine'), 6)} | {agreement['metric']} {agreement['value']:.4f} |")  # fmt: skip
    checks = [(b, e["tolerance"]) for b, e in report.get("parity", {}).items() if "tolerance" in e]
    if checks:
        lines += ["", "Tolerance check (Polygraphy `SimpleCompareFunc`, max error, against the model each backend "
                  "was exported from):", ""]  # fmt: skip
        for backend, t in checks:
            verdict = t.get("skipped") or (f"{'pass' if t['passed'] else 'FAIL'} at atol {t['atol']:g} "
                                           f"({', '.join(f'{k}: {v}' for k, v in t['outputs'].items())})")  # fmt: skip
            lines.append(f"- {backend}: {verdict}")
    if "noise-floor" in report.get("parity", {}):
        lines.append(
            "\n`noise-floor`: the eager fake-quant model against itself with relative noise of 1e-6 on every "
            "quantizer input (about the float error of another library's kernels). Quantization turns such noise "
            "into whole quantization steps, so any other INT8 runtime (ONNX Runtime, TensorRT) can only be "
            "expected to match eager fake-quant to about this floor."
        )
    for backend, entry in report.get("parity", {}).items():
        if "skipped" in entry or "error" in entry:
            lines.append(f"\n- {backend}: {entry.get('skipped') or entry.get('error')}")
        elif "identical_to" in entry:
            same = entry["identical_to"]
            differ = f"differ from the launched engine by up to {entry.get('max_abs_vs_launched', float('nan')):.3g}"
            lines.append(f"\n- {backend}: outputs {'identical to ' + same if same else differ}")
    sweep = report.get("sensitivity")
    if sweep:
        lines += ["", "## Sensitivity: which quantizers cost accuracy", "",
                  f"Mean output cosine to eager FP32 with every quantizer on: {sweep['baseline_cosine']:.5f} "
                  f"(first {sweep['batches']} evaluation batches). Each row leaves one role (that quantizer in every "
                  "layer) in float; `--skip-quant ROLE` does that in the build, at some speed cost in TensorRT.", "",
                  "| role | quantizers | cosine if float | gain |", "|---|---|---|---|"]  # fmt: skip
        for row in sweep["roles"][:8]:
            lines.append(
                f"| `{row['role']}` | {row['quantizers']} | {row['cosine_if_float']:.5f} | {row['gain']:+.5f} |"
            )
    lines += ["", "## Latency", "", "| backend | shape | p50 ms | p90 ms | p99 ms | throughput /s | runs |",
              "|---|---|---|---|---|---|---|"]  # fmt: skip
    for backend, t in report.get("latency", {}).items():
        lines.append(f"| {backend} | {t['shape']} | {t['p50_ms']:.2f} | {t['p90_ms']:.2f} | {t['p99_ms']:.2f} | "
                     f"{t['throughput_per_s']:.1f} | {t['runs']} |")  # fmt: skip
    lines += [
        "",
        f"Machine: {report.get('machine', {})}. CPU latencies are host-clock medians on a shared machine.",
        "",
    ]
    if report.get("warnings"):
        lines += ["## Warnings", ""] + [f"- {w}" for w in report["warnings"]] + [""]
    return "\n".join(lines)


def summary(report: dict[str, Any], out: str) -> str:
    """A few lines for the terminal."""
    validation = report.get("export", {}).get("validation", {})
    lines = [f"built {report['inputs']['task']} ({report['inputs']['precision']}) → {out}/"]
    lines.append(
        f"  graph: {validation.get('quantize_linear', 0)} Q/DQ pairs, encoder matmuls quantized "
        f"{validation.get('encoder_matmuls_quantized')}/{validation.get('encoder_matmuls')}, "
        + ("valid" if validation.get("ok") else f"{len(validation.get('issues', []))} validation issue(s)")
    )
    engine = report.get("engine", {})
    lines.append(f"  engine: {engine['skipped']}" if "skipped" in engine else
                 f"  engine: {engine['flavor']} {engine['library_version']}, {engine['plan_bytes'] / 1e6:.1f} MB, "
                 f"built in {engine['build_seconds']:.1f} s")  # fmt: skip
    int8 = report["inputs"]["precision"] == "int8"
    for backend, ref, output, m in parity_rows(report):
        if ref == "eager fake-quant" or backend == "eager-fake-quant" or not int8:
            a = m["agreement"]
            lines.append(f"  {backend} vs {ref} [{output}]: max abs {_fmt(m['max_abs'], 3)}, "
                         f"cosine {m['cosine']:.5f}, {a['metric']} agreement {a['value']:.3f}")  # fmt: skip
    sweep = report.get("sensitivity")
    if sweep and sweep["roles"] and sweep["roles"][0]["gain"] > 0.005:
        top = sweep["roles"][0]
        lines.append(f"  most sensitive: {top['role']} (cosine to FP32 {sweep['baseline_cosine']:.4f} → "
                     f"{top['cosine_if_float']:.4f} if left in float: --skip-quant '{top['role']}')")  # fmt: skip
    fastest = sorted(report.get("latency", {}).items(), key=lambda kv: kv[1]["p50_ms"])
    if fastest:
        lines.append("  latency p50: " + ", ".join(f"{k} {v['p50_ms']:.1f} ms" for k, v in fastest))
    lines.append(f"  report: {out}/report.md")
    return "\n".join(lines)
