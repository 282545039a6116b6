"""Batch tagging: a large file tagged by a student, cut into chunks that the workers tag in parallel.

The API checks the whole input (``split_input``) before any work starts, writes it as chunk files
and sends a Celery chord (``enqueue_batch``): one ``TAG_CHUNK`` task per chunk, then ``MERGE_BATCH``.
Files live in the artifact store (``jobstore.artifacts``), under paths relative to the data directory::

    batches/<id>/input/00000.jsonl               chunk 0 of the input: one JSON string (raw text) or
                                                 list of strings (tokens) a line, as Tagger.predict takes
    batches/<id>/output/00000-<attempt>.jsonl    chunk 0 tagged by one attempt: one result a line
    batches/<id>/output-<attempt>.jsonl          the whole output, in input order (the merge's)

Every attempt writes files of its own, and the record says which attempt's files count, so a
chunk that ran twice (its worker lost) or a merge delivered twice never mixes two attempts.

Records, under the Store's client and key prefix ``p`` (kept apart from ``jobstore/store.py``)::

    p batch:<id>          hash   BatchJob (one JSON value per field, as the Store's records)
    p batch:<id>:chunks   hash   chunk index -> {"attempt", "worker", "sentences", "words", "seconds"}
    p batch:<id>:running  hash   chunk index -> {"worker", "delivery", "since"}: chunks being tagged, and by
                                 which delivery (a task id; the claim), or sent again (worker REQUEUED)
    p batches             zset   id -> seq       p owner:<owner>:batches    the owner's
    p batches:active      zset   queued or running batches (the quota)   p owner:<owner>:batches:active
    p batches:outbox      zset   note -> when noted: messages whose send is in doubt (an ``Outbox``):
                                 "chord <id> <chunks>" (``create``), "chunk <id> <index>" (``lost_chunks``),
                                 "merge <id>" (``chunk_done`` completing a batch of which a chunk was
                                 sent again); removed by ``sent``, sent again by the sweep (``unsent``)

Status changes are WATCH/MULTI transactions, as the Store's: a cancel, the chunk that finishes
last and the merge cannot both win. An ended batch can be deleted (``delete``): its files, then
these keys.

Every message of a batch is sent after the transaction that makes it due, as a job's task is
(``worker/sweep.py``): a new batch's chord, a chunk sent again because its worker died whole, and the
merge that a chunk sent again must send itself. A process that dies between the two would leave the
batch queued or running for ever (and holding one of its owner's active-batch slots), so each of
those transactions also notes the message in the batches' outbox, and the worker sweep sends again
the notes left for over ``heartbeat_timeout_s`` whose message is still wanted. A message sent twice
is harmless: a chunk is claimed by one delivery at a time (``start_chunk``) and counts once
(``chunk_done``), and one merge ends a batch (``succeed``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import redis
from celery import Celery, chord
from pydantic import BaseModel

from jobstore.artifacts import ArtifactStore
from jobstore.broker import MERGE_BATCH, TAG_CHUNK
from jobstore.records import TERMINAL, utcnow
from jobstore.settings import Settings
from jobstore.store import Conflict, NotFound, Outbox, QuotaExceeded, Store, decode_fields, encode_fields
from tagdistill.data import DataError, numbered_lines

BatchStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
InputFormat = Literal["text", "jsonl"]
Item = str | list[str]  # what Tagger.predict takes for one sentence: raw text, or its tokens
REQUEUED = "(requeued)"  # the worker of a running chunk whose worker was lost and that was sent again


class BatchView(BaseModel):
    """A batch tagging job as the API shows it."""

    id: str
    status: BatchStatus
    owner: str | None = None  # owner of the API key that submitted it
    model_id: str
    filename: str | None = None  # the uploaded file's name, as the client gave it
    format: InputFormat
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = None  # when the first chunk started
    finished_at: datetime | None = None
    sentences: int  # in the input (blank lines are skipped)
    chunks: int  # tagged in parallel, ``chunk_size`` sentences each (the last one fewer)
    chunk_size: int
    chunks_done: int = 0
    sentences_done: int = 0
    words_done: int = 0  # tokens tagged so far
    words_per_second: float | None = None  # words_done over the time since the first chunk started
    workers: dict[str, int] = {}  # worker -> chunks it tagged
    resent: int = 0  # chunks sent again because their worker died whole (``Batches.lost_chunks``)
    cancel_requested: bool = False
    error: str | None = None
    output_bytes: int | None = None  # once succeeded: GET /batch-jobs/{id}/output


class BatchJob(BatchView):
    """The stored record: the view plus where the files are and the pagination key."""

    student_path: str  # the model's student folder, relative to the data directory
    output: str | None = None  # the merged output, relative to the data directory, once succeeded
    seq: int = 0


# --- files ---------------------------------------------------------------------------------------


def folder(batch_id: str) -> str:
    return f"batches/{batch_id}"


def input_path(batch_id: str, index: int) -> str:
    return f"{folder(batch_id)}/input/{index:05d}.jsonl"


def chunk_output_path(batch_id: str, index: int, attempt: str) -> str:
    return f"{folder(batch_id)}/output/{index:05d}-{attempt}.jsonl"


def output_path(batch_id: str, attempt: str) -> str:
    return f"{folder(batch_id)}/output-{attempt}.jsonl"


def result_line(result: dict[str, Any]) -> str:
    """One output line: a ``Tagger.predict`` result as the CLI's ``predict --output json`` prints it."""
    return json.dumps(result, ensure_ascii=False) + "\n"


