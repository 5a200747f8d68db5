"""`python -m bench`: a quick run writes a valid results file; compare flags a planted slowdown."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from bench.cli import main
from bench.results import compare_runs


def _synthetic(p50: float = 10.0, p90: float = 10.2) -> dict:
    cells = {}
    for backend in ("eager-fp32", "ort-int8-qdq"):
        key = f"tiny/b1/s128/{backend}"
        cells[key] = {"model": "tiny", "batch": 1, "seq": 128, "backend": backend, "device": "cpu", "p50_ms": p50,
                      "p90_ms": p90, "p99_ms": p90, "throughput_per_s": 1000 / p50, "rss_mb": 100.0,
                      "parity_vs_fp32": {"max_abs": 0.0, "mean_abs": 0.0, "cosine": 1.0, "pooled_cosine": 1.0}}  # fmt: skip
    env = {"date": "2026-11-25T00:00:00+00:00", "git_commit": "x", "cpu": "cpu", "cpu_count": 2, "gpu": None}
    return {"format_version": 1, "environment": env, "settings": {"warmup": 1, "iters": 5}, "cells": cells}


def _write(path: Path, content: dict) -> str:
    path.write_text(json.dumps(content))
    return str(path)


def test_quick_run_writes_a_valid_results_file(tmp_path, capsys):
    assert main(["run", "--quick", "--out", str(tmp_path), "--name", "r", "--iters", "3", "--warmup", "1"]) == 0
    results = json.loads((tmp_path / "r.json").read_text())
    assert results["format_version"] == 1
    assert {"cpu", "date", "git_commit", "versions", "gpu"} <= set(results["environment"])
    assert len(results["cells"]) == 4
    for cell in results["cells"].values():
        assert cell["p50_ms"] > 0 and cell["p50_ms"] <= cell["p90_ms"] <= cell["p99_ms"]
        assert cell["runs"] == 3 and cell["warmup"] == 1
        assert 0.9 < cell["parity_vs_fp32"]["pooled_cosine"] <= 1.0 + 1e-9
    assert results["cells"]["tiny/b1/s128/eager-fp32"]["parity_vs_fp32"]["max_abs"] == 0
    assert "| tiny | 1 | 128 | ort-int8-qdq |" in capsys.readouterr().out


def test_compare_passes_identical_runs(tmp_path):
    run = _synthetic()
    assert main(["compare", _write(tmp_path / "a.json", run), _write(tmp_path / "b.json", run)]) == 0


def test_compare_flags_a_planted_slowdown(tmp_path, capsys):
    old = _synthetic()
    new = copy.deepcopy(old)
    cell = new["cells"]["tiny/b1/s128/ort-int8-qdq"]
    cell["p50_ms"], cell["p90_ms"] = 13.0, 13.26  # 30 % slower, same 2 % spread
    assert main(["compare", _write(tmp_path / "a.json", old), _write(tmp_path / "b.json", new)]) == 1
    captured = capsys.readouterr()
    assert "tiny/b1/s128/ort-int8-qdq" in captured.err and "eager-fp32" not in captured.err


def test_compare_allows_slowdowns_within_measured_noise():
    old, new = _synthetic(10.0, 15.0), _synthetic(11.5, 17.0)  # 15 % slower, but each run spreads ~50 %
    assert all(row["verdict"] == "same" for row in compare_runs(old, new, 0.10))


def test_report_writes_markdown_and_plots(tmp_path):
    older, newer = _synthetic(), _synthetic(9.0, 9.1)
    newer["environment"]["date"] = "2026-11-26T00:00:00+00:00"
    paths = [_write(tmp_path / "a.json", older), _write(tmp_path / "b.json", newer)]
    assert main(["report", *paths, "--out", str(tmp_path / "report")]) == 0
    text = (tmp_path / "report" / "report.md").read_text()
    assert "published" in text and "| tiny | 1 | 128 | ort-int8-qdq |" in text
    assert (tmp_path / "report" / "latency-tiny-s128.png").stat().st_size > 1000
    assert (tmp_path / "report" / "history.png").stat().st_size > 1000


def test_bad_results_file_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "x.json").write_text("{}")
    assert main(["compare", str(tmp_path / "x.json"), str(tmp_path / "x.json")]) == 2
    assert "is not a bench results file" in capsys.readouterr().err


def test_only_filter_validation(capsys):
    assert main(["run", "--only", "colour=red"]) == 2
    assert "--only 'colour=red'" in capsys.readouterr().err


@pytest.mark.parametrize("only,count", [(["model=tiny", "batch=1,8", "seq=128", "backend=ort-fp32"], 2)])
def test_matrix_filters(only, count):
    from bench.matrix import cells, parse_only

    assert len(cells(None, parse_only(only))) == count


def test_gpu_preset_is_the_gpu_table():
    from bench.matrix import BACKENDS, cells

    gpu = cells("gpu")
    assert {c.model for c in gpu} == {"bert-base", "bert-large"} and {c.batch for c in gpu} == {1, 8, 32}
    assert {c.seq for c in gpu} == {128, 384}
    backends = {c.backend for c in gpu}
    assert {"eager-fp32", "eager-fp16", "eager-fake-quant", "compile-fp16", "tensorrt-int8"} <= backends
    assert all(BACKENDS[b][0] or b.startswith("eager") for b in backends)


@pytest.mark.parametrize("command", ["run", "compare", "report", "overhead"])
def test_every_bench_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0 and "--verbose" in capsys.readouterr().out
