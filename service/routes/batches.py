"""Batch tagging: a large file tagged by a model's student on the workers, in parallel chunks."""

from __future__ import annotations

import logging
import secrets
import shutil
from collections.abc import Iterator
from typing import IO, Annotated, Any

import redis
from fastapi import APIRouter, File, Form, Response, UploadFile
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from jobstore.batches import (
    Batches,
    BatchJob,
    BatchView,
    InputFormat,
    batch_queue,
    chord_note,
    folder,
    send_note,
    split_input,
)
from jobstore.records import utcnow
from jobstore.store import Conflict, NotFound
from service.auth import CallerDep
from service.deps import CeleryDep, DataDirDep, PageDep, SettingsDep, StoreDep
from service.errors import ApiError, invalid
from tagdistill.data import DataError

router = APIRouter(prefix="/batch-jobs", tags=["batch-jobs"])
log = logging.getLogger("tagdistill.api")


class BatchList(BaseModel):
    items: list[BatchView]
    next_cursor: str | None


@router.post("", status_code=202, response_model=BatchView)
def create_batch_job(
    response: Response,
    store: StoreDep,
    data: DataDirDep,
    settings: SettingsDep,
    celery: CeleryDep,
    caller: CallerDep,
    file: Annotated[UploadFile, File(description='a sentence a line, or JSON Lines: {"text"} or {"tokens"}')],
    model_id: Annotated[str, Form(max_length=200, description="the model whose student tags the file")],
    format: Annotated[InputFormat, Form(description="text: raw sentences; jsonl: objects")] = "text",
) -> BatchView:
    """Tag a file with a model's student on the workers; 202 with the queued batch job.

    Every line is checked first: a bad one is a 422 naming it, and nothing runs. The file is cut into
    chunks of ``batch_chunk_size`` sentences that the workers tag in parallel; the output (JSON Lines:
    tokens, tags, entities, in input order) is at ``GET /batch-jobs/{id}/output`` once it succeeded.
    """
    batches, artifacts = Batches(store), settings.artifacts
    try:
        model = store.get_model(model_id, caller.only)
    except NotFound as exc:
        raise invalid(["body", "model_id"], str(exc)) from None
    if not artifacts.exists(model.student_path):
        raise invalid(["body", "model_id"], f"the student of model {model.id} is not in the artifact store")
    batches.check_quota(caller.owner, settings.max_active_batches)  # 429 before reading the file
    batch_id, name = batches.new_id(), (file.filename or "file")[:200]
    staging = data.tmp() / secrets.token_hex(8)
    staging.mkdir()
    chunked = f"{folder(batch_id)}/input"
    inputs = artifacts.local(chunked)
    try:
        with (staging / "upload").open("wb") as out:
            shutil.copyfileobj(file.file, out, 1 << 20)
        sentences, chunks = split_input(
            staging / "upload", format, name, settings.max_predict_chars, settings.batch_chunk_size,
            staging / "input",
        )
        inputs.parent.mkdir(parents=True, exist_ok=True)
        (staging / "input").rename(inputs)
        artifacts.push(chunked)
        if artifacts.remote:  # the workers pull the chunks from the store; this cache need not keep them
            shutil.rmtree(inputs)
        now = utcnow()
        batch = batches.create(
            BatchJob(
                id=batch_id, status="queued", owner=caller.owner, model_id=model.id, filename=name,
                format=format, created_at=now, updated_at=now, sentences=sentences, chunks=chunks,
                chunk_size=settings.batch_chunk_size, student_path=model.student_path,
            ),
            settings.max_active_batches,
        )
    except DataError as exc:
        artifacts.delete(folder(batch_id))
        where = {"line": exc.line, "filename": file.filename}
        raise invalid(["body", "file"], str(exc), "data_error", **where) from None
    except BaseException:
        artifacts.delete(folder(batch_id))
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    note = chord_note(batch.id, chunks)  # noted with the record: a worker's sweep sends it if we die here
    try:
        send_note(celery, note, batch_queue(settings))
    except Exception as exc:
        batches.fail(batch.id, f"could not be queued: {exc}")  # its note is then dropped by the sweep
        msg = "the job queue is unreachable; try again shortly"
        raise ApiError(503, "queue_unreachable", msg, headers={"Retry-After": "5"}) from exc
    try:
        batches.sent(note)  # out of the outbox: else a worker's sweep sends the chord again
    except redis.RedisError:  # the chord is sent: a note left costs one more delivery of each chunk
        log.warning("batch sent but still noted unsent", exc_info=True, extra={"batch_id": batch.id})
    log.info("batch job queued", extra={"batch_id": batch.id, "sentences": sentences, "chunks": chunks})
    response.headers["Location"] = f"/batch-jobs/{batch.id}"
    return batch


@router.get("", response_model=BatchList)
def list_batch_jobs(store: StoreDep, caller: CallerDep, page: PageDep) -> BatchList:
    """Batch jobs, newest first."""
    batches = Batches(store)
    items, next_cursor = page.fetch(lambda cursor, limit: batches.list_batches(cursor, limit, caller.only))
    return BatchList(items=items, next_cursor=next_cursor)


@router.get("/{batch_id}", response_model=BatchView)
def get_batch_job(batch_id: str, store: StoreDep, caller: CallerDep) -> BatchView:
    """A batch job's status and progress: chunks and sentences done, words per second, workers."""
    return Batches(store).get(batch_id, caller.only)


@router.post("/{batch_id}/cancel", status_code=202, response_model=BatchView)
def cancel_batch_job(batch_id: str, store: StoreDep, caller: CallerDep) -> BatchView:
    """Cancel a queued or running batch job at once (running chunks stop within seconds); 409 when ended."""
    return Batches(store).cancel(batch_id, caller.only)


@router.delete("/{batch_id}", status_code=204)
def delete_batch_job(batch_id: str, store: StoreDep, settings: SettingsDep, caller: CallerDep) -> Response:
    """Delete an ended batch job: its record and its files (the output) in the store. 409 while it is queued
    or running: cancel it first (POST /batch-jobs/{id}/cancel)."""
    Batches(store).delete(batch_id, settings.artifacts, caller.only)
    log.info("batch job deleted", extra={"batch_id": batch_id})
    return Response(status_code=204)


@router.get(
    "/{batch_id}/output",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/x-ndjson": {}}, "description": "one result a line, in order"}},
)
def batch_job_output(
    batch_id: str, store: StoreDep, settings: SettingsDep, caller: CallerDep
) -> StreamingResponse:
    """The tagged output, streamed: JSON Lines of tokens, tags and entities, one per input sentence in
    input order (what Tagger.predict gives); 409 until the batch job has succeeded."""
    batch = Batches(store).get(batch_id, caller.only)
    if batch.status != "succeeded" or batch.output is None:
        msg = f"batch job {batch_id} is {batch.status}: its output is there once it has succeeded"
        raise Conflict(msg, "batch_job_not_succeeded")
    # opened here, not in the stream: a missing file is then an error, not half a body
    source = settings.artifacts.open(batch.output, "rb")
    headers = {"Content-Disposition": f'attachment; filename="{batch_id}.jsonl"'}
    if batch.output_bytes is not None:
        headers["Content-Length"] = str(batch.output_bytes)
    return StreamingResponse(_blocks(source), media_type="application/x-ndjson", headers=headers)


def _blocks(source: IO[Any]) -> Iterator[bytes]:
    with source:
        while block := source.read(1 << 20):
            yield block
