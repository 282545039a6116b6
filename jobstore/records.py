"""Records kept in Redis: datasets, jobs, their events, models, workers.

A job is created from a ``JobConfig`` (the CLI's schema) and kept as a ``Job`` record;
datasets and models likewise. The API writes and returns them, the workers update them.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, Field

from tagdistill.config import DataFormat, JobConfig

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
TERMINAL: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Dataset(BaseModel):
    id: str
    name: str | None = None  # free text given at upload
    owner: str | None = None  # owner of the API key that uploaded it (None: the service is open)
    created_at: datetime
    files: dict[str, str]  # split -> file name inside the dataset folder ("train" -> "train.conll")
    format: DataFormat  # format of train/dev/test
    unlabeled_format: DataFormat
    tag_column: int
    size_bytes: int
    stats: dict[str, Any]  # tagdistill.data.dataset_stats: sentences, tokens, entities per split, labels


class JobProgress(BaseModel):
    stage: str | None = None  # one of tagdistill.progress.STAGES
    step: int = 0  # steps done in this stage
    total: int = 0  # steps in this stage (0: unknown)
    epoch: int | None = None  # last finished epoch of this stage
    fraction: float = 0.0  # of the whole job, 0..1 (stages weighted by their usual cost)
    eta_s: float | None = None  # seconds left, extrapolated from the time spent so far
    values: dict[str, float] = {}  # running figures of the last step (loss, ...)


class JobView(BaseModel):
    """A job as the API shows it: what a user reads, without the workers' bookkeeping."""

    id: str
    status: JobStatus
    dataset_id: str
    owner: str | None = None  # owner of the API key that submitted it
    config: JobConfig  # as submitted (paths as given, relative to the data directory)
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    stage: str | None = None
    progress: JobProgress = JobProgress()
    metrics: dict[str, Any] = {}  # stage -> its latest epoch metrics (the report is the model record's)
    error: str | None = None
    model_id: str | None = None
    worker: str | None = None  # the Celery worker that runs (or ran) it
    cancel_requested: bool = False
    attempts: int = 0  # runs started; more than 1 after a lost worker


class Job(JobView):
    """The stored job: the view plus what the workers and the pagination keep."""

    heartbeat_at: datetime | None = None  # last sign of life of the worker that runs it
    seq: int = 0  # creation order, the pagination key


class Event(BaseModel):
    seq: int  # position in the job's event list, from 0
    time: datetime
    type: Literal["status", "stage", "progress", "epoch", "log"]
    data: dict[str, Any]


class Model(BaseModel):
    id: str
    job_id: str
    dataset_id: str
    owner: str | None = None  # the job's owner
    created_at: datetime
    labels: list[str]
    student_path: str  # relative to the data directory
    teacher_path: str  # relative to the data directory; reusable as a job's teacher.path
    teacher: dict[str, Any]  # dev/test entity scores (overall and per type), parameters, bytes, words/s
    student: dict[str, Any]  # the served student (the better of distilled and baseline on dev)
    speedup: dict[str, float | None]  # student words/s over teacher words/s, per batch size
    # the same student trained alone with the same budget (None: mode "alone" or distill.baseline off)
    baseline: dict[str, Any] | None = None
    distillation_gain: dict[str, Any] | None = None  # distilled minus baseline F1 by split and type
    served: dict[str, str] | None = None  # {"student": "distilled" | "baseline", "reason": "..."}
    # the served student in ONNX Runtime: files, bytes, largest difference from torch (or the export's error)
    onnx: dict[str, Any] | None = None
    student_int8: dict[str, Any] | None = None  # the int8 ONNX student's scores and its F1 change from fp32
    warnings: list[str] = Field(default_factory=list)  # types where the student is below half the teacher
    seconds: dict[str, float]  # wall time per stage
    device: str  # where the job ran ("cpu", "cuda")
    machine: str | None = None  # what the speeds were measured on ("x86_64, 2 threads")
    config: JobConfig


class WorkerInfo(BaseModel):
    name: str
    last_seen: datetime
    info: dict[str, Any] = Field(default_factory=dict)
