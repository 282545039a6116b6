"""RedisProgress: the engine's Progress protocol, recorded in the job's Redis record and events.

A heartbeat thread beside the job writes the job's ``heartbeat_at`` and reads its cancel
flag; the next progress call of the engine then raises ``Cancelled``, so a cancel takes
effect within about ``heartbeat_s`` plus one training step.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any

import redis
from pydantic_core import to_jsonable_python

from jobstore.records import Job, JobProgress
from jobstore.store import Store
from tagdistill.progress import STAGES, Cancelled

log = logging.getLogger("tagdistill.worker")

# Share of a whole job's time per stage (a teacher fine-tuning dominates), for the fraction and ETA.
STAGE_WEIGHTS = {"teacher": 0.45, "labeling": 0.1, "baseline": 0.15, "student": 0.2, "evaluating": 0.1}
WRITE_EVERY_S = 0.5  # progress written to the job record at most this often
EVENT_EVERY_S = 2.0  # "progress" events at most this often (stage and epoch events always)


class Heartbeat:
    """``with Heartbeat(store, job_id, every_s) as beat:`` keeps the job alive.

    ``beat.cancelled`` is set once a cancel of the job was requested, or (with ``attempt``) once
    the job is no longer running as that attempt (it was given up on and requeued).
    """

    def __init__(self, store: Store, job_id: str, every_s: float, attempt: int | None = None) -> None:
        self.store, self.job_id, self.every_s, self.attempt = store, job_id, every_s, attempt
        self.cancelled = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{job_id}", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if self.store.heartbeat(self.job_id, self.attempt):
                    self.cancelled.set()
            except Exception:  # Redis away for a moment: the job goes on, the next beat retries
                log.exception("job heartbeat failed", extra={"job_id": self.job_id})
            self._stop.wait(self.every_s)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


class RedisProgress:
    """With ``job`` (the claimed record), a later part of a job keeps the metrics of the earlier ones,
    and ``worker`` is recorded as the worker of each stage of ``stages`` it starts (``stage_workers``;
    a later part passes through the earlier stages only to reload what they left)."""

    def __init__(
        self, store: Store, job_id: str, cancelled: threading.Event, redact: Callable[[str], str] = str,
        worker: str | None = None, job: Job | None = None, stages: Iterable[str] = STAGES,
    ) -> None:
        self.store, self.job_id, self.cancelled = store, job_id, cancelled
        self.redact = redact  # applied to log lines (DataDir.redact: no server paths in events)
        self.worker, self.own = worker, frozenset(stages)
        self.started = time.monotonic()
        self.state = JobProgress()
        self.metrics: dict[str, Any] = dict(job.metrics) if job is not None else {}
        self.stage_workers: dict[str, str] = dict(job.stage_workers) if job is not None else {}
        self._written = self._evented = 0.0
        self._warned = -1e9

    def stage(self, name: str, total: int) -> None:
        self._check()
        self.state = JobProgress(stage=name, total=max(total, 0), fraction=self._fraction(name, 0.0))
        if self.worker is not None and name in self.own:
            self.stage_workers[name] = self.worker
            self._record(self.store.update_job, self.job_id, stage_workers=self.stage_workers)
        self._write(force=True)
        self._record(self.store.add_event, self.job_id, "stage", {"stage": name, "total": self.state.total})

    def step(self, n: int = 1, **values: float) -> None:
        self._check()
        s = self.state
        s.step += n
        s.values = {k: float(v) for k, v in values.items()}
        if s.total:
            s.fraction = self._fraction(s.stage, min(s.step / s.total, 1.0))
        self._write()

    def epoch(self, epoch: int, metrics: dict[str, Any]) -> None:
        self._check()
        metrics = to_jsonable_python(metrics, fallback=float)
        self.state.epoch = epoch
        self.metrics[self.state.stage or "job"] = {"epoch": epoch, **metrics}
        self._write(force=True)
        event = {"stage": self.state.stage, "epoch": epoch, "metrics": metrics}
        self._record(self.store.add_event, self.job_id, "epoch", event)

    def log(self, message: str) -> None:
        self._check()
        self._record(self.store.add_event, self.job_id, "log", {"message": self.redact(message)})

    def _check(self) -> None:
        if self.cancelled.is_set():
            raise Cancelled(f"job {self.job_id} was cancelled")

    def _fraction(self, stage: str | None, within: float) -> float:
        if stage not in STAGES:
            return self.state.fraction
        before = sum(STAGE_WEIGHTS[s] for s in STAGES[: STAGES.index(stage)])
        return round(before + STAGE_WEIGHTS[stage] * within, 4)

    def _write(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._written < WRITE_EVERY_S:
            return
        self._written = now
        s = self.state
        elapsed = now - self.started
        s.eta_s = round(elapsed * (1 - s.fraction) / s.fraction, 1) if s.fraction >= 0.02 else None
        self._record(self.store.update_job, self.job_id, stage=s.stage, progress=s, metrics=self.metrics)
        if now - self._evented >= EVENT_EVERY_S:
            self._evented = now
            self._record(self.store.add_event, self.job_id, "progress", s.model_dump(mode="json"))

    def _record(self, write: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Progress is best effort: while Redis is away (restarted, say) training goes on, and the
        records and events of that time are lost; the next write after it is back lands."""
        try:
            write(*args, **kwargs)
        except redis.RedisError as exc:
            if time.monotonic() - self._warned > 10:
                self._warned = time.monotonic()
                log.warning("progress not recorded: %s", exc, extra={"job_id": self.job_id})