def read_inputs(path: Path, format: InputFormat, name: str, max_chars: int) -> Iterator[Item]:
    """Each sentence of a batch input, as ``Tagger.predict`` takes it; DataError naming a bad line.

    ``text``: one raw sentence a line. ``jsonl``: one object a line with ``"text"`` (a string) or
    ``"tokens"`` (a list of non-empty strings without surrounding spaces); other keys are ignored.
    Blank lines are skipped in both. A sentence longer than ``max_chars`` (tokens joined by spaces)
    is refused, as in ``POST /predict``.
    """
    # tagdistill.data's line reader: UTF-8 (with a BOM), LF or CRLF, and lines over 1 MiB refused,
    # with the same messages as dataset uploads
    for number, line in numbered_lines(path, name):
        if not line.strip():
            continue
        item = line if format == "text" else _json_item(line, name, number)
        size = len(item) if isinstance(item, str) else sum(len(t) + 1 for t in item) - 1
        if size > max_chars:
            raise DataError(name, number, f"{size:,} characters; at most {max_chars:,} a sentence")
        yield item


def _json_item(line: str, name: str, number: int) -> Item:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as e:
        raise DataError(name, number, f"not JSON: {e.msg} at column {e.colno}") from None
    except (RecursionError, ValueError):  # nested too deep; an integer of over 4,300 digits
        raise DataError(name, number, 'not a sentence: expected {"text": ...} or {"tokens": [...]}') from None
    if not isinstance(record, dict) or ("text" in record) == ("tokens" in record):
        raise DataError(name, number, 'expected an object with one of "text" or "tokens"')
    item = record.get("text", record.get("tokens"))
    if "text" in record and not (isinstance(item, str) and item.strip()):
        raise DataError(name, number, '"text" must be a non-empty string')
    if "tokens" in record and not (
        isinstance(item, list) and item
        and all(isinstance(t, str) and t.strip() and t == t.strip() for t in item)
    ):
        raise DataError(name, number, '"tokens" must be a non-empty list of non-empty strings without '
                                      "surrounding spaces")
    try:  # json reads "\ud800" as a lone surrogate, which fails later wherever it is encoded
        "".join([item] if isinstance(item, str) else item).encode()
    except UnicodeEncodeError:
        raise DataError(name, number, "a lone surrogate (such as \\ud800) is not text") from None
    return item


