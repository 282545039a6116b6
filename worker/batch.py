"""The batch tagging tasks (``jobstore/batches.py``): tag one chunk, and, as the chord's last step,
merge the chunks' output in input order.

A chunk whose worker dies is delivered again (``task_acks_late`` and ``task_reject_on_worker_lost``,
as for jobs) and tagged again by a new attempt, which writes files of its own; the first attempt to
record the chunk done is the one whose output the merge reads. Celery's chord counts a chunk that
ran twice twice, and may then start the merge before the last chunk is done: the merge checks the
record, and waits (``retry``) until every chunk is done. Of two deliveries of the merge, the first
to end the batch wins and the other removes its file.

A worker that dies whole (machine gone, main process killed) leaves its chunk's message to the
broker's visibility timeout, hours away. So every worker's main process also sweeps, as for jobs:
a chunk noted running on a worker that stopped reporting for ``heartbeat_timeout_s`` is sent again,
outside the chord, and the chunk that completes such a batch then sends the merge itself.

Each of those sends, and the API's send of a new batch's chord, follows a transaction that noted it in
the batches' outbox (``jobstore/batches.py``), and the note goes once the message is sent. The sweep
also sends again every note left for over ``heartbeat_timeout_s`` whose message is still wanted: its
sender died between the record and the send, which would otherwise leave the batch queued or running
for ever.

The engine is imported inside the tasks, so the worker's main process stays free of torch. A pool
process keeps the models it loaded (``_tagger``) for the chunks it runs next, as many as the
worker's ``max_tasks_per_child`` lets it.
"""

from __future__ import annotations

import json
import logging
import secrets
import shutil
import threading
import time
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import worker_ready, worker_shutdown

from jobstore.batches import (
    Batches,
    batch_queue,
    chunk_note,
    chunk_output_path,
    folder,
    input_path,
    merge_note,
    output_path,
    result_line,
    send_note,
)
from jobstore.broker import MERGE_BATCH, TAG_CHUNK
from jobstore.settings import Settings, get_settings
from jobstore.store import NotFound, Store
from worker.app import celery_app
from worker.tasks import retrying

if TYPE_CHECKING:
    from tagdistill.tagger import Tagger

log = logging.getLogger("tagdistill.worker")

PIECE = 500  # sentences tagged between two looks at the record (a cancel stops a chunk within one)
MERGE_WAIT_S = 2.0  # how long a merge started early waits before it looks again
MERGE_MAX_WAITS = 1800  # an hour of that: a chunk still not done then is lost, and the batch fails


def _batches() -> Batches:
    settings = get_settings()
    return Batches(Store.from_url(settings.redis_url, settings.key_prefix, settings.redis_timeout_s))


@lru_cache(maxsize=2)
def _tagger(student_path: str) -> Tagger:
    """The student at ``student_path`` (relative to the data directory), pulled from the artifact store
    and loaded once per pool process."""
    import torch

    from tagdistill.tagger import Tagger

    settings = get_settings()
    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
    return Tagger.load(settings.artifacts.pull(student_path))


@celery_app.task(name=TAG_CHUNK, bind=True)
def tag_chunk(self: Any, batch_id: str, index: int) -> dict[str, Any]:
    batches, artifacts = _batches(), get_settings().artifacts
    worker = self.request.hostname or "worker"
    try:
        todo = batches.start_chunk(batch_id, index, worker, self.request.id)
    except NotFound:
        return {"chunk": index, "ran": False}
    if not todo:  # done by an earlier attempt, tagged by another delivery, or the batch ended
        log.info("chunk not to be tagged: delivery ignored", extra={"batch_id": batch_id, "chunk": index})
        return {"chunk": index, "ran": False}
    started, attempt = time.monotonic(), secrets.token_hex(4)
    source, target = input_path(batch_id, index), chunk_output_path(batch_id, index, attempt)
    try:
        batch = batches.get(batch_id)
        tagger = _tagger(batch.student_path)
        with artifacts.pull(source).open(encoding="utf-8") as f:
            items = [json.loads(line) for line in f]
        words, out = 0, artifacts.local(target)
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("w", encoding="utf-8") as f:
            for start in range(0, len(items), PIECE):
                if batches.stopped(batch_id):
                    log.info("chunk stopped: the batch ended", extra={"batch_id": batch_id, "chunk": index})
                    out.unlink()
                    return {"chunk": index, "ran": False}
                for result in tagger.predict(items[start : start + PIECE]):
                    f.write(result_line(result))
                    words += len(result["tokens"])
        artifacts.push(target)
    except NotFound:  # cancelled, then deleted (DELETE /batch-jobs/{id}), while this chunk started
        return {"chunk": index, "ran": False}
    except SoftTimeLimitExceeded:
        limit = get_settings().job_time_limit_s
        retrying(batches.fail, batch_id, f"chunk {index}: time limit of {limit} s exceeded")
        return {"chunk": index, "ran": True, "failed": True}
    except Exception as exc:  # the batch's failure (a missing model, a full disk), not the worker's
        log.exception("chunk failed", extra={"batch_id": batch_id, "chunk": index})
        error = get_settings().data.redact(f"chunk {index}: {type(exc).__name__}: {exc}")  # no server paths
        retrying(batches.fail, batch_id, error)
        return {"chunk": index, "ran": True, "failed": True}
    finally:
        if artifacts.remote:  # the store keeps them; this machine's cache need not
            artifacts.local(source).unlink(missing_ok=True)
            artifacts.local(target).unlink(missing_ok=True)
    seconds = time.monotonic() - started
    try:
        after = retrying(batches.chunk_done, batch_id, index, attempt, worker, len(items), words, seconds)
    except NotFound:  # cancelled and deleted while this chunk ran: its file must not outlive the record
        after = None
    if after is None:
        artifacts.delete(target)  # another attempt finished it first, or the batch ended
        return {"chunk": index, "ran": True, "recorded": False}
    log.info("chunk tagged", extra={"batch_id": batch_id, "chunk": index, "sentences": len(items),
                                    "words": words, "seconds": round(seconds, 2)})
    if after.resent and after.chunks_done == after.chunks:  # chunk_done noted the merge: outside the chord
        _send(batches, merge_note(batch_id), get_settings())
    return {"chunk": index, "ran": True, "sentences": len(items), "words": words}


