"""Progress reporting, passed into the training loops so they never know who is watching.

The CLI prints bars (tqdm); the worker records events in Redis; tests use ``NullProgress``.
A reporter may raise ``Cancelled`` from any call to stop the job cooperatively.
"""

from __future__ import annotations

import sys
from typing import Any, Protocol

STAGES = ("teacher", "labeling", "baseline", "student", "evaluating")


class Cancelled(Exception):
    """Raised by a progress reporter when the job was asked to stop."""


class Progress(Protocol):
    def stage(self, name: str, total: int) -> None:
        """A new stage (one of STAGES) begins, with ``total`` steps (0 if unknown)."""

    def step(self, n: int = 1, **values: float) -> None:
        """``n`` steps of the current stage are done; ``values`` are running figures (loss)."""

    def epoch(self, epoch: int, metrics: dict[str, Any]) -> None:
        """An epoch of the current stage ended, with its metrics (loss, dev F1, ...)."""

    def log(self, message: str) -> None:
        """A line worth showing to the person who runs the job."""


class NullProgress:
    """Reports nothing."""

    def stage(self, name: str, total: int) -> None:
        pass

    def step(self, n: int = 1, **values: float) -> None:
        pass

    def epoch(self, epoch: int, metrics: dict[str, Any]) -> None:
        pass

    def log(self, message: str) -> None:
        pass


class ConsoleProgress:
    """tqdm bars on stderr, one per stage."""

    def __init__(self) -> None:
        self._bar: Any = None
        self._stage = ""

    def stage(self, name: str, total: int) -> None:
        from tqdm.auto import tqdm

        self.close()
        self._stage = name
        self._bar = tqdm(total=total or None, desc=name, unit="step", dynamic_ncols=True)

    def step(self, n: int = 1, **values: float) -> None:
        if self._bar is not None:
            self._bar.update(n)
            if values:
                self._bar.set_postfix({k: f"{v:.4g}" for k, v in values.items()}, refresh=False)

    def epoch(self, epoch: int, metrics: dict[str, Any]) -> None:
        shown = ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items())
        self.log(f"{self._stage} epoch {epoch}: {shown}")

    def log(self, message: str) -> None:
        from tqdm.auto import tqdm

        tqdm.write(message, file=sys.stderr)  # stdout stays clean for the CLI's JSON

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
