"""The tasks that run a distillation job given its id: ``RUN_JOB`` (its teacher part, or the whole job
with one queue) and ``RUN_STUDENT`` (its student part, on the CPU queue; ``jobstore.broker.PARTS``).

The job record in Redis decides what happens: a delivery for a job that is not ``queued``
(cancelled before it started, or already taken), or whose next part is another, does nothing. The
engine is imported inside the task, so the worker's main process stays free of torch and forks
cleanly.

Files go through the artifact store (``jobstore.artifacts``; nothing to do when the data directory is
the store): before a part, the dataset, the job folder and the files the config names are pulled into
this worker's cache; each checkpoint is pushed as it is written (with the job folder's new files), so
another worker can resume from it; after the part, the job folder is pushed whole. A teacher part
whose job goes on elsewhere then hands the job to the student part's queue.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import redis
from celery.exceptions import SoftTimeLimitExceeded

from jobstore.artifacts import ArtifactStore
from jobstore.broker import PARTS, RUN_STUDENT, enqueue_job
from jobstore.layout import DataDir
from jobstore.records import Job, Model, utcnow
from jobstore.settings import get_settings
from jobstore.store import NotFound, Store
from tagdistill.checkpoint import STATE, after_save
from tagdistill.config import DataFiles, JobConfig
from tagdistill.data import DataError
from tagdistill.progress import STAGES, Cancelled
from worker.app import RUN_JOB, celery_app
from worker.progress import Heartbeat, RedisProgress

log = logging.getLogger("tagdistill.worker")
T = TypeVar("T")
RETRY_S = 120  # how long the end of a job waits for an unreachable Redis


@celery_app.task(name=RUN_JOB, bind=True)
def run_job(self: Any, job_id: str) -> dict[str, Any]:
    """The teacher and labeling stages; the whole job when its student part has the same queue."""
    return run_part(job_id, "teacher", self.request.hostname or "worker")


@celery_app.task(name=RUN_STUDENT, bind=True)
def run_student(self: Any, job_id: str) -> dict[str, Any]:
    """The student, baseline, export and evaluation stages, once a teacher part handed the job over."""
    return run_part(job_id, "student", self.request.hostname or "worker")


def run_part(job_id: str, part: str, worker: str) -> dict[str, Any]:
    settings = get_settings()
    store = Store.from_url(settings.redis_url, settings.key_prefix)
    try:
        job = store.claim_job(job_id, worker, part)
    except NotFound:  # deleted with its dataset, or sent by hand: nothing to run
        job = None
    if job is None:
        log.info("job is not queued for this part: delivery ignored", extra={"job_id": job_id, "part": part})
        return {"job_id": job_id, "ran": False}
    log.info("job started", extra={"job_id": job_id, "part": part, "attempt": job.attempts})
    started = time.monotonic()
    with Heartbeat(store, job_id, settings.heartbeat_s, job.attempts) as beat:
        data = settings.data
        stages = PARTS[part][1] if settings.split_jobs else STAGES  # one queue: the one task runs them all
        progress = RedisProgress(store, job_id, beat.cancelled, data.redact, worker, job, stages)
        status = execute(store, data, job, progress, part)
    seconds = round(time.monotonic() - started, 1)
    log.info("job ended", extra={"job_id": job_id, "part": part, "status": status, "seconds": seconds})
    return {"job_id": job_id, "ran": True, "status": status}


def execute(store: Store, data: DataDir, job: Job, progress: RedisProgress, part: str = "teacher") -> str:
    """Run the engine on the job's ``part`` (the rest of the job, unless the teacher part is handed on)
    and record how it ended; returns the final status ("queued" when handed on)."""
    settings = get_settings()
    hand_on = part == "teacher" and settings.split_jobs
    artifacts = data.artifacts
    folder = data.relative(data.job(job.id))
    try:
        import torch

        from tagdistill.pipeline import run_job as run_pipeline

        if settings.torch_threads:
            torch.set_num_threads(settings.torch_threads)
        cfg, files = retrying(job_inputs, store, data, job)
        cfg = part_config(cfg, part, settings.split_jobs)
        with after_save(_checkpoint_pusher(artifacts, folder, progress.cancelled)):
            report = run_pipeline(cfg, files, data.job(job.id), progress, "labeling" if hand_on else None)
        # before the job ends or moves on: whoever reads it next (a worker, the API) finds it all there
        artifacts.push(folder, mirror=True, last=(STATE,))
        if hand_on:
            return hand_over(store, job)
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
    finally:
        artifacts.trim(keep=[folder, data.relative(data.dataset(job.dataset_id))])
    progress.state.fraction, progress.state.eta_s = 1.0, 0.0
    ended = retrying(
        store.finish_job, job.id, "succeeded", job.attempts, model=model, progress=progress.state,
        metrics=progress.metrics,
    )
    if ended.status == "running":  # a cancel came after the last check: no model, the job ends cancelled
        ended = retrying(store.finish_job, job.id, "cancelled", job.attempts)
    return ended.status


def part_config(cfg: JobConfig, part: str, split: bool) -> JobConfig:
    """The config a part runs with. ``device: "cuda"`` asks for a GPU for the teacher; with the job split,
    the student part runs on the cpu queue's worker, which may have none: there it is ``"auto"`` (that
    worker's GPU if it has one, else its CPU), not a failure after the teacher's work is done."""
    if split and part == "student" and cfg.device == "cuda":
        return cfg.model_copy(update={"device": "auto"})
    return cfg


def hand_over(store: Store, job: Job) -> str:
    """Queue the job's student part on its queue; the job's status afterwards."""
    settings = get_settings()
    if retrying(store.hand_off, job.id, job.attempts, "student") is None:  # cancelled, or given up on
        return retrying(store.finish_job, job.id, "cancelled", job.attempts).status
    try:
        enqueue_job(celery_app, job.id, settings.stage_queues["student"], "student")
    except Exception:  # the broker away: the outbox's note stays, and the sweep sends it (worker/sweep.py)
        log.exception("student part not sent: the sweep sends it again", extra={"job_id": job.id})
    else:
        retrying(store.sent, job.id)  # else the sweep sends it again
    return "queued"


def _checkpoint_pusher(
    artifacts: ArtifactStore, folder: str, cancelled: threading.Event
) -> Callable[[Path], None]:
    """The callback that sends the job folder's new files (the checkpoint just written, a better model)
    to the store. Best effort: an unreachable store costs resumability, not the run; and a run that was
    given up on writes nothing more there."""

    def push(_: Path) -> None:
        if cancelled.is_set():
            return
        try:
            artifacts.push(folder, last=(STATE,))
        except Exception:
            log.exception("checkpoint not sent to the artifact store", extra={"path": folder})

    return push


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
    """The job's config with paths made absolute on this machine, and its dataset's files; every one of
    them (and the job folder, from an earlier part or attempt) in this machine's cache."""
    cfg = data.resolve_paths(job.config)  # the API checked ownership when the job was submitted
    named = [cfg.teacher.path, cfg.student.embeddings, cfg.teacher.base_model,
             *(m.path or m.base_model for m in cfg.teacher.ensemble)]
    for path in [data.dataset(job.dataset_id), *(Path(p) for p in named if p is not None)]:
        if path.is_absolute() and path.is_relative_to(data.root):
            data.artifacts.pull(data.relative(path))
    data.artifacts.pull(data.relative(data.job(job.id)), missing_ok=True)
    return cfg, data.dataset_files(store.get_dataset(job.dataset_id))


def model_record(store: Store, data: DataDir, job: Job, cfg: JobConfig, report: dict[str, Any]) -> Model:
    """The model a succeeded run registers (with its job's end, in one transaction: ``Store.finish_job``)."""
    from tagdistill.meta import read_meta
    from tagdistill.pipeline import teacher_folders

    student_dir = data.job(job.id) / "student"
    teacher_dir = teacher_folders(cfg, data.job(job.id))[0]  # an ensemble's first member
    return Model(
        id=store.new_id("mdl"), job_id=job.id, dataset_id=job.dataset_id, owner=job.owner,
        created_at=utcnow(),
        labels=read_meta(student_dir)["labels"],
        student_path=data.relative(student_dir), teacher_path=data.relative(teacher_dir),
        teacher=report["teacher"], student=report["student"], speedup=report["speedup"],
        baseline=report.get("baseline"), distillation_gain=report.get("distillation_gain"),
        served=report.get("served"), teaching=report.get("teaching"), onnx=report.get("onnx"),
        student_int8=report.get("student_int8"),
        warnings=report["warnings"],
        seconds=report["seconds"], device=report["device"], machine=report.get("machine"), config=job.config,
    )
