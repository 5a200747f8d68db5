"""Engine-stage errors (one line: subject, problem, fix)."""

from qdqbert.errors import MissingDependencyError, QDQBertError, require

__all__ = ["EngineError", "MissingDependencyError", "require"]


class EngineError(QDQBertError):
    """An engine could not be built, loaded or run with the given inputs."""
