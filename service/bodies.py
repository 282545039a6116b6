"""Bodies of the API's requests and responses that are not records (those are in jobstore.records)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, model_validator

from jobstore.records import Dataset, JobView, Model, WorkerInfo


class DatasetList(BaseModel):
    items: list[Dataset]
    next_cursor: str | None


class JobList(BaseModel):
    items: list[JobView]
    next_cursor: str | None


class ModelList(BaseModel):
    items: list[Model]
    next_cursor: str | None


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model_id: str | None = None  # default: the newest model
    texts: list[str] | None = None  # raw strings, tokenized by the engine
    tokens: list[list[str]] | None = None  # pre-tokenized sentences
    use_teacher: bool = False  # tag with the job's transformer teacher instead (slower)

    @model_validator(mode="after")
    def _one_input(self) -> PredictRequest:
        if (self.texts is None) == (self.tokens is None):
            raise ValueError("give exactly one of 'texts' or 'tokens'")
        items = self.texts if self.texts is not None else self.tokens
        if not items:
            raise ValueError("nothing to tag: the list is empty")
        for i, item in enumerate(items):
            if isinstance(item, str) and not item.strip():
                raise ValueError(f"texts[{i}] is empty")
            if isinstance(item, list) and (not item or any(not t.strip() or t != t.strip() for t in item)):
                raise ValueError(f"tokens[{i}] is empty or holds an empty or space-padded token")
        return self


class Entity(BaseModel):
    text: str
    label: str
    start: int  # character offset into the input text
    end: int


class PredictResult(BaseModel):
    tokens: list[str]
    tags: list[str]
    entities: list[Entity]


class PredictResponse(BaseModel):
    model_id: str
    model: Literal["student", "teacher"]
    note: str | None = None  # set when the slower teacher answered
    elapsed_ms: float
    results: list[PredictResult]


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    redis: bool
    workers: list[WorkerInfo]
    queue: str
    version: str
