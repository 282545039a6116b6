"""The sweep for jobs whose worker vanished, run by every worker's main process and nowhere else:
the API's reads have no side effects. A lost job is requeued once any worker is up, and with
no worker up there is none to run it anyway.

``Store.reap_stale`` requeues such a job (a transaction, so one sweeper wins) while it has
attempts left, and fails it after ``max_attempts``; the sweeper that requeued it sends its task
again, to the queue of the job's current part (``Job.part``: its teacher part, or its student part
once handed on). The new run resumes from the job folder's last epoch checkpoint (on another
machine: the checkpoint the lost run pushed to the artifact store). A redelivery of the old
task (Celery's ``acks_late``) finds the job not ``queued``, or claims it in place of the new
message: either way the claim transaction lets one run at a time have it.

The sweep also sends again the task of a job handed on to its student part (``Store.hand_off``) whose
sender never said it was sent (``Store.handoff_sent``) within ``heartbeat_timeout_s``: that process
died between recording the hand-off and sending the message, and the job would sit queued with no
message. Why an outbox (the hand-off noted in the same transaction, the note removed once sent)
rather than the other order or a rule on queued jobs alone: sending first lets the student part's
worker receive the message before the hand-off is recorded, find the job still running its teacher
part and drop it, which loses the message all the same; and re-sending every job queued for longer
than a bound would add a duplicate message per sweep for each job waiting its turn behind a backlog.
The note marks exactly the hand-offs whose send is in doubt. A send the sweep repeats needlessly (a
slow sender, or one that died after sending) is one more delivery, which the claim makes harmless.
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
        try:
            part = store.get_job(job_id).part
            enqueue_job(celery, job_id, settings.stage_queues[part], part)
        except Exception as exc:  # nothing would ever run it: fail it rather than leave it queued
            store.finish_job(job_id, "failed", error=f"could not be requeued: {exc}")
    for job_id, part in store.unsent_handoffs(settings.heartbeat_timeout_s):
        log.warning("job part sent again: its hand-off was recorded but never said sent",
                    extra={"job_id": job_id, "part": part})
        try:
            enqueue_job(celery, job_id, settings.stage_queues[part], part)
        except Exception:  # the broker away for a moment: the renewed note brings it back next time
            log.exception("job part not sent again", extra={"job_id": job_id})
            continue
        store.handoff_sent(job_id)
    return reaped
