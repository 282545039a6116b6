"""Shared objects of the API process, as FastAPI dependencies (one instance per process)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated, TypeVar

import anyio
from celery import Celery
from fastapi import Depends, Query

from jobstore.broker import celery_client
from jobstore.layout import DataDir
from jobstore.records import MODEL_ID_PREFIX, Model
from jobstore.settings import Settings, get_settings
from jobstore.store import Store
from service.predictor import ModelCache

RECORD_TTL_S = 2.0  # how long POST /predict trusts a model record it read (see ModelRecords)
RECORDS_KEPT = 10_000  # lookups remembered at most; past that the memory starts afresh
_Key = tuple[str | None, str | None, str | None]  # (model id or alias, owner, the owner the caller may see)


@lru_cache
def get_store() -> Store:
    s = get_settings()
    return Store.from_url(s.redis_url, s.key_prefix, s.redis_timeout_s)


@lru_cache
def get_data_dir() -> DataDir:
    return get_settings().data


@lru_cache
def get_models() -> ModelCache:
    settings = get_settings()
    return ModelCache(settings.model_cache_size, settings.batch_window_ms, settings.batch_max_inputs)


class ModelRecords:
    """``Store.model_for`` answers for model ids, kept ``ttl_s`` seconds in this process (POST /predict).

    A model record is never changed once written, only deleted: so a kept answer is exact but for that,
    and a deleted model is served for at most ``ttl_s`` seconds after. An alias (or no model: the
    "production" alias) is read from Redis every time, because a user moves it on purpose and expects
    the next request to follow. A lookup that fails (no such model, not the caller's) is not kept. A
    hit costs no Redis round trip and no hop to a worker thread.
    """

    def __init__(self, store: Store, ttl_s: float = RECORD_TTL_S) -> None:
        self.store, self.ttl_s = store, ttl_s
        self._kept: dict[_Key, tuple[float, tuple[Model, str | None]]] = {}  # key -> (expiry, answer)
        self._lock = threading.Lock()  # the event loop and worker threads both use it

    async def model_for(
        self, ref: str | None, owner: str | None, only: str | None
    ) -> tuple[Model, str | None]:
        """``Store.model_for(ref, owner, only)``, from memory when read less than ``ttl_s`` ago."""
        if ref is None or not ref.startswith(MODEL_ID_PREFIX):  # an alias: never kept
            return await anyio.to_thread.run_sync(self.store.model_for, ref, owner, only)
        key = (ref, owner, only)
        with self._lock:
            kept = self._kept.get(key)
        if kept is not None and kept[0] > time.monotonic():
            return kept[1]
        answer = await anyio.to_thread.run_sync(self.store.model_for, ref, owner, only)
        with self._lock:
            if len(self._kept) >= RECORDS_KEPT:
                self._kept.clear()
            self._kept[key] = (time.monotonic() + self.ttl_s, answer)
        return answer


@lru_cache
def get_records() -> ModelRecords:
    return ModelRecords(get_store())


@lru_cache
def get_celery() -> Celery:
    """A Celery client on the shared broker: the API sends tasks by name, importing no worker code."""
    return celery_client(get_settings())


T = TypeVar("T")


@dataclass
class Page:
    """The query parameters of every list route: a cursor from the previous page and a size."""

    # A cursor is a seq in Redis: read as an ASCII decimal in int64 range here, so "²" or "1e99"
    # is a 422 on this parameter rather than a Redis error (str.isdigit would let "²" through).
    cursor: Annotated[
        int | None, Query(ge=0, lt=2**63, description="next_cursor of the previous page")
    ] = None
    limit: Annotated[int, Query(ge=1, le=100)] = 20

    def fetch(
        self, lister: Callable[[str | None, int], tuple[list[T], str | None]]
    ) -> tuple[list[T], str | None]:
        """``lister(cursor, limit)``, with the cursor as the store's string."""
        return lister(None if self.cursor is None else str(self.cursor), self.limit)


SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[Store, Depends(get_store)]
DataDirDep = Annotated[DataDir, Depends(get_data_dir)]
ModelsDep = Annotated[ModelCache, Depends(get_models)]
RecordsDep = Annotated[ModelRecords, Depends(get_records)]
CeleryDep = Annotated[Celery, Depends(get_celery)]
PageDep = Annotated[Page, Depends()]
