"""The sweep for jobs whose worker vanished, and for jobs queued with no message, run by every worker's
main process and nowhere else: the API's reads have no side effects. A lost job is requeued once any
worker is up, and with no worker up there is none to run it anyway.

``Store.reap_stale`` requeues such a job (a transaction, so one sweeper wins) while it has
attempts left, and fails it after ``max_attempts``; the sweeper that requeued it sends its task
again, to the queue of the job's current part (``Job.part``: its teacher part, or its student part
once handed on). The new run resumes from the job folder's last epoch checkpoint (on another
machine: the checkpoint the lost run pushed to the artifact store). A redelivery of the old
task (Celery's ``acks_late``) finds the job not ``queued``, or claims it in place of the new
message: either way the claim transaction lets one run at a time have it.

Every way a job is queued is two steps, the record in Redis and then the task's message: a new job
(``POST /jobs``, ``Store.create_job``), a job handed on to its student part (``Store.hand_off``) and a
lost job requeued here (``Store.reap_stale``). A process that dies between the two leaves the job
queued with no message on any queue, which nothing would ever run. So each of those transactions also
notes the job in an outbox, and the sender removes the note once the message is sent (``Store.sent``);
the sweep sends again the part's task of each job noted for over ``heartbeat_timeout_s`` and still
queued (``Store.unsent``, which renews the note so that one sweeper sends it). Why an outbox rather
than the other order or a rule on queued jobs alone: sending first lets a worker receive the message
before the record is written (a new job not there yet, a handed-on job still in its teacher part) and
drop it, which loses the message all the same; and re-sending every job queued for longer than a
bound would add a duplicate message per sweep for each job waiting its turn behind a backlog. The note
marks exactly the jobs whose send is in doubt. A send the sweep repeats needlessly (a slow sender, or
one that died after sending) is one more delivery, which the claim makes harmless.
"""

from __future__ import annotations

import logging
from typing import Any

from jobstore.broker import enqueue_job
from jobstore.settings import Settings
from jobstore.store import Reaped, Store

log = logging.getLogger("tagdistill.worker")


def sweep(store: Store, celery: Any, settings: Settings) -> Reaped:
    reaped = store.reap_stale(settings.heartbeat_timeout_s, settings.max_attempts)
    for job_id in reaped.failed:
        log.warning("job ended: its worker stopped reporting (no attempts left, or cancelled)",
                    extra={"job_id": job_id})
    for job_id in reaped.requeued:
        log.warning("job requeued: its worker stopped reporting", extra={"job_id": job_id})
        _send(store, celery, settings, job_id, store.get_job(job_id).part)
    for job_id, part in store.unsent(settings.heartbeat_timeout_s):
        log.warning("job part sent again: it was queued but its send was never confirmed",
                    extra={"job_id": job_id, "part": part})
        _send(store, celery, settings, job_id, part)
    return reaped


def _send(store: Store, celery: Any, settings: Settings, job_id: str, part: str) -> None:
    """Send the task of the job's queued ``part`` and take the job out of the outbox. A broker away for a
    moment leaves the note, and a later sweep sends the task again."""
    try:
        enqueue_job(celery, job_id, settings.stage_queues[part], part)
    except Exception:
        log.exception("job part not sent: the sweep sends it again", extra={"job_id": job_id, "part": part})
        return
    store.sent(job_id)
