"""Shared objects of the API process, as FastAPI dependencies (one instance per process)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated, TypeVar

from celery import Celery
from fastapi import Depends, Query

from jobstore.broker import celery_client
from jobstore.layout import DataDir
from jobstore.settings import Settings, get_settings
from jobstore.store import Store
from service.predictor import ModelCache


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
CeleryDep = Annotated[Celery, Depends(get_celery)]
PageDep = Annotated[Page, Depends()]
