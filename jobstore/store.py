"""Every Redis key of the service, owned by one class.

Records are Redis hashes with one JSON-encoded value per field, so progress updates touch
only their own fields. Keys, under ``settings.key_prefix`` (``p``)::

    p seq                        counter: creation order of datasets, jobs and models
    p dataset:<id>               hash   Dataset          p datasets       zset id -> seq
    p dataset:<id>:jobs          set    unfinished jobs that read the dataset (DELETE waits for none)
    p job:<id>                   hash   Job              p jobs           zset id -> seq
    p jobs:<status>              zset   id -> seq, one per status (the listing filter)
    p job:<id>:events            list   Event JSON, oldest first
    p model:<id>                 hash   Model            p models         zset id -> seq
    p model:<id>:aliases         set    ["<owner>", "<alias>"] JSON of each alias on the model
    p aliases                    hash   alias name -> Alias JSON, on a service without keys
    p idem:<key>                 string "<job id> <body fingerprint>", expires after idempotency_ttl_s
    p idem:<owner>:<key>         the same for a job submitted with an API key (keys are per owner)
    p owner:<owner>:datasets     zset   the owner's datasets (likewise :jobs, :jobs:<status>, :models)
    p owner:<owner>:aliases      hash   the owner's aliases
    p outbox                     zset   job id -> when it was queued (``create_job``, ``hand_off``, a requeue
                                        of ``reap_stale``), until its task is said sent (``sent``): what
                                        the sweep sends again (``unsent``; ``worker/sweep.py`` says why).
                                        An ``Outbox``, as ``p batches:outbox`` (``jobstore/batches.py``)
    p workers                    zset   worker name -> last seen (unix time)
    p worker:<name>              string worker info JSON, expires after heartbeat_timeout_s

Status changes are optimistic transactions (WATCH/MULTI), so a cancel and a worker that
claims the job, or a DELETE of a dataset and a new job on it, cannot both win.

Lists filter by tag and name (``tag=``, ``q=``) by reading the ``name`` and ``tags`` fields of
the listed records, newest first: at most ``SCAN_LIMIT`` records a request, no index to keep.

Records carry the ``owner`` of the API key that made them. Readers pass ``only=<owner>`` to see
only that owner's records (a record of someone else is NotFound, like a missing one, so ids do
not leak) or ``only=None`` to see all (an admin key, or a service without keys).
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, TypeVar

import redis
from pydantic import BaseModel
from pydantic_core import to_jsonable_python

from jobstore.records import (
    MODEL_ID_PREFIX,
    PRODUCTION,
    TERMINAL,
    Alias,
    Dataset,
    Event,
    Job,
    Model,
    WorkerInfo,
    utcnow,
)
from tagdistill.config import JobConfig

R = TypeVar("R", bound=BaseModel)
T = TypeVar("T")

SCAN_LIMIT = 5000  # records a filtered list reads at most per request (then it returns a cursor)


class NotFound(LookupError):
    """No record with that id; ``code`` says which kind, for the API's error body ("job_not_found")."""

    def __init__(self, message: str, code: str = "not_found") -> None:
        super().__init__(message)
        self.code = code


class Conflict(RuntimeError):
    """The record's state forbids the request; ``code`` says which, for the API ("job_finished")."""

    def __init__(self, message: str, code: str = "conflict") -> None:
        super().__init__(message)
        self.code = code


class IdempotencyMismatch(ValueError):
    """An Idempotency-Key was sent again with a different body."""


class QuotaExceeded(RuntimeError):
    """An owner's quota is used up; ``retry_after_s`` says when to try again (an estimate)."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


def encode_fields(fields: dict[str, Any]) -> dict[str, str]:
    return {k: json.dumps(to_jsonable_python(v)) for k, v in fields.items()}


def decode_fields(raw: dict[str, str]) -> dict[str, Any]:
    return {k: json.loads(v) for k, v in raw.items()}


def _must_see(pipe: redis.client.Pipeline, key: str, only: str | None, missing: NotFound) -> str | None:
    """The owner of the record at ``key``; ``missing`` raised unless it exists and, with ``only``, is that
    owner's (inside a transaction: the read is watched)."""
    raw = pipe.hget(key, "owner")
    owner = json.loads(raw) if raw is not None else None
    if raw is None or (only is not None and owner != only):
        raise missing
    return owner