@celery_app.task(name=MERGE_BATCH, bind=True, max_retries=MERGE_MAX_WAITS)
def merge_batch(self: Any, _results: list[Any], batch_id: str) -> dict[str, Any]:
    """The chord's last step: the chunks' outputs, in order, as one file; the batch then succeeds."""
    batches, artifacts = _batches(), get_settings().artifacts
    try:
        batch = batches.get(batch_id)
    except NotFound:  # cancelled, then deleted
        return {"batch_id": batch_id, "merged": False}
    if batch.status != "running":  # cancelled, failed, or merged by an earlier delivery
        return {"batch_id": batch_id, "merged": False}
    if batch.chunks_done < batch.chunks:
        if self.request.retries >= MERGE_MAX_WAITS:
            retrying(batches.fail, batch_id, f"only {batch.chunks_done} of {batch.chunks} chunks were tagged")
            return {"batch_id": batch_id, "merged": False}
        raise self.retry(countdown=MERGE_WAIT_S)
    attempts, target = batches.attempts(batch_id), output_path(batch_id, secrets.token_hex(4))
    with artifacts.open(target, "wb") as out:  # streamed chunk by chunk, store to store
        for index in range(batch.chunks):
            with artifacts.open(chunk_output_path(batch_id, index, attempts[index]), "rb") as part:
                shutil.copyfileobj(part, out, 1 << 20)
        size = out.tell()
    try:
        merged = retrying(batches.succeed, batch_id, target, size)
    except NotFound:  # cancelled and deleted meanwhile
        merged = False
    if not merged:
        artifacts.delete(target)  # cancelled meanwhile, or another delivery of the merge ended it
        return {"batch_id": batch_id, "merged": False}
    for part in ("input", "output"):  # the chunks are in the merged file now
        artifacts.delete(f"{folder(batch_id)}/{part}")
    log.info("batch merged", extra={"batch_id": batch_id, "bytes": size, "chunks": batch.chunks})
    return {"batch_id": batch_id, "merged": True, "bytes": size}


# --- the sweep for chunks of lost workers, and for messages noted but never said sent -------------

_stop_sweep = threading.Event()


def sweep_batches(batches: Batches, settings: Settings) -> list[tuple[str, int]]:
    """Send again each chunk whose worker died whole (``Batches.lost_chunks``), and each message noted in
    the batches' outbox for over ``heartbeat_timeout_s`` that is still wanted (``Batches.unsent``: its
    sender died before the send). The lost chunks, for the caller."""
    alive = {w.name for w in batches.store.live_workers(settings.heartbeat_timeout_s)}
    lost = batches.lost_chunks(alive, settings.heartbeat_timeout_s)
    for batch_id, index in lost:
        where = {"batch_id": batch_id, "chunk": index}
        log.warning("chunk sent again: its worker stopped reporting", extra=where)
        _send(batches, chunk_note(batch_id, index), settings)
    for note in batches.unsent(settings.heartbeat_timeout_s):
        log.warning("batch message sent again: it was noted but its send was never confirmed",
                    extra={"note": note})
        _send(batches, note, settings)
    return lost


def _send(batches: Batches, note: str, settings: Settings) -> None:
    """Send the message of the outbox's ``note`` and remove the note. A broker or Redis away for a moment
    leaves the note, and a later sweep sends the message again if it is still wanted (a second delivery
    is harmless)."""
    try:
        send_note(celery_app, note, batch_queue(settings))
        batches.sent(note)
    except Exception:
        log.exception("batch message not confirmed sent: the sweep sends it again", extra={"note": note})


def _sweep(every_s: float) -> None:
    batches, settings = _batches(), get_settings()
    while not _stop_sweep.wait(every_s):
        try:
            sweep_batches(batches, settings)
        except Exception:  # Redis away for a moment: try again next time
            log.exception("batch sweep failed")


@worker_ready.connect
def _start_sweep(**_: Any) -> None:
    """Every worker's main process sweeps, as it does for jobs (``worker/sweep.py``)."""
    every_s = get_settings().heartbeat_s
    threading.Thread(target=_sweep, args=(every_s,), name="batch-sweep", daemon=True).start()


@worker_shutdown.connect
def _end_sweep(**_: Any) -> None:
    _stop_sweep.set()
