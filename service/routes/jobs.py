"""Distillation jobs: submit, follow, cancel."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import AsyncIterator
from typing import Annotated

import anyio
from fastapi import APIRouter, Header, HTTPException, Query, Request, Response
from sse_starlette import EventSourceResponse

from jobstore.broker import enqueue_job
from jobstore.layout import DataDir, PathError
from jobstore.records import TERMINAL, Event, Job, JobStatus
from jobstore.store import NotFound, Store
from service.auth import Caller, CallerDep
from service.bodies import JobList
from service.deps import CeleryDep, DataDirDep, PageDep, SettingsDep, StoreDep
from service.errors import invalid
from tagdistill.checkpoint import fingerprint
from tagdistill.config import DEFAULT_TEACHER, GLOVE_6B_50D, JobConfig

router = APIRouter(prefix="/jobs", tags=["jobs"])
log = logging.getLogger("tagdistill.api")

STREAM_POLL_S = 0.5  # how often an event stream looks for new events
# "bert-base-cased", "org/model-v1.2": a Hugging Face model name (fetched when the job runs)
HUB_NAME = re.compile(r"[A-Za-z0-9][\w.-]{0,95}(/[A-Za-z0-9][\w.-]{0,95})?")


@router.post("", status_code=202, response_model=Job)
def create_job(
    cfg: JobConfig,
    response: Response,
    store: StoreDep,
    data: DataDirDep,
    settings: SettingsDep,
    celery: CeleryDep,
    caller: CallerDep,
    idempotency_key: Annotated[
        str | None, Header(max_length=200, description="a retry with the same key returns the same job")
    ] = None,
) -> Job:
    """Start a job; 202 with the queued job. Only dataset_id is required."""
    if cfg.data is not None:
        msg = "the service runs on uploaded datasets: POST /datasets, then give dataset_id"
        raise invalid(["body", "data"], msg)
    try:
        store.get_dataset(cfg.dataset_id, caller.only)  # someone else's is unknown, as in GET
        _check_paths(cfg, data, store, caller)
        data.resolve_config(cfg)
    except PathError as exc:
        raise invalid(["body", *exc.field.split(".")], str(exc)) from None
    except NotFound as exc:
        raise invalid(["body", "dataset_id"], str(exc)) from None
    config = cfg.model_dump(mode="json")
    try:
        job, created = store.create_job(
            cfg.dataset_id, config, idempotency_key, fingerprint(config), settings.idempotency_ttl_s,
            caller.owner,
        )
    except NotFound as exc:
        raise invalid(["body", "dataset_id"], str(exc)) from None
    if created:
        try:
            enqueue_job(celery, job.id, settings.queue)
        except Exception as exc:
            store.finish_job(job.id, "failed", error=f"could not be queued: {exc}")
            raise HTTPException(503, "the job queue is unreachable; try again shortly") from exc
        log.info("job queued", extra={"job_id": job.id, "dataset_id": job.dataset_id})
    else:
        response.headers["Idempotent-Replayed"] = "true"
    response.headers["Location"] = f"/jobs/{job.id}"
    return job


def _check_paths(cfg: JobConfig, data: DataDir, store: Store, caller: Caller) -> None:
    """PathError unless every file the config names is one this caller may use.

    ``teacher.path`` and ``student.embeddings`` lie in the data directory (``resolve_config``
    says so); with API keys, a key that is not an admin's may only name files in its own jobs
    and datasets, or in ``shared/``. ``teacher.base_model`` is "minilm", a Hugging Face name
    (checked when the job runs) or a folder on the server that must exist (and, when it lies in
    the data directory, follow the same rule).
    """
    vectors = cfg.student.embeddings if cfg.student.embeddings != GLOVE_6B_50D else None
    fields = [("teacher.path", cfg.teacher.path), ("student.embeddings", vectors)]
    base = cfg.teacher.base_model
    if base != DEFAULT_TEACHER:
        exists = os.path.exists(base)  # False, not an error, for a NUL byte or a name too long
        if not exists and not (HUB_NAME.fullmatch(base) and ".." not in base):
            msg = f'{base!r} is not "minilm", a Hugging Face model name, or a folder on the server'
            raise PathError("teacher.base_model", msg)
        if exists:
            path = os.path.realpath(base)
            if os.path.commonpath([path, str(data.root)]) == str(data.root):
                fields.append(("teacher.base_model", os.path.relpath(path, data.root)))
    if caller.only is None:
        return
    for field, value in fields:
        if value is None:
            continue
        try:
            path = data.resolve(value)
        except ValueError:
            continue  # resolve_config names the problem
        record = data.record_of(path)
        if record is not None and record[0] == "shared":
            continue
        try:
            if record is not None and record[0] == "job":
                store.get_job(record[1], caller.only)
                continue
            if record is not None and record[0] == "dataset":
                store.get_dataset(record[1], caller.only)
                continue
        except NotFound:
            pass
        raise PathError(field, f"{value} is not in one of your jobs or datasets, nor in shared/")


@router.get("", response_model=JobList)
def list_jobs(
    store: StoreDep,
    caller: CallerDep,
    page: PageDep,
    status: Annotated[JobStatus | None, Query(description="only jobs in this status")] = None,
) -> JobList:
    """Jobs, newest first."""
    items, next_cursor = page.fetch(lambda cursor, limit: store.list_jobs(status, cursor, limit, caller.only))
    return JobList(items=items, next_cursor=next_cursor)


@router.get("/{job_id}", response_model=Job)
def get_job(job_id: str, store: StoreDep, caller: CallerDep) -> Job:
    """A job's status, stage, progress, latest metrics and, when done, its model id."""
    return store.get_job(job_id, caller.only)


@router.post("/{job_id}/cancel", status_code=202, response_model=Job)
def cancel_job(job_id: str, store: StoreDep, caller: CallerDep) -> Job:
    """Cancel a queued job, or ask a running one to stop (it does within seconds); 409 when finished."""
    store.get_job(job_id, caller.only)  # 404 for someone else's job
    return store.request_cancel(job_id)


@router.get(
    "/{job_id}/events",
    response_model=list[Event],
    responses={200: {"content": {"text/event-stream": {}}, "description": "the events, or their stream"}},
)
def job_events(
    job_id: str,
    request: Request,
    store: StoreDep,
    caller: CallerDep,
    after: Annotated[int, Query(ge=-1, description="only events with a larger seq")] = -1,
    stream: Annotated[bool, Query(description="server-sent events until the job ends")] = False,
) -> list[Event] | EventSourceResponse:
    """The job's events in order (status, stage, progress, epoch, log); SSE with Accept: text/event-stream."""
    store.get_job(job_id, caller.only)  # 404 for an unknown job, or someone else's
    if stream or "text/event-stream" in request.headers.get("accept", ""):
        last = request.headers.get("last-event-id", "")
        start = int(last) + 1 if last.isdigit() else after + 1
        return EventSourceResponse(_stream(store, job_id, start))
    return store.events(job_id, after + 1)


async def _stream(store: Store, job_id: str, start: int) -> AsyncIterator[dict]:
    while True:
        job = await anyio.to_thread.run_sync(store.get_job, job_id)
        events = await anyio.to_thread.run_sync(store.events, job_id, start)
        for event in events:
            yield {"id": str(event.seq), "event": event.type, "data": event.model_dump_json()}
        start += len(events)
        if job.status in TERMINAL and not events:
            return
        await anyio.sleep(STREAM_POLL_S)
