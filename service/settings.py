"""Settings of the API and the worker, from ``TAGDISTILL_*`` environment variables.

The only module that reads the environment. ``TAGDISTILL_REDIS_URL=redis://host:6379/0``
sets ``redis_url``, and so on for every field.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TAGDISTILL_", extra="ignore")

    redis_url: str = "redis://127.0.0.1:6379/0"  # job records, datasets, models; also Celery's broker
    broker_url: str | None = None  # Celery broker when it differs from redis_url
    data_dir: Path = Path("data")  # datasets and job folders, shared by the API and every worker
    key_prefix: str = "tagdistill:"  # every Redis key of ours starts with this
    queue: str = "gpu"  # Celery queue that training jobs go to (a CPU-only worker serves it too)
    host: str = "127.0.0.1"  # API bind address for `tagdistill up` (no auth yet: keep it local)
    max_upload_mb: float = Field(200, gt=0)  # limit on one dataset upload, all files together (413 above)
    max_predict_inputs: int = Field(256, ge=1)  # texts or token lists per POST /predict
    max_predict_chars: int = Field(20_000, ge=1)  # characters per text (or per joined token list)
    model_cache_size: int = Field(4, ge=1)  # models kept loaded in the API process (LRU)
    job_time_limit_s: int = Field(24 * 3600, ge=60)  # soft limit of one job; the job fails past it
    heartbeat_s: float = Field(2.0, gt=0)  # how often a running job and each worker report in
    heartbeat_timeout_s: float = Field(60.0, gt=0)  # a running job silent this long is marked failed
    idempotency_ttl_s: int = Field(24 * 3600, ge=1)  # how long an Idempotency-Key maps to its job
    torch_threads: int | None = Field(None, ge=1)  # torch CPU threads in the worker (None: torch's default)
    log_level: str = "INFO"

    @property
    def broker(self) -> str:
        return self.broker_url or self.redis_url

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)


@lru_cache
def get_settings() -> Settings:
    return Settings()
