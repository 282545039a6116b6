"""Records kept in Redis: datasets, jobs, their events, models, workers.

A job is created from a ``JobConfig`` (the CLI's schema) and kept as a ``Job`` record;
datasets and models likewise. The API writes and returns them, the workers update them.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field, StringConstraints

from tagdistill.config import DataFormat, JobConfig

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
TERMINAL: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


# What a user calls a job or a model, to find it again: free text, and short tags to filter lists by.
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
TAG_RULE = "1 to 32 letters, digits, '_', '.', ':' or '-', starting with a letter or digit"


def _tag(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,31}", value):
        raise ValueError(f"tag {value[:40]!r} is not a valid tag: {TAG_RULE}")
    return value


Tag = Annotated[str, AfterValidator(_tag), Field(description=TAG_RULE)]
Tags = Annotated[
    list[Tag], Field(max_length=20, description="at most 20 tags"),
    AfterValidator(lambda tags: list(dict.fromkeys(tags))),  # in the order given, each once
]
NAME_DOC = "a name to find it by (1 to 100 characters)"

MODEL_ID_PREFIX = "mdl_"  # every model id starts so (Store.new_id("mdl"))
# An alias names a model on purpose ("production"); ids start with MODEL_ID_PREFIX, so no alias may.
ALIAS_RULE = "1 to 64 letters, digits, '_', '.' or '-', starting with a letter or digit, and not 'mdl_...'"
PRODUCTION = "production"  # the alias POST /predict uses when it is given no model


def alias_problem(name: str) -> str | None:
    """What is wrong with ``name`` as an alias, or None when it is a good one."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", name) or name.startswith(MODEL_ID_PREFIX):
        return f"alias {name[:80]!r} is not a valid alias name: {ALIAS_RULE}"
    return None


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
    name: Name | None = Field(None, description=NAME_DOC)
    tags: Tags = []
    config: JobConfig  # as submitted (paths as given, relative to the data directory)
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    stage: str | None = None
    progress: JobProgress = JobProgress()
    # stage -> its latest epoch's metrics (epoch, loss, dev_f1, ..., seconds); the report is the model's
    metrics: dict[str, dict[str, Any]] = {}
    error: str | None = None
    model_id: str | None = None
    worker: str | None = None  # the Celery worker that runs (or ran) it
    part: str = "teacher"  # the part its current or next task runs (jobstore.broker.PARTS): teacher, student
    stage_workers: dict[str, str] = {}  # stage -> the worker that ran it (the last one, after a requeue)
    cancel_requested: bool = False
    attempts: int = 0  # runs started; more than 1 after a lost worker


class Job(JobView):
    """The stored job: the view plus what the workers and the pagination keep."""

    heartbeat_at: datetime | None = None  # last sign of life of the worker that runs it
    seq: int = 0  # creation order, the pagination key
    attempts_before: int = 0  # attempts of earlier parts (max_attempts counts the current part's)


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
    name: Name | None = Field(None, description=NAME_DOC)  # the job's, until changed (PATCH)
    tags: Tags = []  # likewise
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
    # who taught the distilled student: {"by": "teacher" | "teacher_and_baseline", "reason", "f1": by split}
    teaching: dict[str, Any] | None = None
    # the served student in ONNX Runtime: files, bytes, largest difference from torch (or the export's error)
    onnx: dict[str, Any] | None = None
    student_int8: dict[str, Any] | None = None  # the int8 ONNX student's scores and its F1 change from fp32
    warnings: list[str] = Field(default_factory=list)  # types where the student is below half the teacher
    seconds: dict[str, float]  # wall time per stage
    device: str  # where the job ran ("cpu", "cuda")
    machine: str | None = None  # what the speeds were measured on ("x86_64, 2 threads")
    config: JobConfig


class Alias(BaseModel):
    """A name an owner moves onto one of their models on purpose (``production``, ``staging``)."""

    name: str = Field(description=ALIAS_RULE)
    model_id: str = Field(description="the model it points to")
    owner: str | None = Field(None, description='whose alias it is: each owner has their own "production"')
    updated_at: datetime = Field(description="when it was last set or moved")
    previous_model_id: str | None = Field(None, description="where its last move took it from (None: new)")


class WorkerInfo(BaseModel):
    name: str
    last_seen: datetime
    info: dict[str, Any] = Field(default_factory=dict)
