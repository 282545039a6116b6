"""Distillation jobs: submit, follow, cancel."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated

import anyio
import redis
from fastapi import APIRouter, Header, Query, Request, Response
from sse_starlette import EventSourceResponse

from jobstore.broker import enqueue_job
from jobstore.layout import DataDir, PathError
from jobstore.limits import LimitError, check_limits
from jobstore.records import TERMINAL, Event, JobStatus, JobView
from jobstore.store import NotFound, Store
from jobstore.teachers import Teachers
from service.auth import CallerDep
from service.bodies import JobList, JobSubmission, Relabel
from service.deps import CeleryDep, DataDirDep, PageDep, SettingsDep, StoreDep
from service.errors import ApiError, invalid
from service.filters import MatchDep
from service.hub import check_base_model
from tagdistill.checkpoint import fingerprint
from tagdistill.config import DEFAULT_TEACHER, JobConfig
from tagdistill.foreign import LabelMismatch, teacher_label_mapping

router = APIRouter(prefix="/jobs", tags=["jobs"])
log = logging.getLogger("tagdistill.api")

STREAM_POLL_S = 0.5  # how often an event stream looks for new events


@router.post("", status_code=202, response_model=JobView)
def create_job(
    body: JobSubmission,
    response: Response,
    store: StoreDep,
    data: DataDirDep,
    settings: SettingsDep,
    celery: CeleryDep,
    caller: CallerDep,
    idempotency_key: Annotated[
        str | None, Header(max_length=200, description="a retry with the same key returns the same job")
    ] = None,
) -> JobView:
    """Start a job; 202 with the queued job. Only dataset_id is required."""
    cfg = body.job_config()
    may_use = None if caller.only is None else lambda record: _owns(store, record, caller.only)
    try:
        ds = store.get_dataset(cfg.dataset_id, caller.only)  # someone else's is unknown, as in GET
        resolved = data.resolve_paths(cfg, may_use)
        check_limits(cfg, settings, store.live_workers(settings.heartbeat_timeout_s))
        for field, folder in _teacher_folders(resolved):
            _check_teacher_labels(data, field, folder, ds.stats.get("labels"))
        for field, given, source in _base_models(cfg, resolved):
            if given != DEFAULT_TEACHER:  # "minilm" ships with us
                if data.inside(source):  # a folder of ours: its config, from the store
                    data.fetch(f"{source}/config.json")
                check_base_model(given, source, data.redact, field)
    except (PathError, LimitError) as exc:
        raise invalid(["body", *exc.field.split(".")], str(exc)) from None
    except TeacherLabels as exc:
        raise invalid(["body", *exc.field.split(".")], str(exc), "label_mismatch") from None
    except NotFound as exc:
        raise invalid(["body", "dataset_id"], str(exc)) from None
    try:
        job, created = store.create_job(
            cfg.dataset_id, cfg, idempotency_key, fingerprint(body.model_dump(mode="json")),
            settings.idempotency_ttl_s, caller.owner, settings.max_active_jobs, body.name, body.tags,
        )
    except NotFound as exc:
        raise invalid(["body", "dataset_id"], str(exc)) from None
    if created:
        try:
            enqueue_job(celery, job.id, settings.queue)
        except Exception as exc:
            store.finish_job(job.id, "failed", error=f"could not be queued: {exc}")
            msg = "the job queue is unreachable; try again shortly"
            raise ApiError(503, "queue_unreachable", msg, headers={"Retry-After": "5"}) from exc
        try:
            store.sent(job.id)  # out of the outbox: else a worker's sweep sends it again (worker/sweep.py)
        except redis.RedisError:  # the job is queued and sent: a note left costs one more delivery
            log.warning("job sent but still noted unsent", exc_info=True, extra={"job_id": job.id})
        log.info("job queued", extra={"job_id": job.id, "dataset_id": job.dataset_id})
    else:
        response.headers["Idempotent-Replayed"] = "true"
    response.headers["Location"] = f"/jobs/{job.id}"
    return job


def _base_models(cfg: JobConfig, resolved: JobConfig) -> list[tuple[str, str, str]]:
    """(field, base model as given, as resolved) of each teacher the job fine-tunes: the teacher's, and an
    ensemble's members' own."""
    teacher = ("teacher.base_model", cfg.teacher.base_model, resolved.teacher.base_model)
    found = [] if cfg.teacher.path else [teacher]
    for i, (member, local) in enumerate(zip(cfg.teacher.ensemble, resolved.teacher.ensemble, strict=True)):
        if member.base_model is not None and local.base_model is not None:
            found.append((f"teacher.ensemble.{i}.base_model", member.base_model, local.base_model))
    return found


def _owns(store: Store, record: tuple[str, str], owner: str) -> bool:
    """Whether the job, dataset or uploaded teacher ``record`` (kind, id) is ``owner``'s."""
    kind, record_id = record
    return Teachers(store).owns(record_id, owner) if kind == "teacher" else store.owns(kind, record_id, owner)


