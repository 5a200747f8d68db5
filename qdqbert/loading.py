"""Checkpoint loading with one-line errors: missing directory, not BERT, mismatched shapes."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch import nn
from transformers.utils import logging as hf_logging

from .errors import CheckpointError, require

logger = hf_logging.get_logger(__name__)

BERT_MODEL_TYPES = ("bert", "qdqbert")
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers' "model of type bert to instantiate qdqbert" notice; restored after."""
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def check_checkpoint_dir(path: str | os.PathLike) -> Path:
    """Validate that `path` is a local BERT checkpoint directory; return it as a Path."""
    directory = Path(path)
    if not directory.exists():
        raise CheckpointError(
            f"checkpoint directory {directory} does not exist; pass a directory with config.json and weights"
        )
    if not directory.is_dir():
        raise CheckpointError(
            f"checkpoint {directory} is a file; pass the directory that holds config.json and the weights"
        )
    config_file = directory / "config.json"
    if not config_file.is_file():
        raise CheckpointError(f"{config_file} is missing: {directory} is not a transformers checkpoint directory")
    try:
        config = json.loads(config_file.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{config_file} is not readable JSON ({exc})") from None
    model_type = config.get("model_type") if isinstance(config, dict) else None
    if model_type not in BERT_MODEL_TYPES:
        raise CheckpointError(
            f"{config_file}: model_type {model_type!r} is not BERT; qdqbert loads BERT checkpoints "
            f"(model_type {' or '.join(map(repr, BERT_MODEL_TYPES))})"
        )
    if not any((directory / name).is_file() for name in WEIGHT_FILES):
        raise CheckpointError(f"{directory} has no weights: expected one of {', '.join(WEIGHT_FILES)}")
    return directory


def load_config(directory: str | os.PathLike, **overrides):
    """QDQBertConfig of a checkpoint directory (BERT or QDQBERT), with field overrides."""
    from .configuration_qdqbert import QDQBertConfig

    with _quiet_transformers():
        return QDQBertConfig.from_pretrained(directory, **overrides)


def from_pretrained_checked(load: Callable, cls: type, path: str | os.PathLike, *args, **kwargs) -> nn.Module:
    """transformers' from_pretrained on a validated local directory, errors turned into one line."""

    local = Path(path).exists() or os.sep in str(path) or str(path).startswith(".")
    if local:
        directory = check_checkpoint_dir(path)
        if kwargs.get("config") is None:
            kwargs["config"] = load_config(directory)
    wants_info = kwargs.pop("output_loading_info", False)
    try:
        with _quiet_transformers():
            model, info = load(path, *args, output_loading_info=True, **kwargs)
    except RuntimeError as exc:
        detail = _first_mismatch(Path(path), cls, kwargs.get("config")) if local else None
        raise CheckpointError(
            f"{path}: weights do not fit {cls.__name__}: {detail or str(exc).splitlines()[0]}"
        ) from None
    missing = [k for k in info.get("missing_keys", ()) if not k.endswith("_quantizer.amax")]
    if missing:
        logger.warning(
            "%s: %d tensors are not in the checkpoint and start untrained: %s",
            cls.__name__, len(missing), ", ".join(sorted(missing)[:6]) + (" ..." if len(missing) > 6 else ""),
        )  # fmt: skip
    return (model, info) if wants_info else model


def _first_mismatch(directory: Path, cls: type, config) -> str | None:
    """Name the first tensor whose checkpoint shape differs from the model's (safetensors only)."""
    files = sorted(directory.glob("*.safetensors"))
    if not files or config is None:
        return None
    from safetensors import safe_open

    with torch.device("meta"):
        expected = {k.removeprefix("bert."): v.shape for k, v in cls(config).state_dict().items()}
    for file in files:
        with safe_open(str(file), "pt") as handle:
            for key in handle.keys():
                shape = tuple(handle.get_slice(key).get_shape())
                want = expected.get(key.removeprefix("bert."))
                if want is not None and tuple(want) != shape:
                    return (
                        f"{file.name}: {key} has shape {shape}, config.json implies {tuple(want)}; "
                        "does config.json match the weights?"
                    )
    return None


def load_tf_weights_in_qdqbert(model: nn.Module, tf_checkpoint_path: str | os.PathLike) -> nn.Module:
    """Load a TensorFlow BERT checkpoint (Google's original release) into a QDQBERT model."""
    tf = require("tensorflow", "tf", "tensorflow")
    path = os.path.abspath(tf_checkpoint_path)
    for name, _shape in tf.train.list_variables(path):
        parts = name.split("/")
        # optimizer slots and step counters are not model weights
        if any(p in ("adam_v", "adam_m", "AdamWeightDecayOptimizer", "AdamWeightDecayOptimizer_1", "global_step")
               for p in parts):  # fmt: skip
            continue
        array = tf.train.load_variable(path, name)
        pointer = model
        for part in parts:
            scope = part.split("_")
            if part.startswith("layer_") and scope[-1].isdigit():
                pointer = pointer.layer[int(scope[-1])]
                continue
            attr = {"kernel": "weight", "gamma": "weight", "output_weights": "weight",
                    "beta": "bias", "output_bias": "bias", "squad": "classifier"}.get(part, part)  # fmt: skip
            if not hasattr(pointer, attr):
                raise CheckpointError(f"{path}: variable {name} has no place in {type(model).__name__} (at {part!r})")
            pointer = getattr(pointer, attr)
        if parts[-1].endswith("_embeddings"):
            pointer = pointer.weight
        elif parts[-1] == "kernel":
            array = array.T
        if tuple(pointer.shape) != tuple(array.shape):
            raise CheckpointError(
                f"{path}: {name} has shape {tuple(array.shape)}, the model expects {tuple(pointer.shape)}"
            )
        with torch.no_grad():
            pointer.copy_(torch.from_numpy(array))
    return model
