"""Settings of the API and the worker, from ``TAGDISTILL_*`` environment variables.

The only module that reads the environment. ``TAGDISTILL_REDIS_URL=redis://host:6379/0``
sets ``redis_url``, and so on for every field.
"""

from __future__ import annotations

import os
import re
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from jobstore.artifacts import ArtifactStore
from jobstore.layout import DataDir


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TAGDISTILL_", extra="ignore")

    redis_url: str = "redis://127.0.0.1:6379/0"  # job records, datasets, models; also Celery's broker
    broker_url: str | None = None  # Celery broker when it differs from redis_url
    data_dir: Path = Path("data")  # datasets and job folders, shared by the API and every worker
    key_prefix: str = "tagdistill:"  # every Redis key of ours starts with this
    # folders outside data_dir (os.pathsep-separated) whose model folders jobs may name as teacher.base_model
    model_roots: str = ""
    queue: str = "gpu"  # Celery queue of the teacher and labeling stages (a CPU-only worker serves it too)
    # Celery queue of the student, baseline, export and evaluation stages; unset: the same as `queue`,
    # and a job runs as one task. Set (say "cpu"), a job is two tasks: the teacher's part on `queue`
    # (GPU workers), then the rest on this one (CPU workers), handed over through the artifact store.
    cpu_queue: str | None = None
    # Where datasets and job folders live: "" (the data directory itself, shared by every process) or
    # "s3://bucket/prefix", an S3-compatible object store; then data_dir is each process's local cache
    storage_url: str = ""
    storage_endpoint_url: str | None = None  # the object store's URL (MinIO: http://minio:9000); None: AWS
    storage_key: SecretStr = SecretStr("")  # access key id ("": the AWS_* environment or instance role)
    storage_secret: SecretStr = SecretStr("")  # secret access key
    storage_region: str | None = None  # region of the bucket, where the store needs one
    cache_max_gb: float = Field(50.0, gt=0)  # local cache size with storage_url set (least recent evicted)
    host: str = "127.0.0.1"  # API bind address for `tagdistill up` (keep it local unless API keys are set)
    # "owner:key,owner:key": with any key set, every route but /health, the docs and the dashboard's
    # files needs "Authorization: Bearer <key>", and a key sees only its owner's records
    api_keys: SecretStr = SecretStr("")
    admin_keys: SecretStr = SecretStr("")  # "name:key" or "key": these keys see every record
    redis_timeout_s: float = Field(10.0, gt=0)  # a Redis call slower than this is a 503, not a hang
    max_upload_mb: float = Field(200, gt=0)  # limit on one dataset upload, all files together (413 above)
    # limit on one teacher archive (POST /teachers; 413 above) and on its files unpacked (422 above)
    max_teacher_upload_mb: float = Field(2048, gt=0)
    max_entity_types: int = Field(500, ge=1)  # entity types of one dataset (an upload with more is a 422)
    max_predict_inputs: int = Field(256, ge=1)  # texts or token lists per POST /predict
    max_predict_chars: int = Field(20_000, ge=1)  # characters per text (or per joined token list)
    max_predict_total_chars: int = Field(200_000, ge=1)  # characters per POST /predict, all texts together
    max_teacher_predict_chars: int = Field(20_000, ge=1)  # the same with use_teacher (about 10x slower)
    predict_time_limit_s: float = Field(30.0, gt=0)  # a POST /predict still tagging after this is a 503
    model_cache_size: int = Field(4, ge=1)  # models kept loaded in the API process (LRU)
    # dynamic batching of POST /predict (student): concurrent requests for one model wait up to this
    # long to be tagged together in one call; 0 turns batching off (each request alone)
    batch_window_ms: float = Field(2.0, ge=0, le=1000)
    batch_max_inputs: int = Field(64, ge=1)  # a batch closes early once it holds this many texts
    job_time_limit_s: int = Field(24 * 3600, ge=60)  # soft limit of one job; the job fails past it
    heartbeat_s: float = Field(2.0, gt=0)  # how often a running job and each worker report in
    heartbeat_timeout_s: float = Field(60.0, gt=0)  # a running job silent this long is requeued or failed
    max_attempts: int = Field(3, ge=1)  # runs of a job whose workers vanish, before it is marked failed
    idempotency_ttl_s: int = Field(24 * 3600, ge=1)  # how long an Idempotency-Key maps to its job
    # quotas of each owner (API key; the open service is one owner), answered with 429 and Retry-After
    max_active_jobs: int = Field(20, ge=1)  # jobs queued or running at once
    max_uploads_per_hour: int = Field(200, ge=1)  # POST /datasets, accepted or not
    # upper bounds on job configs, checked at submission (jobstore/limits.py)
    max_epochs: int = Field(1000, ge=1)  # teacher.epochs and distill.epochs
    max_steps: int = Field(1_000_000, ge=1)  # teacher.min_steps and distill.min_steps
    max_batch_size: int = Field(4096, ge=1)  # sentences per batch, teacher and student
    max_window: int = Field(4096, ge=16)  # teacher.max_length and teacher.stride, in sub-tokens
    max_width: int = Field(4096, ge=1)  # the student's embedding and hidden sizes
    max_vocab: int = Field(2_000_000, ge=100)  # student.max_vocab
    torch_threads: int | None = Field(None, ge=1)  # torch CPU threads in the worker (None: torch's default)
    # batch tagging (POST /batch-jobs, jobstore/batches.py)
    batch_chunk_size: int = Field(5000, ge=1)  # sentences per chunk: the unit the workers tag in parallel
    max_batch_upload_mb: float = Field(1024, gt=0)  # limit on one batch input file (413 above)
    max_active_batches: int = Field(10, ge=1)  # batch jobs of one owner queued or running at once (429)
    # tasks a worker's pool process runs before a fresh one replaces it: 1 gives a training job's memory
    # back; a worker that mostly tags batches keeps its loaded model across chunks with more (100)
    max_tasks_per_child: int = Field(1, ge=1)
    log_level: str = "INFO"

    @property
    def keys(self) -> dict[str, tuple[str, bool]]:
        """API key -> (owner, is admin); empty when the service is open.

        ValueError for a malformed list; the message names the entry, never a key.
        """
        keys = {k: (o, False) for o, k in parse_keys(self.api_keys.get_secret_value(), True)}
        keys.update({k: (o, True) for o, k in parse_keys(self.admin_keys.get_secret_value(), False)})
        return keys

    @property
    def broker(self) -> str:
        return self.broker_url or self.redis_url

    @cached_property
    def artifacts(self) -> ArtifactStore:
        """The artifact store: the data directory itself, or an object store cached in it (one per
        Settings, so its connections are reused)."""
        options: dict[str, Any] = {}
        if self.storage_url:
            key, secret = self.storage_key.get_secret_value(), self.storage_secret.get_secret_value()
            options = {
                **({"endpoint_url": self.storage_endpoint_url} if self.storage_endpoint_url else {}),
                **({"key": key, "secret": secret} if key else {}),
                **({"client_kwargs": {"region_name": self.storage_region}} if self.storage_region else {}),
            }
        return ArtifactStore(self.data_dir, self.storage_url, int(self.cache_max_gb * 1024**3), **options)

    @property
    def data(self) -> DataDir:
        """The data directory, with the folders base models may also come from and the artifact store."""
        models = [Path(p) for p in self.model_roots.split(os.pathsep) if p]
        return DataDir(self.data_dir, models, self.artifacts)

    @property
    def stage_queues(self) -> dict[str, str]:
        """The Celery queue of each part of a job (``jobstore.broker.PARTS``): "teacher" (the teacher and
        labeling stages) and "student" (the student, baseline, export and evaluation stages)."""
        return {"teacher": self.queue, "student": self.cpu_queue or self.queue}

    @property
    def split_jobs(self) -> bool:
        """Whether a job runs as two tasks on two queues (else one task runs it whole)."""
        return self.stage_queues["student"] != self.stage_queues["teacher"]

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def max_teacher_upload_bytes(self) -> int:
        return int(self.max_teacher_upload_mb * 1024 * 1024)

    @property
    def max_batch_upload_bytes(self) -> int:
        return int(self.max_batch_upload_mb * 1024 * 1024)


OWNER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def parse_keys(spec: str, owner_required: bool) -> list[tuple[str, str]]:
    """``"team-a:KEY1,team-b:KEY2"`` -> [(owner, key), ...]; ValueError naming a bad entry.

    Keys of admins may come without an owner; they are then called "admin".
    """
    pairs = []
    for n, entry in enumerate(e.strip() for e in spec.split(",")):
        if not entry:
            continue
        owner, sep, key = entry.partition(":")
        if not sep:
            if owner_required:
                raise ValueError(f"entry {n + 1} is not owner:key (an API key names its owner)")
            owner, key = "admin", entry
        if not OWNER.fullmatch(owner):
            raise ValueError(f"entry {n + 1}: owner {owner!r} is not letters, digits, '_', '.' or '-'")
        if len(key) < 8:
            raise ValueError(f"entry {n + 1}: the key of {owner!r} is shorter than 8 characters")
        pairs.append((owner, key))
    return pairs


@lru_cache
def get_settings() -> Settings:
    return Settings()
