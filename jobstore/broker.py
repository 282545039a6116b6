"""The job queue on the Celery broker: the task's name, Celery's settings, sending a job by name.

Celery's settings derive from the shared Settings, so the API (which only sends) and the
workers (``worker/app.py``, which run the task) agree. A sender needs no task code: a task is
sent by its name, ``RUN_JOB``, and carries only the job id.

A job has two parts (``PARTS``): "teacher" (the teacher and labeling stages, task ``RUN_JOB``, on
the queue ``TAGDISTILL_QUEUE``, GPU workers) and "student" (the student, baseline, export and
evaluation stages, task ``RUN_STUDENT``, on ``TAGDISTILL_CPU_QUEUE``). With one queue for both
(the default) ``RUN_JOB`` runs the whole job; with two, the worker that ends the teacher part hands
the job to the other queue (``Settings.stage_queues``). Each task's id is the job id.

On Redis every key Celery writes (the queue list, ``_kombu.binding.*``, ``unacked*``, the
remote-control pub/sub channels, ``celery-task-meta-*``) starts with ``key_prefix``, like the
Store's keys: two deployments with different prefixes may share one Redis database, even with
the same queue name, and never see each other's tasks.
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from jobstore.settings import Settings

RUN_JOB = "tagdistill.run_job"  # task name shared by the API (sender) and the worker: a job's first part
RUN_STUDENT = "tagdistill.run_student"  # a job's second part, when the parts go to two queues
# the parts of a job: its task and its stages (tagdistill.progress.STAGES), in order
PARTS = {
    "teacher": (RUN_JOB, ("teacher", "labeling")),
    "student": (RUN_STUDENT, ("baseline", "student", "evaluating")),
}
JOB_TASKS = frozenset(task for task, _ in PARTS.values())
TAG_CHUNK = "tagdistill.tag_chunk"  # batch tagging: tag one chunk of a batch job (worker/batch.py)
MERGE_BATCH = "tagdistill.merge_batch"  # batch tagging: the chord's last step, the chunks' output in order
# URL schemes of Redis, for kombu's broker transport and Celery's result backend
REDIS_SCHEMES = frozenset({"redis", "rediss", "redis+socket", "socket", "unix", "sentinel"})


def is_redis(url: str) -> bool:
    """Whether ``url`` (or the first of a ``;``-separated failover list) names a Redis server."""
    scheme, sep, _ = url.strip().partition("://")
    return bool(sep) and scheme.lower() in REDIS_SCHEMES


def celery_config(s: Settings) -> dict[str, Any]:
    # A redelivered message must not start a job that is still running: the broker only
    # redelivers an unacknowledged task after the visibility timeout, so keep it above the
    # longest job. The job record (not Celery's state) decides whether a delivery runs.
    visibility = {"visibility_timeout": s.job_time_limit_s + 3600}
    # kombu's Redis transport and Celery's Redis result backend put this before each key they use;
    # another broker (amqp://...) gets no such option
    prefix = {"global_keyprefix": s.key_prefix} if s.key_prefix else {}
    return {
        "broker_url": s.broker,
        "result_backend": s.redis_url,
        "broker_transport_options": {**visibility, **(prefix if is_redis(s.broker) else {})},
        "result_backend_transport_options": {**visibility, **(prefix if is_redis(s.redis_url) else {})},
        "result_expires": 7 * 24 * 3600,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "task_default_queue": s.queue,
        "task_routes": {task: {"queue": s.stage_queues[part]} for part, (task, _) in PARTS.items()},
        "task_acks_late": True,  # a job whose worker dies is not acknowledged...
        "task_reject_on_worker_lost": True,  # ...and goes back to the queue when its process is killed
        "task_soft_time_limit": s.job_time_limit_s,  # raised inside the job, which then fails cleanly
        "task_time_limit": s.job_time_limit_s + 300,
        "worker_prefetch_multiplier": 1,  # hold no job that another idle worker could start
        "worker_concurrency": 1,  # one job per device: training already uses every core or the GPU
        # A fresh process per job returns all of a job's memory (CPU and GPU) to the system;
        # restarting costs a second next to a job of minutes.
        "worker_max_tasks_per_child": s.max_tasks_per_child,
        "worker_hijack_root_logger": False,  # keep the JSON log handler
        "broker_connection_retry_on_startup": True,
    }


def celery_client(s: Settings) -> Celery:
    """A Celery app on the shared broker, for sending tasks by name (it knows no task)."""
    app = Celery("tagdistill", set_as_current=False)
    app.conf.update(celery_config(s))
    return app


def enqueue_job(celery: Celery, job_id: str, queue: str, part: str = "teacher") -> None:
    """Send the task of the job's ``part`` (``PARTS``); its task id is the job id. Raises when the broker
    is unreachable."""
    celery.send_task(PARTS[part][0], args=[job_id], task_id=job_id, queue=queue)
