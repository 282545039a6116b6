"""The one task: run a distillation job given its id.

The job record in Redis decides what happens: a delivery for a job that is not ``queued``
(cancelled before it started, or already taken) does nothing. The engine is imported inside
the task, so the worker's main process stays free of torch and forks cleanly.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import redis
from celery.exceptions import SoftTimeLimitExceeded

from jobstore.layout import DataDir
from jobstore.records import Job, Model, utcnow
from jobstore.settings import get_settings
from jobstore.store import NotFound, Store
from tagdistill.config import DataFiles, JobConfig
from tagdistill.data import DataError
from tagdistill.progress import Cancelled
from worker.app import RUN_JOB, celery_app
from worker.progress import Heartbeat, RedisProgress

log = logging.getLogger("tagdistill.worker")
T = TypeVar("T")
RETRY_S = 120  # how long the end of a job waits for an unreachable Redis


@celery_app.task(name=RUN_JOB, bind=True)
def run_job(self: Any, job_id: str) -> dict[str, Any]:
    settings = get_settings()
    store = Store.from_url(settings.redis_url, settings.key_prefix)
    try:
        job = store.claim_job(job_id, self.request.hostname or "worker")
    except NotFound:  # deleted with its dataset, or sent by hand: nothing to run
        job = None
    if job is None:
        log.info("job is not queued: delivery ignored", extra={"job_id": job_id})
        return {"job_id": job_id, "ran": False}
    log.info("job started", extra={"job_id": job_id, "attempt": job.attempts})
    started = time.monotonic()
    with Heartbeat(store, job_id, settings.heartbeat_s, job.attempts) as beat:
        data = settings.data
        status = execute(store, data, job, RedisProgress(store, job_id, beat.cancelled, data.redact))
    seconds = round(time.monotonic() - started, 1)
    log.info("job ended", extra={"job_id": job_id, "status": status, "seconds": seconds})
    return {"job_id": job_id, "ran": True, "status": status}


def execute(store: Store, data: DataDir, job: Job, progress: RedisProgress) -> str:
    """Run the engine on the job and record how it ended; returns the final status."""
    settings = get_settings()
    try:
        import torch

        from tagdistill.pipeline import run_job as run_pipeline

        if settings.torch_threads:
            torch.set_num_threads(settings.torch_threads)
        cfg, files = retrying(job_inputs, store, data, job)
        report = run_pipeline(cfg, files, data.job(job.id), progress)
        model = model_record(store, data, job, cfg, report)
    except Cancelled:  # a cancel, or this attempt was given up on (then finish_job changes nothing)
        return retrying(store.finish_job, job.id, "cancelled", job.attempts).status
    except SoftTimeLimitExceeded:
        error = f"time limit of {settings.job_time_limit_s} s exceeded"
        return retrying(store.finish_job, job.id, "failed", job.attempts, error=error).status
    except Exception as exc:  # any failure of the job is the job's, not the worker's
        log.exception("job failed", extra={"job_id": job.id})
        error = data.redact(str(exc) if isinstance(exc, DataError) else f"{type(exc).__name__}: {exc}")
        return retrying(store.finish_job, job.id, "failed", job.attempts, error=error).status
    progress.state.fraction, progress.state.eta_s = 1.0, 0.0
    ended = retrying(
        store.finish_job, job.id, "succeeded", job.attempts, model=model, progress=progress.state,
        metrics=progress.metrics,
    )
    if ended.status == "running":  # a cancel came after the last check: no model, the job ends cancelled
        ended = retrying(store.finish_job, job.id, "cancelled", job.attempts)
    return ended.status


def retrying(call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``call`` again while Redis is unreachable (restarting, say), for up to RETRY_S seconds."""
    deadline = time.monotonic() + RETRY_S
    while True:
        try:
            return call(*args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError):
            if time.monotonic() > deadline:
                raise
            log.warning("Redis unreachable: trying again", exc_info=True)
            time.sleep(1)


def job_inputs(store: Store, data: DataDir, job: Job) -> tuple[JobConfig, DataFiles]:
    """The job's config with paths made absolute on this machine, and its dataset's files."""
    cfg = data.resolve_paths(job.config)  # the API checked ownership when the job was submitted
    return cfg, data.dataset_files(store.get_dataset(job.dataset_id))


def model_record(store: Store, data: DataDir, job: Job, cfg: JobConfig, report: dict[str, Any]) -> Model:
    """The model a succeeded run registers (with its job's end, in one transaction: ``Store.finish_job``)."""
    from tagdistill.meta import read_meta

    student_dir = data.job(job.id) / "student"
    teacher_dir = cfg.teacher.path or data.job(job.id) / "teacher"
    return Model(
        id=store.new_id("mdl"), job_id=job.id, dataset_id=job.dataset_id, owner=job.owner,
        created_at=utcnow(),
        labels=read_meta(student_dir)["labels"],
        student_path=data.relative(student_dir), teacher_path=data.relative(teacher_dir),
        teacher=report["teacher"], student=report["student"], speedup=report["speedup"],
        baseline=report.get("baseline"), distillation_gain=report.get("distillation_gain"),
        served=report.get("served"), onnx=report.get("onnx"), student_int8=report.get("student_int8"),
        warnings=report["warnings"],
        seconds=report["seconds"], device=report["device"], machine=report.get("machine"), config=job.config,
    )
