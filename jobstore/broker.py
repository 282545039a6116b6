"""The job queue on the Celery broker: the task's name, Celery's settings, sending a job by name.

Celery's settings derive from the shared Settings, so the API (which only sends) and the
workers (``worker/app.py``, which run the task) agree. A sender needs no task code: a task is
sent by its name, ``RUN_JOB``, and carries only the job id.

On Redis every key Celery writes (the queue list, ``_kombu.binding.*``, ``unacked*``, the
remote-control pub/sub channels, ``celery-task-meta-*``) starts with ``key_prefix``, like the
Store's keys: two deployments with different prefixes may share one Redis database, even with
the same queue name, and never see each other's tasks.
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from jobstore.settings import Settings

RUN_JOB = "tagdistill.run_job"  # task name shared by the API (sender) and the worker
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
        "task_routes": {RUN_JOB: {"queue": s.queue}},
        "task_acks_late": True,  # a job whose worker dies is not acknowledged...
        "task_reject_on_worker_lost": True,  # ...and goes back to the queue when its process is killed
        "task_soft_time_limit": s.job_time_limit_s,  # raised inside the job, which then fails cleanly
        "task_time_limit": s.job_time_limit_s + 300,
        "worker_prefetch_multiplier": 1,  # hold no job that another idle worker could start
        "worker_concurrency": 1,  # one job per device: training already uses every core or the GPU
        # A fresh process per job returns all of a job's memory (CPU and GPU) to the system;
        # restarting costs a second next to a job of minutes.
        "worker_max_tasks_per_child": 1,
        "worker_hijack_root_logger": False,  # keep the JSON log handler
        "broker_connection_retry_on_startup": True,
    }


def celery_client(s: Settings) -> Celery:
    """A Celery app on the shared broker, for sending tasks by name (it knows no task)."""
    app = Celery("tagdistill", set_as_current=False)
    app.conf.update(celery_config(s))
    return app


def enqueue_job(celery: Celery, job_id: str, queue: str) -> None:
    """Send the job's task; its task id is the job id. Raises when the broker is unreachable."""
    celery.send_task(RUN_JOB, args=[job_id], task_id=job_id, queue=queue)
