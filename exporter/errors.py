"""Errors of the exporter CLI: every one is a one-line message naming the problem and the fix."""

from qdqbert.errors import QDQBertError


class UsageError(QDQBertError):
    """Bad command-line input: a missing file, an impossible option, an unknown task."""


class ExportError(QDQBertError):
    """The model could not be exported, or the exported graph failed validation under --strict."""
