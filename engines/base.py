"""The one small runner interface every backend implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .errors import EngineError


@dataclass(frozen=True)
class TensorSpec:
    """An engine input or output: name, numpy dtype name, shape (-1 or a name for dynamic axes)."""

    name: str
    dtype: str
    shape: tuple

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Runner(ABC):
    """load once, then `run({name: array})` → {name: np.ndarray}. Use as a context manager to free
    its memory (sessions, device buffers) deterministically."""

    name: str = "runner"
    _inputs: list[TensorSpec]  # set by each backend when it loads
    _outputs: list[TensorSpec]

    @property
    def inputs(self) -> list[TensorSpec]:
        return self._inputs

    @property
    def outputs(self) -> list[TensorSpec]:
        return self._outputs

    @abstractmethod
    def run(self, feed: dict[str, Any]) -> dict[str, np.ndarray]: ...

    def describe(self) -> dict[str, Any]:
        """Facts for the report (backend, versions, settings)."""
        return {"name": self.name}

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources; the default has none."""

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def check_feed(self, feed: dict[str, Any]) -> None:
        """Refuse feeds with missing or unknown names, or the wrong rank / dtype, with one line."""
        expected = {spec.name: spec for spec in self.inputs}
        missing, unknown = sorted(set(expected) - set(feed)), sorted(set(feed) - set(expected))
        if missing or unknown:
            raise EngineError(
                f"{self.name}: inputs {sorted(feed)} do not match the engine's {sorted(expected)}"
                + (f" (missing {missing})" if missing else "")
                + (f" (unknown {unknown})" if unknown else "")
            )
        for name, value in feed.items():
            spec = expected[name]
            dtype = str(getattr(value, "dtype", "")).replace("torch.", "")
            if dtype != spec.dtype:
                raise EngineError(f"{self.name}: input {name} has dtype {dtype}, the engine expects {spec.dtype}")
            if len(value.shape) != len(spec.shape):
                raise EngineError(
                    f"{self.name}: input {name} has shape {tuple(value.shape)}, the engine expects rank "
                    f"{len(spec.shape)} {spec.shape}"
                )
