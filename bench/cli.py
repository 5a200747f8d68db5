"""`python -m bench {run,compare,report,overhead}`: the nightly latency benchmark.

run      measure the matrix (or --quick / --only), write results/<date>.json
compare  OLD NEW: ratio table; exit 1 when any cell got slower beyond threshold + measured noise
report   markdown table + PNG plots (latency vs batch per backend; history over runs)
overhead QDQBERT's own costs: calibration time per method, eager overhead vs transformers
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import traceback
from pathlib import Path

from qdqbert.errors import QDQBertError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="measure the matrix and write a results file")
    preset = run.add_mutually_exclusive_group()
    preset.add_argument("--quick", action="store_true", help="CI-sized subset: tiny model, b1 s128, four backends")
    preset.add_argument("--gpu", action="store_true", help="the GPU table: BERT-base/large shapes, GPU backends")
    run.add_argument("--only", action="append", default=[], metavar="AXIS=V1,V2",
                     help="filter: model=…, batch=…, seq=…, backend=… (repeatable)")  # fmt: skip
    run.add_argument("--warmup", type=int, help="untimed runs per cell (default 3; 10 with --gpu)")
    run.add_argument("--iters", type=int, help="timed runs per cell (default 20; 100 with --gpu)")
    run.add_argument("--out", default="bench/results", help="directory for the results file (default bench/results)")
    run.add_argument("--name", help="results file name (default: UTC date and time)")
    compare = sub.add_parser("compare", help="compare two results files; exit 1 on a regression")
    compare.add_argument("old")
    compare.add_argument("new")
    compare.add_argument("--threshold", type=float, default=0.10, help="slowdown allowed beyond noise (default 0.10)")
    report = sub.add_parser("report", help="markdown table and PNG plots")
    report.add_argument("results", nargs="+", help="results files, oldest first (the last one is tabulated)")
    report.add_argument("--out", default="bench/report", help="output directory (default bench/report)")
    overhead = sub.add_parser("overhead", help="calibration time per method and eager overhead (BERT-base shape)")
    overhead.add_argument("--batches", type=int, default=4, help="calibration batches of 8×128 (default 4)")
    for p in (run, compare, report, overhead):
        p.add_argument("--verbose", action="store_true", help="show tracebacks")
    return parser


def cmd_run(args) -> int:
    from tqdm.auto import tqdm

    from engines.files import write_atomic

    from . import matrix, results
    from .runner import ModelBench, Skip, run_cell

    preset = "quick" if args.quick else "gpu" if args.gpu else None
    # GPU cells take well under a millisecond to tens of ms: more runs for stable percentiles
    args.warmup = args.warmup if args.warmup is not None else 10 if args.gpu else 3
    args.iters = args.iters if args.iters is not None else 100 if args.gpu else 20
    cells = matrix.cells(preset, matrix.parse_only(args.only))
    if not cells:
        print("error: --only selects no cell", file=sys.stderr)
        return 2
    out = {"format_version": results.FORMAT_VERSION, "environment": results.environment(),
           "settings": {"warmup": args.warmup, "iters": args.iters, "preset": preset, "only": args.only},
           "backends": {k: v[1] for k, v in matrix.BACKENDS.items()}, "cells": {}}  # fmt: skip
    benches, references = {}, {}
    with tempfile.TemporaryDirectory(prefix="qdqbert-bench-") as work:
        progress = tqdm(cells, desc="bench", unit="cell")
        for cell in progress:
            progress.set_postfix_str(cell.key)
            bench = benches.setdefault(cell.model, ModelBench(cell.model, Path(work)))
            try:
                result = run_cell(bench, cell, references, args.warmup, args.iters)
            except Skip as exc:
                result = {"skipped": str(exc)}
            except Exception as exc:  # noqa: BLE001 - one failing cell (OOM, a library error) must not stop the night
                if args.verbose:
                    traceback.print_exc()
                result = {
                    "skipped": f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
                }
            out["cells"][cell.key] = cell.to_dict() | result
    name = args.name or out["environment"]["date"].replace(":", "").replace("+0000", "Z")
    path = Path(args.out) / f"{name}.json"
    write_atomic(path, (json.dumps(out, indent=1) + "\n").encode())
    measured = sum("p50_ms" in c for c in out["cells"].values())
    print(f"{measured} cells measured, {len(cells) - measured} skipped → {path}")
    from .report import markdown_table

    print(markdown_table(out))
    return 0


def cmd_compare(args) -> int:
    from . import results

    rows = results.compare_runs(results.load(args.old), results.load(args.new), args.threshold)
    print("| cell | old p50 ms | new p50 ms | ratio | allowed | verdict |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['cell']} | {r['old_ms']:.3f} | {r['new_ms']:.3f} | {r['ratio']:.3f} | "
              f"±{r['allowance']:.0%} | {r['verdict']} |")  # fmt: skip
    slower = [r["cell"] for r in rows if r["verdict"] == "slower"]
    if slower:
        print(f"{len(slower)} cell(s) slower beyond threshold and noise: {', '.join(slower)}", file=sys.stderr)
        return 1
    print(f"no regression in {len(rows)} cells (threshold {args.threshold:.0%} + measured noise)")
    return 0


def cmd_report(args) -> int:
    from . import results
    from .report import write_report

    runs = [results.load(p) for p in args.results]
    path = write_report(runs, Path(args.out))
    print(f"report → {path}")
    return 0


def cmd_overhead(args) -> int:
    from .overhead import calibration_times, eager_ratios

    print(json.dumps({"eager": eager_ratios(), "calibration": calibration_times(batches=args.batches)}, indent=1))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = {"run": cmd_run, "compare": cmd_compare, "report": cmd_report, "overhead": cmd_overhead}[args.command]
    try:
        return handler(args)
    except (QDQBertError, OSError) as exc:
        if args.verbose:
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        return 2
