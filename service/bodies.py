"""Bodies of the API's requests and responses that are not records (those are in jobstore.records)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, model_validator

from jobstore.records import Dataset, JobView, Model, WorkerInfo


class ErrorBody(BaseModel):
    detail: str  # what is wrong (a 422 has FastAPI's list of {loc, msg, type} instead)


# The errors any route may answer, documented on every operation (service/app.py)
ERRORS = {
    401: "no API key, or a wrong one (when the service has keys)",
    404: "no such dataset, job or model, or one of another owner",
    409: "the record's state forbids it: a finished job, a dataset an unfinished job uses",
    413: "the request body is over its size limit",
    429: "a quota of the caller is used up; try again after Retry-After seconds",
    503: "Redis or the job queue is unreachable, or tagging ran past its time limit; see Retry-After",
}


class DatasetList(BaseModel):
    items: list[Dataset]
    next_cursor: str | None


class JobList(BaseModel):
    items: list[JobView]
    next_cursor: str | None


class ModelList(BaseModel):
    items: list[Model]
    next_cursor: str | None


class Disagreement(BaseModel):
    index: int  # the sentence's position in the analysed split
    tokens: list[str]
    gold: list[tuple[str, int, int]]  # entities as [type, first token, last token + 1]
    teacher: list[tuple[str, int, int]]
    student: list[tuple[str, int, int]]
    types: list[str]  # the types the student and the teacher disagree on in this sentence


class Analysis(BaseModel):
    split: str  # "test", or "dev" when the dataset has no test split
    sentences: int  # in the split
    # model ("teacher", "student", "baseline" | "distilled") -> gold type -> predicted type -> entities;
    # "(missed)" and "(spurious)" as in tagdistill.analysis
    confusion: dict[str, dict[str, dict[str, int]]]
    disagreements: list[Disagreement]  # most differences first
    total_disagreements: int  # before the type filter and the limit


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
    elapsed_ms: float  # ms in the server to load the model (first use), wait in its batch queue, tag
    # how many requests (this one included) were tagged in the same call by dynamic batching; with
    # several pieces (a large request), the most any of them shared. 1: tagged alone
    batched_with: int = 1
    load_ms: float | None = None  # set when this request loaded the model: how long the load took
    results: list[PredictResult]


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    redis: bool
    workers: list[WorkerInfo]
    queue: str
    version: str
