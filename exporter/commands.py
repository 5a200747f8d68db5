"""`calibrate` and `export`: the pipeline's first stages as commands of their own."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engines.files import write_atomic
from qdqbert import quantizers
from qdqbert.quant import QuantMode

from . import data as data_mod
from .errors import UsageError
from .onnx_export import export_onnx
from .preparation import BuildConfig, eval_inputs, load, prepare_quantizers, quant_json, validate_config
from .staging import Staging
from .validate import validate_graph


def calibrate_checkpoint(args, warn: Callable[[str], None], log: Callable[[str], None]) -> Path:
    """`calibrate`: save a calibrated QDQBERT checkpoint (+ tokenizer, quant.json) to --out.

    Under `torchrun`, each rank calibrates on its shard of the samples and amax is reduced (max)
    across ranks, so every rank holds the same calibration; rank 0 writes."""
    from .distributed import rank_and_world, shard

    config = BuildConfig(task=args.task, model=args.model, out=args.out, calib_data=args.calib_data,
                         calibrator=args.calibrator, percentile=args.percentile, num_calib=args.num_calib,
                         seq_len=args.seq_len, seed=args.seed, skip_quant=args.skip_quant,
                         batch=(1, args.batch_size, args.batch_size))  # fmt: skip
    validate_config(config)
    samples = data_mod.select(data_mod.read_samples(config.calib_data), config.num_calib, "--num-calib", warn)
    loaded = load(config, warn)
    rank, world = rank_and_world()
    log(
        f"calibrating ({config.calibrator}, {len(samples)} samples"
        + (f", rank {rank} of {world})" if world > 1 else ")")
    )
    # ranks score --calibrator auto on the same (whole) samples, so they all choose the same method
    calibration = prepare_quantizers(loaded, config, shard(samples, rank, world), samples)
    if world > 1:
        digest = hashlib.sha256(quant_json(loaded.model, calibration)).hexdigest()[:16]
        log(f"rank {rank}/{world}: calibration digest {digest}")  # equal on every rank after the reduce
    out = config.out_dir
    if rank == 0:
        with Staging(out) as staging:
            loaded.model.save_pretrained(staging.path)
            loaded.tokenizer.save_pretrained(staging.path)
            write_atomic(staging.path / "quant.json", quant_json(loaded.model, calibration))
            staging.publish()
    return out


def export_checkpoint(args, warn: Callable[[str], None], log: Callable[[str], None]) -> dict[str, Any]:
    """`export`: ONNX (+ quant.json, validation.json) from a calibrated QDQBERT checkpoint."""
    config = BuildConfig(task=args.task, model=args.model, out=args.out, seq_len=args.seq_len, seed=args.seed,
                         exporter=args.exporter, opset=args.opset, strict=args.strict)  # fmt: skip
    validate_config(config)
    loaded = load(config, warn)
    uncalibrated = [
        n for n, q in quantizers(loaded.model).items() if q.mode is QuantMode.QUANTIZE and not q.is_calibrated
    ]
    if uncalibrated:
        raise UsageError(f"{config.model_dir} is not calibrated ({len(uncalibrated)} quantizers have no amax); "
                         "run `python -m exporter calibrate` first, or use `build`")  # fmt: skip
    samples = data_mod.builtin_corpus()[:2]
    example = eval_inputs(loaded, config, samples)[0]
    with Staging(config.out_dir) as staging:
        stage = staging.path
        log(f"exporting ONNX ({config.exporter})")
        path = export_onnx(loaded.model, loaded.task, example, stage / "model.onnx", opset=config.opset,
                           exporter=config.exporter)  # fmt: skip
        validation = validate_graph(path).to_dict()
        if config.strict and not validation["ok"]:
            raise UsageError(f"graph validation found {len(validation['issues'])} issue(s), first: "
                             f"{validation['issues'][0]} (--strict)")  # fmt: skip
        write_atomic(stage / "quant.json", quant_json(loaded.model, {}))
        write_atomic(stage / "validation.json", (json.dumps(validation, indent=1) + "\n").encode())
        staging.publish()
    return validation