def split_input(
    path: Path, format: InputFormat, name: str, max_chars: int, chunk_size: int, out: Path
) -> tuple[int, int]:
    """Check every line of ``path`` and write its sentences as chunk files ``out/00000.jsonl``, ...
    (``chunk_size`` sentences each); (sentences, chunks). DataError for a bad line or no sentence,
    before the caller starts any work."""
    out.mkdir(parents=True, exist_ok=True)
    sentences, chunk = 0, None
    try:
        for item in read_inputs(path, format, name, max_chars):
            if sentences % chunk_size == 0:
                if chunk is not None:
                    chunk.close()
                chunk = (out / f"{sentences // chunk_size:05d}.jsonl").open("w", encoding="utf-8")
            chunk.write(json.dumps(item, ensure_ascii=False) + "\n")
            sentences += 1
    finally:
        if chunk is not None:
            chunk.close()
    if not sentences:
        raise DataError(name, None, "no sentences in the file")
    return sentences, -(-sentences // chunk_size)


# --- the queue -----------------------------------------------------------------------------------


def batch_queue(settings: Settings) -> str:
    """The queue of the batch tasks: the CPU workers' (tagging with a student needs no GPU)."""
    return settings.cpu_queue or settings.queue


def enqueue_batch(celery: Celery, batch_id: str, chunks: int, queue: str) -> None:
    """Send the batch's chord by task names: ``TAG_CHUNK`` for each chunk, then ``MERGE_BATCH`` once
    all have returned. Raises when the broker is unreachable."""
    header = [celery.signature(TAG_CHUNK, args=[batch_id, i], queue=queue) for i in range(chunks)]
    chord(header, app=celery)(celery.signature(MERGE_BATCH, args=[batch_id], queue=queue))


def chord_note(batch_id: str, chunks: int) -> str:
    """The outbox's note of a new batch's chord."""
    return f"chord {batch_id} {chunks}"


def chunk_note(batch_id: str, index: int) -> str:
    """The outbox's note of a chunk sent again, outside the chord."""
    return f"chunk {batch_id} {index}"


def merge_note(batch_id: str) -> str:
    """The outbox's note of a merge sent outside the chord."""
    return f"merge {batch_id}"


def send_note(celery: Celery, note: str, queue: str) -> None:
    """Send the message an outbox note names (``chord_note``, ``chunk_note``, ``merge_note``). Raises when
    the broker is unreachable; the caller then leaves the note for the sweep."""
    kind, batch_id, *number = note.split(" ")
    if kind == "chord":
        enqueue_batch(celery, batch_id, int(number[0]), queue)
    elif kind == "chunk":
        celery.send_task(TAG_CHUNK, args=[batch_id, int(number[0])], queue=queue)
    else:  # the merge task's first argument is the chord's results, which it does not read
        celery.send_task(MERGE_BATCH, args=[[], batch_id], queue=queue)


# --- records -------------------------------------------------------------------------------------


class Batches:
    """Batch records in Redis, on a Store's client and key prefix."""

    def __init__(self, store: Store) -> None:
        self.store, self.r, self.p = store, store.r, store.p
        self.outbox = Outbox(self.r, self.p + "batches:outbox")

    def _key(self, batch_id: str) -> str:
        return self.p + f"batch:{batch_id}"

    def _index(self, owner: str | None = None, active: bool = False) -> str:
        mine = f"owner:{owner}:" if owner is not None else ""
        return self.p + mine + "batches" + (":active" if active else "")

    def new_id(self) -> str:
        return self.store.new_id("bat")

    def check_quota(self, owner: str | None, max_active: int, client: redis.Redis | None = None) -> None:
        """QuotaExceeded when ``owner`` has ``max_active`` batches queued or running."""
        if (client or self.r).zcard(self._index(owner, active=True)) >= max_active:
            raise QuotaExceeded(f"{max_active} batch jobs queued or running already; wait for one to end", 30)

    def create(self, batch: BatchJob, max_active: int) -> BatchJob:
        """Write the new queued ``batch``; QuotaExceeded when its owner has ``max_active`` batches queued
        or running (counted in the same transaction, so concurrent requests cannot overshoot). Its chord
        is noted in the outbox in the same transaction: the caller sends it (``send_note``), then says so
        (``sent``)."""
        batch = batch.model_copy(update={"seq": self.store.next_seq()})
        active = self._index(batch.owner, active=True)

        def tx(pipe: redis.client.Pipeline) -> None:
            self.check_quota(batch.owner, max_active, pipe)
            pipe.multi()
            pipe.hset(self._key(batch.id), mapping=encode_fields(batch.model_dump(mode="json")))
            for who in {None, batch.owner}:
                pipe.zadd(self._index(who), {batch.id: batch.seq})
                pipe.zadd(self._index(who, active=True), {batch.id: batch.seq})
            self.outbox.note(pipe, chord_note(batch.id, batch.chunks))

        self.r.transaction(tx, active)
        return batch

    def get(self, batch_id: str, only: str | None = None) -> BatchJob:
        raw = self.r.hgetall(self._key(batch_id))
        batch = BatchJob.model_validate(decode_fields(raw)) if raw else None
        if batch is None or (only is not None and batch.owner != only):
            raise NotFound(f"no batch job {batch_id!r}", "batch_job_not_found")
        return batch

    def list_batches(
        self, cursor: str | None, limit: int, only: str | None = None
    ) -> tuple[list[BatchJob], str | None]:
        ids, next_cursor = self.store.page(self._index(only), cursor, limit)
        return self.store.many("batch:", ids, BatchJob), next_cursor

    def transition(
        self,
        batch_id: str,
        allowed: set[str],
        status: str | None,
        check: Callable[[BatchJob, redis.client.Pipeline], bool] | None = None,
        also: Callable[[BatchJob, redis.client.Pipeline], dict[str, Any]] | None = None,
        **fields: Any,
    ) -> tuple[BatchJob, bool]:
        """Set ``fields`` (and move to ``status``) if the batch's status is in ``allowed`` and
        ``check(batch, pipe)`` holds, in one transaction; ``also(batch, pipe)`` (called after MULTI)
        queues more writes and returns more fields. The batch afterwards and whether it changed."""
        key = self._key(batch_id)

        def tx(pipe: redis.client.Pipeline) -> tuple[BatchJob, bool]:
            raw = pipe.hgetall(key)
            if not raw:
                raise NotFound(f"no batch job {batch_id!r}", "batch_job_not_found")
            batch = BatchJob.model_validate(decode_fields(raw))
            if batch.status not in allowed or (check is not None and not check(batch, pipe)):
                return batch, False
            now = utcnow()
            changes: dict[str, Any] = {**fields, "updated_at": now}
            if status is not None and status != batch.status:
                changes["status"] = status
                if status in TERMINAL:
                    changes["finished_at"] = now
            pipe.multi()
            if also is not None:
                changes.update(also(batch, pipe))
            pipe.hset(key, mapping=encode_fields(changes))
            if status in TERMINAL:
                for who in {None, batch.owner}:
                    pipe.zrem(self._index(who, active=True), batch_id)
            return batch.model_copy(update=changes), True

        return self.r.transaction(tx, key, key + ":chunks", key + ":running", value_from_callable=True)

    def start_chunk(self, batch_id: str, index: int, worker: str, delivery: str) -> bool:
        """Claim chunk ``index`` for ``delivery`` (the task's id) on ``worker``: whether to tag it now.

        Yes when the batch is queued or running, no cancel was asked for, no attempt has finished the
        chunk, and no other delivery is tagging it: the chunk is noted running on none, or was sent
        again by the sweep (REQUEUED), or is noted on this very delivery (Celery gives a message back,
        same id, when its pool process is killed). So a message sent twice (a chord sent again by the
        sweep, a chunk whose sender died after its send) is tagged once. The first chunk moves the batch
        to running. The claim notes the chunk running on ``worker``: ``lost_chunks`` finds it if the
        worker dies."""
        chunks, running = self._key(batch_id) + ":chunks", self._key(batch_id) + ":running"

        def free(batch: BatchJob, pipe: redis.client.Pipeline) -> bool:
            if batch.cancel_requested or pipe.hexists(chunks, str(index)):
                return False
            raw = pipe.hget(running, str(index))
            entry = json.loads(raw) if raw else None
            return entry is None or entry["worker"] == REQUEUED or entry.get("delivery") == delivery

        def claim(batch: BatchJob, pipe: redis.client.Pipeline) -> dict[str, Any]:
            pipe.hset(running, str(index), json.dumps({"worker": worker, "delivery": delivery,
                                                       "since": time.time()}))
            return {"started_at": utcnow()} if batch.status == "queued" else {}

        return self.transition(batch_id, {"queued", "running"}, "running", check=free, also=claim)[1]

    def lost_chunks(self, alive: set[str], timeout_s: float) -> list[tuple[str, int]]:
        """(batch id, chunk index) of each chunk noted running on a worker not in ``alive`` for over
        ``timeout_s``: its worker died whole (a pool process killed alone gives its chunk back to the
        queue itself), and the chunk's message waits for the broker's visibility timeout (hours).
        Each is marked requeued in a transaction, so of several sweepers one sends it again, and noted
        in the outbox in that transaction (``chunk_note``): the caller sends it, then says so (``sent``).
        A chunk marked requeued is the outbox's from then on (``unsent``), never this method's again."""
        lost = []
        for batch_id in self.r.zrange(self._index(active=True), 0, -1):
            key = self._key(batch_id) + ":running"
            for index, raw in self.r.hgetall(key).items():
                entry = json.loads(raw)
                if entry["worker"] in alive | {REQUEUED} or time.time() - entry["since"] < timeout_s:
                    continue
                if self._mark_requeued(batch_id, index, raw):
                    lost.append((batch_id, int(index)))
        return lost

    def _mark_requeued(self, batch_id: str, index: str, seen: str) -> bool:
        key, running = self._key(batch_id), self._key(batch_id) + ":running"

        def tx(pipe: redis.client.Pipeline) -> bool:
            if pipe.hget(running, index) != seen:
                return False  # started again, or done, meanwhile; or another sweeper took it
            resent = json.loads(pipe.hget(key, "resent") or "0")
            pipe.multi()
            pipe.hset(running, index, json.dumps({"worker": REQUEUED, "since": time.time()}))
            pipe.hset(key, "resent", json.dumps(resent + 1))
            self.outbox.note(pipe, chunk_note(batch_id, int(index)))
            return True

        return self.r.transaction(tx, key, running, value_from_callable=True)

    def chunk_done(
        self, batch_id: str, index: int, attempt: str, worker: str, sentences: int, words: int, seconds: float
    ) -> BatchJob | None:
        """Record that ``attempt`` tagged chunk ``index`` (the first attempt to finish it is the one that
        counts) and add to the progress; the batch afterwards, or None when not recorded (done already,
        or the batch ended).

        The chunk that completes a batch of which a chunk was sent again (``resent``) notes the merge in
        the outbox in the same transaction (``merge_note``): that chunk's message is outside the chord,
        whose own count then never completes, so the caller sends the merge, then says so (``sent``)."""
        chunks = self._key(batch_id) + ":chunks"
        done = {"attempt": attempt, "worker": worker, "sentences": sentences, "words": words,
                "seconds": round(seconds, 3)}

        def first(batch: BatchJob, pipe: redis.client.Pipeline) -> bool:
            return not batch.cancel_requested and not pipe.hexists(chunks, str(index))

        def progress(batch: BatchJob, pipe: redis.client.Pipeline) -> dict[str, Any]:
            pipe.hset(chunks, str(index), json.dumps(done))
            pipe.hdel(self._key(batch_id) + ":running", str(index))
            words_done = batch.words_done + words
            elapsed = (utcnow() - batch.started_at).total_seconds() if batch.started_at else 0
            if batch.resent and batch.chunks_done + 1 == batch.chunks:
                self.outbox.note(pipe, merge_note(batch_id))
            return {
                "chunks_done": batch.chunks_done + 1, "sentences_done": batch.sentences_done + sentences,
                "words_done": words_done,
                "words_per_second": round(words_done / elapsed, 1) if elapsed else None,
                "workers": {**batch.workers, worker: batch.workers.get(worker, 0) + 1},
            }

        after, recorded = self.transition(batch_id, {"running"}, None, check=first, also=progress)
        return after if recorded else None

    def sent(self, note: str) -> None:
        """The message of the outbox's ``note`` is on its queue: the note goes."""
        self.outbox.sent(note)

    def unsent(self, older_than_s: float) -> list[str]:
        """The outbox's notes over ``older_than_s`` old whose message is still wanted, each taken by one
        sweeper (``Outbox.due``): a chord while its batch is queued, a chunk while it is noted REQUEUED
        (neither started nor done since) in a running batch, a merge while its batch is running with every
        chunk done. Others are dropped (the batch moved on, ended or is gone)."""

        def wanted(pipe: redis.client.Pipeline, note: str) -> bool | None:
            kind, batch_id, *number = note.split(" ")
            key = self._key(batch_id)
            raw = pipe.hmget(key, ["status", "chunks", "chunks_done"])
            status, chunks, chunks_done = (json.loads(v) if v else None for v in raw)
            if kind == "chord":
                return status == "queued" or None
            if kind == "chunk":
                entry = pipe.hget(key + ":running", number[0])
                return (status == "running" and entry is not None
                        and json.loads(entry)["worker"] == REQUEUED) or None
            return (status == "running" and chunks_done == chunks) or None

        def keys(note: str) -> list[str]:
            key = self._key(note.split(" ")[1])
            return [key, key + ":running"]

        return [note for note, _ in self.outbox.due(older_than_s, wanted, keys)]

    def attempts(self, batch_id: str) -> dict[int, str]:
        """Chunk index -> the attempt whose output counts, for every finished chunk."""
        raw = self.r.hgetall(self._key(batch_id) + ":chunks")
        return {int(i): json.loads(v)["attempt"] for i, v in raw.items()}

    def succeed(self, batch_id: str, output: str, output_bytes: int) -> bool:
        """End the batch ``succeeded`` with ``output`` (relative path) if it is running, every chunk is
        done and no cancel was asked for; whether it did (one merge ends a batch, never two)."""

        def complete(batch: BatchJob, _: redis.client.Pipeline) -> bool:
            return not batch.cancel_requested and batch.chunks_done == batch.chunks

        def rate(batch: BatchJob, _: redis.client.Pipeline) -> dict[str, Any]:
            elapsed = (utcnow() - batch.started_at).total_seconds() if batch.started_at else 0
            return {"words_per_second": round(batch.words_done / elapsed, 1) if elapsed else None}

        done = {"output": output, "output_bytes": output_bytes}
        return self.transition(batch_id, {"running"}, "succeeded", check=complete, also=rate, **done)[1]

    def fail(self, batch_id: str, error: str) -> BatchJob:
        """End a queued or running batch ``failed`` with ``error``; one that ended already stays as it is."""
        return self.transition(batch_id, {"queued", "running"}, "failed", error=error)[0]

    def cancel(self, batch_id: str, only: str | None = None) -> BatchJob:
        """Cancel a queued or running batch at once: chunks not started are skipped, running ones stop at
        their next piece, and no merge ends it. Conflict when it has ended already."""
        self.get(batch_id, only)  # NotFound for someone else's
        batch, changed = self.transition(batch_id, {"queued", "running"}, "cancelled", cancel_requested=True)
        if not changed:
            raise Conflict(f"batch job {batch_id} already {batch.status}", "batch_job_finished")
        return batch

    def delete(self, batch_id: str, artifacts: ArtifactStore, only: str | None = None) -> None:
        """Remove an ended batch: its files (input chunks, outputs) from the store, then its record.
        Conflict while it is queued or running (cancel it first): its chunks would write files again.

        An ended batch never changes status again, so the check holds while the files go; files first,
        so that a store that fails leaves the record, and the DELETE can be repeated. A chunk task still
        finishing a cancelled batch removes the file it wrote when it finds the batch ended or gone."""
        batch = self.get(batch_id, only)
        if batch.status not in TERMINAL:
            msg = (f"batch job {batch_id} is {batch.status}: cancel it first "
                   f"(POST /batch-jobs/{batch_id}/cancel)")
            raise Conflict(msg, "batch_job_active")
        artifacts.delete(folder(batch_id))
        key = self._key(batch_id)
        with self.r.pipeline() as pipe:
            pipe.delete(key, key + ":chunks", key + ":running")
            for who in {None, batch.owner}:
                pipe.zrem(self._index(who), batch_id)
                pipe.zrem(self._index(who, active=True), batch_id)
            pipe.execute()

    def stopped(self, batch_id: str) -> bool:
        """Whether the batch's work should stop (cancelled, failed, or gone): one cheap read."""
        status, cancel = self.r.hmget(self._key(batch_id), ["status", "cancel_requested"])
        return status is None or json.loads(status) in TERMINAL or bool(cancel and json.loads(cancel))