def _dump(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(mode="json")


@dataclass(frozen=True)
class Match:
    """What a filtered list keeps: records with the tag ``tag`` and ``q`` in their name (any case)."""

    tag: str | None = None
    q: str | None = None

    def __bool__(self) -> bool:
        return self.tag is not None or bool(self.q)

    def __call__(self, name: str | None, tags: list[str]) -> bool:
        return (self.tag is None or self.tag in tags) and (
            not self.q or (name is not None and self.q.casefold() in name.casefold())
        )


@dataclass
class Reaped:
    """What ``Store.reap_stale`` did: jobs put back in the queue, and jobs failed for good."""

    requeued: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


class Outbox:
    """Messages whose send is in doubt: a zset of notes (a string that names the message) -> when noted.

    A state change that makes a message due notes it in its own transaction (``note``), and the sender
    removes the note once the message is on its queue (``sent``). A process that dies between the two
    leaves the note, and a sweep sends again what ``due`` returns. ``worker/sweep.py`` says why this
    rather than sending first, or a rule on the records alone. Each kind of record has an outbox of its
    own (``p outbox`` for jobs, ``p batches:outbox`` for batches); the kind says what a note still needs.
    """

    def __init__(self, client: redis.Redis, key: str) -> None:
        self.r, self.key = client, key

    def note(self, pipe: redis.client.Pipeline, member: str) -> None:
        """Note ``member`` as still to send, in the transaction ``pipe`` (after its MULTI)."""
        pipe.zadd(self.key, {member: time.time()})

    def sent(self, member: str) -> None:
        """``member``'s message is on its queue: the note goes."""
        self.r.zrem(self.key, member)

    def due(
        self,
        older_than_s: float,
        still: Callable[[redis.client.Pipeline, str], T | None],
        watch: Callable[[str], list[str]],
    ) -> list[tuple[str, T]]:
        """(note, what ``still`` said) of each note over ``older_than_s`` old that is still wanted: its
        sender died before the send (or is that slow; a second message must then be harmless).

        ``still(pipe, member)`` reads the records (the keys ``watch(member)``, watched) and says what the
        message needs, or None when it is no longer wanted (the record moved on): that note is dropped.
        Each note is taken in a transaction that renews it, so of several sweepers one sends it, and it is
        sent again after another ``older_than_s`` if that send is lost too.
        """
        taken: list[tuple[str, T]] = []
        for member in self.r.zrangebyscore(self.key, "-inf", time.time() - older_than_s):

            def tx(pipe: redis.client.Pipeline, member: str = member) -> T | None:
                noted = pipe.zscore(self.key, member)
                if noted is None or noted > time.time() - older_than_s:
                    return None  # sent meanwhile, or another sweeper took it
                what = still(pipe, member)
                pipe.multi()
                if what is None:
                    pipe.zrem(self.key, member)
                else:
                    pipe.zadd(self.key, {member: time.time()})
                return what

            what = self.r.transaction(tx, self.key, *watch(member), value_from_callable=True)
            if what is not None:
                taken.append((member, what))
        return taken


class Store:
    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.r = client
        self.p = prefix
        self.outbox = Outbox(client, prefix + "outbox")  # of jobs' tasks

    @classmethod
    def from_url(cls, url: str, prefix: str, timeout_s: float = 10.0) -> Store:
        client = redis.Redis.from_url(
            url, decode_responses=True, socket_timeout=timeout_s,
            socket_connect_timeout=min(3.0, timeout_s), health_check_interval=30,
        )
        return cls(client, prefix)

    def ping(self) -> bool:
        try:
            return bool(self.r.ping())
        except redis.RedisError:
            return False

    def new_id(self, kind: str) -> str:
        return f"{kind}_{secrets.token_hex(6)}"

    def next_seq(self) -> int:
        """The next number of the one sequence that orders every record's list (and pages it)."""
        return int(self.r.incr(self.p + "seq"))

    def _read(self, key: str, model: type[R], only: str | None = None) -> R | None:
        raw = self.r.hgetall(key)
        if not raw:
            return None
        record = model.model_validate(decode_fields(raw))
        return None if only is not None and getattr(record, "owner", None) != only else record

    def _index(self, kind: str, owner: str | None = None, status: str | None = None) -> str:
        """The zset listing ``kind`` (datasets, jobs, models): all of them, or one owner's."""
        mine = f"owner:{owner}:" if owner is not None else ""
        return self.p + mine + kind + (f":{status}" if status else "")

    def page(self, index: str, cursor: str | None, limit: int) -> tuple[list[str], str | None]:
        """Ids newest first, after ``cursor`` (the seq of the last id of the previous page)."""
        if cursor is not None and not cursor.isdigit():
            raise ValueError(f"cursor {cursor!r} is not one this API returned")
        top = f"({cursor}" if cursor is not None else "+inf"
        rows = self.r.zrevrangebyscore(index, top, "-inf", start=0, num=limit + 1, withscores=True)
        ids = [member for member, _ in rows[:limit]]
        next_cursor = str(int(rows[limit - 1][1])) if len(rows) > limit else None
        return ids, next_cursor

    def _find(
        self, index: str, prefix: str, match: Match, cursor: str | None, limit: int
    ) -> tuple[list[str], str | None]:
        """Like ``_page``, of the ids whose record ``match``es; a page may be short (even empty) with a
        cursor when ``SCAN_LIMIT`` records were read before ``limit`` matched."""
        if not match:
            return self.page(index, cursor, limit)
        if cursor is not None and not cursor.isdigit():
            raise ValueError(f"cursor {cursor!r} is not one this API returned")
        top, found, read = f"({cursor}" if cursor is not None else "+inf", [], 0
        while read < SCAN_LIMIT:
            rows = self.r.zrevrangebyscore(index, top, "-inf", start=0, num=min(500, SCAN_LIMIT - read),
                                           withscores=True)
            if not rows:
                return [i for i, _ in found[:limit]], None
            pipe = self.r.pipeline(transaction=False)
            for member, _ in rows:
                pipe.hmget(self.p + prefix + member, ["name", "tags"])
            for (member, seq), (name, tags) in zip(rows, pipe.execute(), strict=True):
                if match(json.loads(name) if name else None, json.loads(tags) if tags else []):
                    found.append((member, seq))
                    if len(found) > limit:  # one more than a page: there is a next one
                        return [i for i, _ in found[:limit]], str(int(found[limit - 1][1]))
            read += len(rows)
            top = f"({int(rows[-1][1])}"
        return [i for i, _ in found], top[1:]  # every record down to the last one read was looked at

    def many(self, prefix: str, ids: Iterable[str], model: type[R]) -> list[R]:
        """The records ``prefix + id`` of ``ids`` in one round trip, in order; missing ones left out."""
        pipe = self.r.pipeline(transaction=False)
        for i in ids:
            pipe.hgetall(self.p + prefix + i)
        return [model.model_validate(decode_fields(raw)) for raw in pipe.execute() if raw]

    # datasets

    def add_dataset(self, ds: Dataset) -> None:
        seq = self.next_seq()
        with self.r.pipeline() as pipe:
            pipe.hset(self.p + f"dataset:{ds.id}", mapping=encode_fields(_dump(ds)))
            pipe.zadd(self._index("datasets"), {ds.id: seq})
            if ds.owner is not None:
                pipe.zadd(self._index("datasets", ds.owner), {ds.id: seq})
            pipe.execute()

    def count_upload(self, owner: str | None, limit: int) -> None:
        """Count one upload of ``owner`` in this hour; QuotaExceeded past ``limit`` in the hour."""
        hour, into = divmod(int(time.time()), 3600)
        key = self.p + f"uploads:{owner or ''}:{hour}"
        with self.r.pipeline() as pipe:
            count, _ = pipe.incr(key).expire(key, 3600).execute()
        if count > limit:
            raise QuotaExceeded(f"{limit} uploads in this hour already", 3600 - into)

    def get_dataset(self, dataset_id: str, only: str | None = None) -> Dataset:
        ds = self._read(self.p + f"dataset:{dataset_id}", Dataset, only)
        if ds is None:
            raise NotFound(f"no dataset {dataset_id!r}", "dataset_not_found")
        return ds

    def list_datasets(
        self, cursor: str | None, limit: int, only: str | None = None
    ) -> tuple[list[Dataset], str | None]:
        ids, next_cursor = self.page(self._index("datasets", only), cursor, limit)
        return self.many("dataset:", ids, Dataset), next_cursor

    def delete_dataset(self, dataset_id: str, only: str | None = None) -> None:
        """Forget a dataset; Conflict while an unfinished job reads it."""
        key, users = self.p + f"dataset:{dataset_id}", self.p + f"dataset:{dataset_id}:jobs"

        def tx(pipe: redis.client.Pipeline) -> None:
            owner = _must_see(pipe, key, only, NotFound(f"no dataset {dataset_id!r}", "dataset_not_found"))
            busy = sorted(pipe.smembers(users))
            if busy:
                msg = f"dataset {dataset_id} is used by unfinished job(s) {', '.join(busy)}"
                raise Conflict(msg, "dataset_in_use")
            pipe.multi()
            pipe.delete(key)
            pipe.zrem(self._index("datasets"), dataset_id)
            if owner is not None:
                pipe.zrem(self._index("datasets", owner), dataset_id)

        self.r.transaction(tx, key, users)

    # jobs

    def _note_unsent(self, pipe: redis.client.Pipeline, job: Job) -> None:
        """Note in the outbox, in the transaction that queues ``job``, that its task is still to be sent: a
        process that dies before the send would otherwise leave the job queued with no message."""
        self.outbox.note(pipe, job.id)

    def create_job(
        self,
        dataset_id: str,
        config: JobConfig,
        idempotency_key: str | None,
        fingerprint: str,
        ttl_s: int,
        owner: str | None = None,
        max_active: int | None = None,
        name: str | None = None,
        tags: list[str] | None = None,
    ) -> tuple[Job, bool]:
        """A new queued job, or (with an Idempotency-Key seen before) the job it made; True when new. A new
        one is noted in the outbox: the caller sends its task, then says so with ``sent``.

        Idempotency keys are per owner: another owner's key never returns this owner's job. With
        ``max_active``, QuotaExceeded when the owner already has that many jobs queued or running
        (counted in the same transaction, so concurrent requests cannot overshoot).
        """
        ds_key = self.p + f"dataset:{dataset_id}"
        idem = self.p + "idem:" + (f"{owner}:" if owner is not None else "") + str(idempotency_key)
        now = utcnow()
        job = Job(
            id=self.new_id("job"), status="queued", dataset_id=dataset_id, owner=owner, config=config,
            name=name, tags=tags or [], created_at=now, updated_at=now, seq=self.next_seq(),
        )

        def tx(pipe: redis.client.Pipeline) -> Job | None:
            if idempotency_key is not None:
                seen = pipe.get(idem)
                if seen is not None:
                    job_id, _, seen_fingerprint = seen.partition(" ")
                    if seen_fingerprint != fingerprint:
                        raise IdempotencyMismatch(
                            f"Idempotency-Key {idempotency_key!r} was used for job {job_id} "
                            "with a different body"
                        )
                    return None
            if not pipe.exists(ds_key):
                raise NotFound(f"no dataset {dataset_id!r}", "dataset_not_found")
            if max_active is not None and sum(pipe.zcard(k) for k in active) >= max_active:
                raise QuotaExceeded(f"{max_active} jobs queued or running already; wait for one to end", 30)
            pipe.multi()
            pipe.hset(self.p + f"job:{job.id}", mapping=encode_fields(_dump(job)))
            for who in {None, owner}:
                pipe.zadd(self._index("jobs", who), {job.id: job.seq})
                pipe.zadd(self._index("jobs", who, "queued"), {job.id: job.seq})
            pipe.sadd(self.p + f"dataset:{dataset_id}:jobs", job.id)
            if idempotency_key is not None:
                pipe.set(idem, f"{job.id} {fingerprint}", ex=ttl_s)
            self._event(pipe, job.id, "status", {"status": "queued"})
            self._note_unsent(pipe, job)
            return job

        active = [self._index("jobs", owner, status) for status in ("queued", "running")]
        watched = [ds_key, *active] + ([idem] if idempotency_key is not None else [])
        created = self.r.transaction(tx, *watched, value_from_callable=True)
        if created is not None:
            return created, True
        job_id = self.r.get(idem).partition(" ")[0]
        return self.get_job(job_id), False

    def get_job(self, job_id: str, only: str | None = None) -> Job:
        job = self._read(self.p + f"job:{job_id}", Job, only)
        if job is None:
            raise NotFound(f"no job {job_id!r}", "job_not_found")
        return job

    def owns(self, kind: str, record_id: str, owner: str) -> bool:
        """Whether the job or dataset (``kind`` "job" | "dataset") exists and is ``owner``'s."""
        try:
            (self.get_job if kind == "job" else self.get_dataset)(record_id, owner)
        except NotFound:
            return False
        return True

    def list_jobs(
        self, status: str | None, cursor: str | None, limit: int, only: str | None = None,
        match: Match = Match(),
    ) -> tuple[list[Job], str | None]:
        ids, next_cursor = self._find(self._index("jobs", only, status), "job:", match, cursor, limit)
        return self.many("job:", ids, Job), next_cursor

    def relabel(self, kind: str, record_id: str, only: str | None = None, **changes: Any) -> Job | Model:
        """Set the ``name`` and ``tags`` given in ``changes`` of the job or model (``kind`` "job" |
        "model"); the record afterwards. Nothing else of it changes, whatever its status."""
        record_type = Job if kind == "job" else Model
        key = self.p + f"{kind}:{record_id}"

        def tx(pipe: redis.client.Pipeline) -> Job | Model:
            raw = pipe.hgetall(key)
            record = record_type.model_validate(decode_fields(raw)) if raw else None
            if record is None or (only is not None and record.owner != only):
                # watched: a deleted one is not half written again
                raise NotFound(f"no {kind} {record_id!r}", f"{kind}_not_found")
            pipe.multi()
            pipe.hset(key, mapping=encode_fields(changes))
            return record.model_copy(update=changes)

        return self.r.transaction(tx, key, value_from_callable=True)

    def transition(
        self,
        job_id: str,
        allowed: Iterable[str],
        status: str | None,
        *,
        check: Callable[[Job], bool] | None = None,
        note: dict[str, Any] | None = None,
        next_attempt: bool = False,
        also: Callable[[redis.client.Pipeline, Job], None] | None = None,
        **fields: Any,
    ) -> tuple[Job, bool]:
        """Set ``fields`` (and move to ``status``) if the job's status is in ``allowed`` and
        ``check(job)`` holds, all in one transaction. ``next_attempt`` adds one to ``attempts``;
        ``note`` goes into the status event; ``also(pipe, job)`` adds writes to the same transaction.

        Returns the job as it is afterwards and whether it changed.
        """
        key = self.p + f"job:{job_id}"
        allowed = set(allowed)

        def tx(pipe: redis.client.Pipeline) -> tuple[Job, bool]:
            raw = pipe.hgetall(key)
            if not raw:
                raise NotFound(f"no job {job_id!r}", "job_not_found")
            job = Job.model_validate(decode_fields(raw))
            if job.status not in allowed or (check is not None and not check(job)):
                return job, False
            now = utcnow()
            changes: dict[str, Any] = {**fields, "updated_at": now}
            if next_attempt:
                changes["attempts"] = job.attempts + 1
            if status is not None and status != job.status:
                changes["status"] = status
                if status in TERMINAL:
                    changes["finished_at"] = now
            after = job.model_copy(update=changes)
            pipe.multi()
            pipe.hset(key, mapping=encode_fields(changes))
            if status is not None and status != job.status:
                for who in {None, job.owner}:
                    pipe.zrem(self._index("jobs", who, job.status), job_id)
                    pipe.zadd(self._index("jobs", who, status), {job_id: job.seq})
                if status in TERMINAL:
                    pipe.srem(self.p + f"dataset:{job.dataset_id}:jobs", job_id)
                event = {"status": status, **({"error": fields["error"]} if fields.get("error") else {}),
                         **({"attempt": changes["attempts"]} if next_attempt else {}), **(note or {})}
                self._event(pipe, job_id, "status", event)
            if also is not None:
                also(pipe, job)
            return after, True

        return self.r.transaction(tx, key, value_from_callable=True)

    def claim_job(self, job_id: str, worker: str, part: str | None = None) -> Job | None:
        """Mark a queued job running on ``worker`` as its next attempt; None when it is not queued
        (cancelled, or taken: of two deliveries of a job only one gets it) or, with ``part``, when its
        next part is another (a late delivery of a part that has already run)."""
        now = utcnow()
        after, changed = self.transition(
            job_id, {"queued"}, "running", check=None if part is None else lambda job: job.part == part,
            worker=worker, heartbeat_at=now, next_attempt=True, note={"worker": worker},
        )
        if changed and after.started_at is None:  # the first part's start is the job's
            self.update_job(job_id, started_at=now)
            after.started_at = now
        return after if changed else None

    def hand_off(self, job_id: str, attempt: int, part: str) -> Job | None:
        """Put a running job back in the queue for its next ``part``, while ``attempt`` is its current
        one and no cancel was asked for; None when it was not (the caller ends a cancelled job; one given
        up on is another run's). Noted in the outbox in the same transaction, like a new job: the caller
        sends the part's task, then says so with ``sent``."""
        check = lambda job: job.attempts == attempt and not job.cancel_requested  # noqa: E731
        after, changed = self.transition(
            job_id, {"running"}, "queued", check=check, note={"part": part}, also=self._note_unsent,
            part=part, attempts_before=attempt,
        )
        return after if changed else None

    def sent(self, job_id: str) -> None:
        """The task of the job's queued part is on its queue: the outbox's note goes."""
        self.outbox.sent(job_id)

    def unsent(self, older_than_s: float) -> list[tuple[str, str]]:
        """(job id, part) of each job noted in the outbox over ``older_than_s`` ago and never said sent,
        whose job is still queued: its sender died before the send (or is that slow; a second message is
        harmless, the claim lets one delivery run). Taken as ``Outbox.due`` says (one sweeper sends it);
        notes of jobs no longer queued (claimed, cancelled, failed, gone) are dropped."""

        def queued_part(pipe: redis.client.Pipeline, job_id: str) -> str | None:
            raw = pipe.hmget(self.p + f"job:{job_id}", ["status", "part"])
            status, part = (json.loads(v) if v else None for v in raw)
            return part if status == "queued" else None

        return self.outbox.due(older_than_s, queued_part, lambda job_id: [self.p + f"job:{job_id}"])

    def finish_job(
        self, job_id: str, status: str, attempt: int | None = None, model: Model | None = None, **fields: Any
    ) -> Job:
        """End the job in ``status``; with ``attempt``, only while that attempt is the job's current
        one (a run that was given up on and requeued cannot end the run that replaced it).

        With ``model`` (a succeeded run's), the model record is written in the same transaction, and
        only if no cancel was asked for: a job has at most one model, and a cancelled job none. The
        model takes the job's name and tags as they are then. The
        job as it is afterwards tells whether it ended (its status) or is still running (cancelled).
        """
        if attempt is None:
            return self.transition(job_id, {"queued", "running"}, status, **fields)[0]
        if model is None:
            check = lambda job: job.attempts == attempt  # noqa: E731
            return self.transition(job_id, {"running"}, status, check=check, **fields)[0]
        seq = self.next_seq()
        check = lambda job: job.attempts == attempt and not job.cancel_requested  # noqa: E731
        def also(pipe: redis.client.Pipeline, job: Job) -> None:
            self._write_model(pipe, model.model_copy(update={"name": job.name, "tags": job.tags}), seq)

        fields["model_id"] = model.id
        return self.transition(job_id, {"running"}, status, check=check, also=also, **fields)[0]

    def request_cancel(self, job_id: str) -> Job:
        """Cancel a queued job at once; ask a running one to stop. Conflict when already finished."""
        job, changed = self.transition(job_id, {"queued"}, "cancelled", cancel_requested=True)
        if not changed:
            job, changed = self.transition(job_id, {"running"}, None, cancel_requested=True)
            if changed:
                self.add_event(job_id, "log", {"message": "cancel requested"})
        if not changed and job.status in TERMINAL:
            raise Conflict(f"job {job_id} already {job.status}", "job_finished")
        return job

    def update_job(self, job_id: str, **fields: Any) -> None:
        """Overwrite fields of a job record (progress, metrics): no status change."""
        self.r.hset(self.p + f"job:{job_id}", mapping=encode_fields({**fields, "updated_at": utcnow()}))

    def heartbeat(self, job_id: str, attempt: int | None = None) -> bool:
        """Record that the job's worker is alive; True when the run should stop: a cancel was
        requested, or (with ``attempt``) the job is no longer running as this attempt."""
        key = self.p + f"job:{job_id}"
        cancel, status, attempts = self.r.hmget(key, ["cancel_requested", "status", "attempts"])
        if attempt is not None and (
            status is None or json.loads(status) != "running" or json.loads(attempts or "0") != attempt
        ):
            return True  # given up on (requeued or failed): another attempt owns the job now
        self.r.hset(key, mapping=encode_fields({"heartbeat_at": utcnow()}))
        return bool(cancel and json.loads(cancel))

    def reap_stale(self, timeout_s: float, max_attempts: int = 1) -> Reaped:
        """Running jobs whose worker has not reported for ``timeout_s``: requeued (status
        ``queued``) while they have had fewer than ``max_attempts`` attempts, else failed
        (``cancelled`` when a cancel was requested; listed with the failed).

        Each is one transaction that also checks the heartbeat is still stale, so of several
        sweepers (every worker's main process) one acts. A requeued job is noted in the outbox in its
        transaction, like a new one: the caller sends its task, then says so with ``sent``.
        """
        reaped, limit = Reaped(), time.time() - timeout_s
        for job_id in self.r.zrange(self.p + "jobs:running", 0, -1):
            beat = self.r.hget(self.p + f"job:{job_id}", "heartbeat_at")
            if beat is None or datetime.fromisoformat(json.loads(beat)).timestamp() >= limit:
                continue

            def stale(job: Job) -> bool:
                return job.heartbeat_at is None or job.heartbeat_at.timestamp() < time.time() - timeout_s

            job = self.get_job(job_id)
            silent = time.time() - job.heartbeat_at.timestamp() if job.heartbeat_at else timeout_s
            lost = f"worker {job.worker} lost: no heartbeat for {silent:.0f} s"
            if job.cancel_requested:  # nobody wants another attempt
                _, changed = self.transition(job_id, {"running"}, "cancelled", check=stale, error=lost)
                if changed:
                    reaped.failed.append(job_id)
            elif job.attempts - job.attempts_before < max_attempts:
                tried = job.attempts - job.attempts_before  # of this part
                note = {"attempt": job.attempts, "reason": f"{lost}; requeued for attempt "
                        f"{tried + 1} of {max_attempts}"}
                _, changed = self.transition(
                    job_id, {"running"}, "queued", check=stale, note=note, also=self._note_unsent
                )
                if changed:
                    reaped.requeued.append(job_id)
            else:
                error = f"{lost} (attempt {job.attempts - job.attempts_before} of {max_attempts})"
                _, changed = self.transition(job_id, {"running"}, "failed", check=stale, error=error)
                if changed:
                    reaped.failed.append(job_id)
        return reaped

    # events

    def _event(self, pipe: redis.client.Pipeline, job_id: str, kind: str, data: dict[str, Any]) -> None:
        record = {"time": utcnow().isoformat(), "type": kind, "data": data}
        pipe.rpush(self.p + f"job:{job_id}:events", json.dumps(record))

    def add_event(self, job_id: str, kind: str, data: dict[str, Any]) -> None:
        self._event(self.r, job_id, kind, data)

    def events(self, job_id: str, start: int = 0, limit: int | None = None) -> list[Event]:
        """The job's events from position ``start`` on, at most ``limit`` of them (all: None)."""
        end = -1 if limit is None else start + limit - 1
        rows = self.r.lrange(self.p + f"job:{job_id}:events", start, end)
        return [Event(seq=start + i, **json.loads(row)) for i, row in enumerate(rows)]

    # models

    def add_model(self, model: Model) -> None:
        with self.r.pipeline() as pipe:
            self._write_model(pipe, model, self.next_seq())
            pipe.execute()

    def _write_model(self, pipe: redis.client.Pipeline, model: Model, seq: int) -> None:
        pipe.hset(self.p + f"model:{model.id}", mapping=encode_fields(_dump(model)))
        for who in {None, model.owner}:
            pipe.zadd(self._index("models", who), {model.id: seq})

    def get_model(self, model_id: str, only: str | None = None) -> Model:
        model = self._read(self.p + f"model:{model_id}", Model, only)
        if model is None:
            raise NotFound(f"no model {model_id!r}", "model_not_found")
        return model

    def list_models(
        self, cursor: str | None, limit: int, only: str | None = None, match: Match = Match()
    ) -> tuple[list[Model], str | None]:
        ids, next_cursor = self._find(self._index("models", only), "model:", match, cursor, limit)
        return self.many("model:", ids, Model), next_cursor

    def delete_model(self, model_id: str, only: str | None = None) -> None:
        """Forget a model's record (its files stay in its job's folder); Conflict while an alias
        points to it, so that no alias is left pointing nowhere and none is moved behind its owner."""
        key, held_by = self.p + f"model:{model_id}", self.p + f"model:{model_id}:aliases"

        def tx(pipe: redis.client.Pipeline) -> None:
            owner = _must_see(pipe, key, only, NotFound(f"no model {model_id!r}", "model_not_found"))
            names = sorted({json.loads(member)[1] for member in pipe.smembers(held_by)})
            if names:
                raise Conflict(
                    f"alias {', '.join(repr(n) for n in names)} points to model {model_id}: move it to "
                    "another model (PUT /aliases/<name>) or delete it (DELETE /aliases/<name>) first",
                    "model_has_alias",
                )
            pipe.multi()
            pipe.delete(key)
            for who in {None, owner}:
                pipe.zrem(self._index("models", who), model_id)

        self.r.transaction(tx, key, held_by)

    # aliases: per owner (``owner`` is the caller's, None on a service without keys)

    def set_alias(self, name: str, model_id: str, owner: str | None, only: str | None = None) -> Alias:
        """Point the alias ``name`` of ``owner`` at ``model_id`` (a model ``only`` may see), made or
        moved; the alias afterwards, with the model it pointed to before."""
        key, aliases = self.p + f"model:{model_id}", self._index("aliases", owner)
        member = json.dumps([owner, name])

        def tx(pipe: redis.client.Pipeline) -> Alias:
            _must_see(pipe, key, only, NotFound(f"no model {model_id!r}", "model_not_found"))
            old = pipe.hget(aliases, name)
            before = Alias.model_validate_json(old).model_id if old else None
            alias = Alias(
                name=name, model_id=model_id, owner=owner, updated_at=utcnow(), previous_model_id=before
            )
            pipe.multi()
            pipe.hset(aliases, name, alias.model_dump_json())
            if before is not None and before != model_id:
                pipe.srem(self.p + f"model:{before}:aliases", member)
            pipe.sadd(self.p + f"model:{model_id}:aliases", member)
            return alias

        return self.r.transaction(tx, key, aliases, value_from_callable=True)

    def get_alias(self, name: str, owner: str | None) -> Alias:
        raw = self.r.hget(self._index("aliases", owner), name)
        if raw is None:
            raise NotFound(f"no alias {name!r}", "alias_not_found")
        return Alias.model_validate_json(raw)

    def list_aliases(self, owner: str | None) -> list[Alias]:
        """The owner's aliases by name."""
        raw = self.r.hgetall(self._index("aliases", owner))
        return [Alias.model_validate_json(raw[name]) for name in sorted(raw)]

    def delete_alias(self, name: str, owner: str | None) -> None:
        aliases = self._index("aliases", owner)

        def tx(pipe: redis.client.Pipeline) -> None:
            raw = pipe.hget(aliases, name)
            if raw is None:
                raise NotFound(f"no alias {name!r}", "alias_not_found")
            pipe.multi()
            pipe.hdel(aliases, name)
            held_by = self.p + f"model:{Alias.model_validate_json(raw).model_id}:aliases"
            pipe.srem(held_by, json.dumps([owner, name]))

        self.r.transaction(tx, aliases)

    def model_for(
        self, ref: str | None, owner: str | None, only: str | None = None
    ) -> tuple[Model, str | None]:
        """The model a request names: ``ref`` a model id ("mdl_...") or an alias of ``owner``'s, and
        with no ``ref`` the alias "production" (never "the newest": a new model is served only when
        someone moves the alias onto it). Also the alias used, if any."""
        if ref is not None and ref.startswith(MODEL_ID_PREFIX):
            return self.get_model(ref, only), None
        alias = self.get_alias(ref or PRODUCTION, owner)
        return self.get_model(alias.model_id, only), alias.name

    # workers

    def worker_seen(self, name: str, info: dict[str, Any], ttl_s: float) -> None:
        with self.r.pipeline() as pipe:
            pipe.zadd(self.p + "workers", {name: time.time()})
            pipe.set(self.p + f"worker:{name}", json.dumps(info), ex=max(1, int(ttl_s)))
            pipe.execute()

    def worker_gone(self, name: str) -> None:
        with self.r.pipeline() as pipe:
            pipe.zrem(self.p + "workers", name)
            pipe.delete(self.p + f"worker:{name}")
            pipe.execute()

    def live_workers(self, timeout_s: float) -> list[WorkerInfo]:
        now = time.time()
        self.r.zremrangebyscore(self.p + "workers", "-inf", now - 24 * 3600)  # long gone
        rows = self.r.zrangebyscore(self.p + "workers", now - timeout_s, "+inf", withscores=True)
        infos = self.r.mget([self.p + f"worker:{name}" for name, _ in rows]) if rows else []
        return [
            WorkerInfo(
                name=name, last_seen=datetime.fromtimestamp(seen, timezone.utc), info=json.loads(info or "{}")
            )
            for (name, seen), info in zip(rows, infos, strict=True)
        ]

