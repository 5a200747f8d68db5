"""The one exception family of the project: every message names the subject, the problem and the fix."""


class QDQBertError(Exception):
    """Base class of every error this project raises on purpose."""


class QuantizerError(QDQBertError):
    """A quantizer was misconfigured or used in the wrong state (e.g. quantizing before calibration)."""


class CheckpointError(QDQBertError):
    """A checkpoint directory is missing, is not BERT, or does not fit the model."""


class MissingDependencyError(QDQBertError, ImportError):
    """An optional dependency is not installed; the message names the pip extra that brings it."""


def require(module: str, extra: str, package: str | None = None):
    """Import an optional dependency lazily, or raise an error naming the extra that installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{package or module} is not installed: run `pip install 'qdqbert-trt[{extra}]'`"
        ) from exc
