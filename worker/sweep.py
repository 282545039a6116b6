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
    return reaped
