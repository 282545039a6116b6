"""Bodies of the API's requests and responses that are not records (those are in jobstore.records)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from jobstore.records import Alias, Dataset, JobView, Model, Name, Tags, WorkerInfo
from tagdistill.config import JobConfig


class ErrorInfo(BaseModel):
    type: Literal[
        "invalid_request", "unauthorized", "not_found", "method_not_allowed", "conflict", "too_large",
        "rate_limited", "internal", "unavailable",
    ] = Field(description="the kind of error; follows from the status")
    code: str = Field(description='what exactly, for programs: "job_not_found", "field_invalid", ...')
    message: str = Field(description="what is wrong, for people")
    param: str | None = Field(
        description='the field or header at fault, dotted: "teacher.base_model", "texts.3", '
        '"header.Idempotency-Key", "query.after" (a body field has no prefix); null when none'
    )


class FieldError(BaseModel):
    code: str = Field(description='"field_invalid", "field_missing", "field_unknown", "data_error", ...')
    message: str
    param: str | None = Field(description="as in ErrorInfo")
    file: str | None = Field(None, description="data_error: the dataset's file (train.conll)")
    line: int | None = Field(None, description="data_error: the line of that file, when one is at fault")
    filename: str | None = Field(None, description="data_error: the file's name as uploaded")


class ErrorBody(BaseModel):
    """The body of every error answer (service/errors.py)."""

    error: ErrorInfo
    errors: list[FieldError] | None = Field(
        None, description="a 422's every invalid field, in order; error is the first of them"
    )


# The errors any route may answer, documented on every operation (service/app.py)
ERRORS = {
    401: "no API key, or a wrong one (when the service has keys)",
    404: "no such dataset, job or model, or one of another owner",
    409: "the record's state forbids it: a finished job, a dataset an unfinished job uses",
    413: "the request body is over its size limit",
    422: "invalid input: a field, a header or a query parameter; `errors` names each one (`param`)",
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

    model_id: str | None = Field(None, description="the older name of `model`; takes the same")
    model: str | None = Field(
        None, max_length=100,
        description='a model id ("mdl_...") or one of your aliases; neither: your alias "production"',
    )
    texts: list[str] | None = None  # raw strings, tokenized by the engine
    tokens: list[list[str]] | None = None  # pre-tokenized sentences
    use_teacher: bool = False  # tag with the job's transformer teacher instead (slower)

    @model_validator(mode="after")
    def _one_input(self) -> PredictRequest:
        if self.model_id is not None and self.model is not None:
            raise ValueError("give at most one of 'model' (an id or an alias) or 'model_id'")
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
    # 0 to 1: the mean over the entity's tokens of the model's probability of its predicted label
    # (softmax, or a CRF's marginals); tagdistill.tagger.Tagger.predict defines it
    score: float = Field(ge=0, le=1)


class PredictResult(BaseModel):
    tokens: list[str]
    tags: list[str]
    entities: list[Entity]


class PredictResponse(BaseModel):
    model_id: str
    alias: str | None = None  # the alias that chose the model, when one did
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


class JobSubmission(JobConfig):
    """``POST /jobs``: the job's config, and a name and tags to find it by (its model takes them)."""

    name: Name | None = Field(None, description="a name to find the job and its model by")
    tags: Tags = Field(default_factory=list, description="tags to filter lists by")

    def job_config(self) -> JobConfig:
        """The config alone, as the job keeps it and the worker runs it."""
        return JobConfig.model_validate(self.model_dump(exclude={"name", "tags"}, exclude_unset=True))


class Relabel(BaseModel):
    """``PATCH /jobs/{id}``, ``PATCH /models/{id}``: what is given changes, the rest stays."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = Field(None, description="the new name; null removes it")
    tags: Tags | None = Field(None, description="the new tags, replacing the old; [] or null removes them")

    @model_validator(mode="after")
    def _something(self) -> Relabel:
        if not self.model_fields_set:
            raise ValueError("nothing to change: give 'name', 'tags' or both")
        return self

    def changes(self) -> dict[str, object]:
        given = {field: getattr(self, field) for field in self.model_fields_set}
        return {**given, "tags": given["tags"] or []} if "tags" in given else given


class AliasTarget(BaseModel):
    """``PUT /aliases/{name}``: the model the alias is to point to from now on."""

    model_config = ConfigDict(extra="forbid")

    model_id: str = Field(max_length=100, description="one of your models")


class AliasList(BaseModel):
    items: list[Alias]
