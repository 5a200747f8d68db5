"""`python -m exporter {build,calibrate,qat,export,check}`.

Errors are one line on stderr with exit code 2 (a traceback only with --verbose); nothing
half-written is left in --out.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

from qdqbert.errors import QDQBertError

from .tasks import TASKS


def _triple(text: str) -> tuple[int, int, int]:
    """ "8" → (1, 8, 8); "1,8,32" → (1, 8, 32)."""
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: use OPT or MIN,OPT,MAX (integers)") from None
    if len(values) == 1:
        return (1, values[0], values[0])
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"{text!r}: use OPT or MIN,OPT,MAX")
    return tuple(values)  # type: ignore[return-value]


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--verbose", action="store_true", help="show tracebacks and library logs")


def _add_model(parser: argparse.ArgumentParser, task_required: bool = True) -> None:
    group = parser.add_argument_group("model")
    group.add_argument("--task", required=task_required, help=f"one of: {', '.join(TASKS)}")
    group.add_argument("--model", help="BERT or QDQBERT checkpoint directory (default: the embedded all-MiniLM-L6-v2)")
    group.add_argument("--seed", type=int, default=0, help="seed for untrained head weights and data order (default 0)")


def _add_calibration(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("calibration")
    group.add_argument(
        "--calib-data", help="text (.txt), JSONL, CSV or SQuAD JSON (default: the shipped English corpus)"
    )
    group.add_argument("--calibrator", default="percentile", choices=["max", "percentile", "mse", "entropy", "auto"],
                       help="how activation ranges are chosen (default percentile); auto: collect once, try all "
                       "four, keep the one whose outputs are closest to FP32")  # fmt: skip
    group.add_argument("--percentile", type=float, default=99.99, help="for --calibrator percentile (default 99.99)")
    group.add_argument("--num-calib", type=int, default=128, help="calibration samples (default 128; fewer in the "
                       "data: a warning, and all are used)")  # fmt: skip
    group.add_argument(
        "--seq-len", type=int, default=128, help="maximum (and engine opt/max) sequence length (default 128)"
    )
    group.add_argument("--skip-quant", action="append", default=[], metavar="GLOB",
                       help="leave quantizers matching this glob in float ('*' within one dotted part, '**' across), "
                       "e.g. 'bert.encoder.layer.*.output.add_local_input_quantizer'; the report's sensitivity "
                       "table suggests candidates")  # fmt: skip


def _add_export(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("export")
    group.add_argument("--exporter", default="torchscript", choices=["torchscript", "dynamo"],
                       help="torch.onnx exporter (default torchscript, opset 17; dynamo uses opset ≥ 18)")  # fmt: skip
    group.add_argument("--opset", type=int, help="ONNX opset (default 17 torchscript, 18 dynamo)")
    group.add_argument("--strict", action="store_true", help="fail when graph validation finds an issue")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m exporter", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    build = sub.add_parser("build", help="calibrate → export → engine → check → report, in one command")
    _add_model(build)
    _add_calibration(build)
    _add_export(build)
    group = build.add_argument_group("engine and check")
    group.add_argument("--out", help="output directory (default build/<task>)")
    group.add_argument("--precision", default="int8", choices=["int8", "fp16", "fp32"], help="default int8")
    group.add_argument("--float-dtype", default="fp32", choices=["fp32", "fp16"],
                       help="dtype of the non-quantized parts (fp16 for FP16 in strongly typed TensorRT)")  # fmt: skip
    group.add_argument("--backend", default="auto", choices=["auto", "tensorrt", "tensorrt-rtx", "onnxruntime"],
                       help="engine flavor (auto: TensorRT, else TensorRT-RTX, else ONNX Runtime only)")  # fmt: skip
    group.add_argument(
        "--batch", type=_triple, default=(1, 8, 32), help="engine batch profile MIN,OPT,MAX (default 1,8,32)"
    )
    group.add_argument("--min-seq-len", type=int, default=1, help="engine profile minimum sequence length (default 1)")
    group.add_argument("--num-eval", type=int, default=64, help="samples for the parity check (default 64)")
    group.add_argument("--latency-iters", type=int, default=20, help="timed runs per backend (default 20)")
    group.add_argument("--compute-capability", action="append", dest="compute_capabilities", metavar="X.Y",
                       help="TensorRT-RTX target GPU(s), e.g. 8.9 (repeatable; default: the library's)")  # fmt: skip
    group.add_argument(
        "--triton-repo", metavar="DIR", help="also write a Triton Inference Server model repository entry"
    )
    group.add_argument("--min-cosine", type=float, metavar="X",
                       help="leave the costliest quantizer roles in float (at most 4) until the outputs' cosine to "
                       "FP32 reaches X, e.g. 0.95 (default: quantize everything)")  # fmt: skip
    group.add_argument("--no-sensitivity", dest="sensitivity", action="store_false",
                       help="skip the sweep that ranks quantizer roles by the accuracy they cost (int8)")  # fmt: skip
    _add_common(build)
    build.set_defaults(run=_cmd_build)

    check = sub.add_parser("check", help="re-run parity and latency on an existing build directory")
    check.add_argument("--out", required=True, help="a directory written by build")
    _add_common(check)
    check.set_defaults(run=_cmd_check)

    calibrate = sub.add_parser("calibrate", help="calibrate a checkpoint and save it as a QDQBERT checkpoint")
    _add_model(calibrate)
    _add_calibration(calibrate)
    calibrate.add_argument("--out", required=True, help="directory for the calibrated checkpoint")
    calibrate.add_argument("--batch-size", type=int, default=8, help="calibration batch size (default 8)")
    _add_common(calibrate)
    calibrate.set_defaults(run=_cmd_calibrate)

    export = sub.add_parser("export", help="export a calibrated QDQBERT checkpoint to ONNX and validate it")
    _add_model(export)
    _add_export(export)
    export.add_argument("--out", required=True, help="output directory (model.onnx, quant.json, validation.json)")
    export.add_argument("--seq-len", type=int, default=16, help="length of the tracing example; the graph's "
                        "sequence axis stays dynamic (default 16)")  # fmt: skip
    _add_common(export)
    export.set_defaults(run=_cmd_export)

    from .qat import add_qat_parser

    add_qat_parser(sub, _add_model, _add_calibration, _add_common)
    return parser


def _cmd_build(args: argparse.Namespace, log: Callable, warn: Callable) -> int:
    from .pipeline import build
    from .preparation import BuildConfig
    from .report import summary

    config = BuildConfig(
        task=args.task, model=args.model, out=args.out, calib_data=args.calib_data, calibrator=args.calibrator,
        percentile=args.percentile, num_calib=args.num_calib, num_eval=args.num_eval, seq_len=args.seq_len,
        min_seq_len=args.min_seq_len, batch=args.batch, precision=args.precision, float_dtype=args.float_dtype,
        backend=args.backend, exporter=args.exporter, opset=args.opset, seed=args.seed, strict=args.strict,
        skip_quant=args.skip_quant, latency_iters=args.latency_iters, compute_capabilities=args.compute_capabilities,
        triton_repo=args.triton_repo, sensitivity=args.sensitivity, min_cosine=args.min_cosine,
    )  # fmt: skip
    report = build(config, warn, log)
    print(summary(report, str(config.out_dir)))
    return 0


def _cmd_check(args: argparse.Namespace, log: Callable, warn: Callable) -> int:
    from .pipeline import recheck
    from .report import summary

    report = recheck(Path(args.out), warn, log)
    print(summary(report, args.out))
    return 0


def _cmd_calibrate(args: argparse.Namespace, log: Callable, warn: Callable) -> int:
    from .commands import calibrate_checkpoint

    path = calibrate_checkpoint(args, warn, log)
    print(f"calibrated checkpoint → {path} (quant.json lists every amax)")
    return 0


def _cmd_export(args: argparse.Namespace, log: Callable, warn: Callable) -> int:
    from .commands import export_checkpoint

    validation = export_checkpoint(args, warn, log)
    print(json.dumps({k: v for k, v in validation.items() if k != "op_counts"}, indent=1))
    return 0 if validation["ok"] or not args.strict else 1


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.verbose)

    # one write per line, so lines from several torchrun ranks do not interleave
    def log(message: str) -> None:
        print(f"· {message}\n", end="", file=sys.stderr, flush=True)

    def warn(message: str) -> None:
        print(f"warning: {message}\n", end="", file=sys.stderr, flush=True)

    try:
        return args.run(args, log, warn)
    except (QDQBertError, OSError) as exc:
        if args.verbose:
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted; nothing was written to --out", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - a bug still gets one line; --verbose shows where
        if args.verbose:
            traceback.print_exc()
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(f"error: internal error ({type(exc).__name__}: {first}); rerun with --verbose and report it",
              file=sys.stderr)  # fmt: skip
        return 3


def _configure_logging(verbose: bool) -> None:
    """Keep library chatter (transformers load reports, exporter notices) out of a normal run."""
    import os
    import warnings

    if verbose:
        return
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    warnings.filterwarnings("ignore")
