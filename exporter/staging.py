"""Staging directories: every command writes beside `--out` and moves its files into place only
when it succeeded, so a failure leaves nothing half-written in `--out`."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from .errors import UsageError


def check_out_dir(out: Path) -> None:
    """--out may be missing (it is created) or a directory, never a file."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; pass a directory (it is created if missing)")


class Staging:
    """`with Staging(out) as stage:` write into `stage.path`, then `stage.publish()`. On exit the
    staging directory is removed, and so is the parent of `out` if this created it and it is empty."""

    def __init__(self, out: Path) -> None:
        check_out_dir(out)
        self.out = out
        self._made_parent = not out.parent.exists()
        out.parent.mkdir(parents=True, exist_ok=True)
        self.path = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}-staging-"))

    def publish(self) -> None:
        """Move every staged file into `out` (created if missing)."""
        self.out.mkdir(parents=True, exist_ok=True)
        for item in self.path.iterdir():
            os.replace(item, self.out / item.name)

    def __enter__(self) -> Staging:
        return self

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        parent = self.out.parent
        if self._made_parent and not self.out.exists() and parent.exists() and not any(parent.iterdir()):
            parent.rmdir()
