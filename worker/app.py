"""The Celery app that runs jobs (``celery -A worker.app worker``). The API never imports it: it
sends tasks by name with a client of its own (``jobstore.broker``).

The worker's main process reports in every ``heartbeat_s`` (``GET /health`` lists it) and
requeues (or, after ``max_attempts``, fails) jobs whose worker stopped reporting (killed, or its
machine gone); see ``worker/sweep.py``.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

from celery import Celery
from celery.signals import setup_logging as setup_logging_signal
from celery.signals import task_received, task_revoked, worker_ready, worker_shutdown
from celery.worker import state as worker_state

from jobstore.broker import JOB_TASKS, RUN_JOB, celery_config
from jobstore.logs import setup_logging
from jobstore.records import TERMINAL
from jobstore.settings import get_settings
from jobstore.store import Store
from worker.sweep import sweep

__all__ = ["RUN_JOB", "celery_app"]

log = logging.getLogger("tagdistill.worker")
settings = get_settings()
celery_app = Celery("tagdistill", include=["worker.tasks", "worker.batch"])
celery_app.conf.update(celery_config(settings))



class _ReportIn:
    """A thread of the worker's main process: heartbeat, and the sweep for jobs of vanished workers."""

    def __init__(self, name: str, queues: list[str]) -> None:
        self.name = name
        self.store = Store.from_url(settings.redis_url, settings.key_prefix)
        # whether jobs may ask for device "cuda" here: NVIDIA's device files, as this process keeps torch
        # (and its CUDA initialisation) out so that the pool forks cleanly
        cuda = any(Path("/dev").glob("nvidia[0-9]*"))
        self.info = {"pid": os.getpid(), "queues": queues, "cuda": cuda}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="report-in", daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                self.store.worker_seen(self.name, self.info, settings.heartbeat_timeout_s)
                sweep(self.store, celery_app, settings)
            except Exception:  # Redis away for a moment: try again next beat
                log.exception("worker heartbeat failed")
            self.stop.wait(settings.heartbeat_s)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        self.store.worker_gone(self.name)


_reporter: list[_ReportIn] = []


@setup_logging_signal.connect
def _logging(**_: Any) -> None:
    setup_logging(settings.log_level)  # connected, so Celery leaves logging to us


@worker_ready.connect
def _start_reporting(sender: Any, **_: Any) -> None:
    queues = sorted(sender.app.amqp.queues.consume_from)  # -Q, or the default queue
    reporter = _ReportIn(sender.hostname, queues)
    reporter.thread.start()
    _reporter.append(reporter)
    log.info("worker ready", extra={"worker": sender.hostname, "queues": queues})


@task_received.connect
def _skip_ended_jobs(request: Any, **_: Any) -> None:
    """Drop the delivery of a job that has ended (cancelled while queued, say) here, in the main process.

    A delivery that reached the pool would cost a pool process (one per job, for its memory) to find
    out the same: seconds each, so a burst of cancelled jobs would hold up everyone's. A revoked
    request is acknowledged without running; the id is forgotten once it is (``_forget``), so a later
    delivery of the same job id (a requeue after a lost worker) runs as usual.
    """
    if request.name not in JOB_TASKS or not _reporter:
        return
    try:
        status = _reporter[0].store.get_job(request.id).status
    except Exception:  # unknown job, or Redis away: the task itself decides, as it always did
        return
    if status in TERMINAL:
        log.info("job has ended: delivery dropped", extra={"job_id": request.id, "status": status})
        worker_state.revoked.add(request.id)


@task_revoked.connect
def _forget(request: Any, **_: Any) -> None:
    worker_state.revoked.discard(request.id)


@worker_shutdown.connect
def _stop_reporting(**_: Any) -> None:
    while _reporter:
        _reporter.pop().close()