class TeacherLabels(LabelMismatch):
    """A teacher folder of the job (``field``: teacher.path or teacher.ensemble.<i>.path) whose labels are
    not the dataset's."""

    def __init__(self, field: str, given: str, mismatch: LabelMismatch) -> None:
        super().__init__(mismatch.missing, mismatch.extra)
        self.field = field
        self.args = (f"{given}: {mismatch}",)


def _teacher_folders(resolved: JobConfig) -> list[tuple[str, Path]]:
    """(field, folder) of each existing teacher folder the job uses: teacher.path, or ensemble members'."""
    found = [("teacher.path", resolved.teacher.path)]
    found += [(f"teacher.ensemble.{i}.path", m.path) for i, m in enumerate(resolved.teacher.ensemble)]
    return [(field, folder) for field, folder in found if folder is not None]


def _check_teacher_labels(data: DataDir, field: str, folder: Path, labels: list[str] | None) -> None:
    """TeacherLabels when the teacher folder's labels (its config.json's, read in IOB2) are not the
    dataset's ``labels``; PathError for a config.json that names none. A folder without config.json (a
    student folder, or one the worker will say what it lacks when it loads it) is not checked here."""
    given = data.relative(folder)
    config = data.fetch(f"{given}/config.json")  # from the object store, when there is one
    if labels is None or not config.is_file():
        return
    try:
        teacher_label_mapping(folder, labels)
    except LabelMismatch as exc:
        raise TeacherLabels(field, str(given), exc) from None
    except ValueError as exc:  # config.json that is not JSON, or without id2label
        raise PathError(field, f"{given}: {exc}") from None


@router.get("", response_model=JobList)
def list_jobs(
    store: StoreDep,
    caller: CallerDep,
    page: PageDep,
    match: MatchDep,
    status: Annotated[JobStatus | None, Query(description="only jobs in this status")] = None,
) -> JobList:
    """Jobs, newest first; ``tag`` and ``q`` filter them by tag and name."""
    items, next_cursor = page.fetch(
        lambda cursor, limit: store.list_jobs(status, cursor, limit, caller.only, match)
    )
    return JobList(items=items, next_cursor=next_cursor)


@router.get("/{job_id}", response_model=JobView)
def get_job(job_id: str, store: StoreDep, caller: CallerDep) -> JobView:
    """A job's status, stage, progress, latest metrics and, when done, its model id."""
    return store.get_job(job_id, caller.only)


@router.patch("/{job_id}", response_model=JobView)
def relabel_job(job_id: str, body: Relabel, store: StoreDep, caller: CallerDep) -> JobView:
    """Change a job's name or tags (its model keeps those it took when it was made)."""
    return store.relabel("job", job_id, caller.only, **body.changes())


@router.post("/{job_id}/cancel", status_code=202, response_model=JobView)
def cancel_job(job_id: str, store: StoreDep, caller: CallerDep) -> JobView:
    """Cancel a queued job, or ask a running one to stop (it does within seconds); 409 when finished."""
    store.get_job(job_id, caller.only)  # 404 for someone else's job
    return store.request_cancel(job_id)


NEXT_PAGE = {
    "description": 'with more events than the page held: `<the URL of the next page>; rel="next"` '
    "(after = the page's last seq). A running job's later events: ask again with after = the last seq",
    "schema": {"type": "string"},
}


@router.get(
    "/{job_id}/events",
    response_model=list[Event],
    responses={
        200: {
            "content": {"text/event-stream": {}}, "headers": {"Link": NEXT_PAGE},
            "description": "the events, or their stream",
        },
    },
)
def job_events(
    job_id: str,
    request: Request,
    response: Response,
    store: StoreDep,
    caller: CallerDep,
    # bounded so that after + 1 stays a Redis list index (int64): no job has 2**62 events
    after: Annotated[int, Query(ge=-1, le=2**62, description="only events with a larger seq")] = -1,
    limit: Annotated[int, Query(ge=1, le=1000, description="at most this many (not in a stream)")] = 1000,
    stream: Annotated[bool, Query(description="server-sent events until the job ends")] = False,
) -> list[Event] | EventSourceResponse:
    """The job's events in order (status, stage, progress, epoch, log); SSE with Accept: text/event-stream."""
    store.get_job(job_id, caller.only)  # 404 for an unknown job, or someone else's
    if stream or "text/event-stream" in request.headers.get("accept", ""):
        # A browser's EventSource sends back the last id we sent; anything else (not ASCII digits,
        # past the bound of `after`) is ignored rather than refused, as EventSource expects, and
        # the stream starts after `after`. The length check keeps int() off 5,000-digit strings.
        last = request.headers.get("last-event-id", "")
        resumable = last.isascii() and last.isdigit() and len(last) <= 19 and int(last) <= 2**62
        start = int(last) + 1 if resumable else after + 1
        return EventSourceResponse(_stream(store, job_id, start))
    page = store.events(job_id, after + 1, limit + 1)  # one more than asked: is there a next page?
    if len(page) > limit:
        page = page[:limit]
        response.headers["Link"] = f'<{request.url.path}?after={page[-1].seq}&limit={limit}>; rel="next"'
    return page


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
