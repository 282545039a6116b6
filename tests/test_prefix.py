"""``TAGDISTILL_KEY_PREFIX`` separates deployments on one Redis database, Celery's keys included.

Two stacks share the session's Redis database and the same queue name but have different key
prefixes; only stack A runs a (real) Celery worker. A task sent by stack B's client stays in
B's queue, one sent by A's client reaches A's worker, and every key either stack wrote starts
with its prefix.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import _stop, start_worker, wait_for

from jobstore.broker import RUN_JOB, celery_client, celery_config, enqueue_job
from jobstore.settings import Settings
from jobstore.store import Store


def _received(log_path: Path, job_id: str) -> bool:
    """Whether the worker's (JSON) log says it received the task of ``job_id``."""
    for line in log_path.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("message") == f"Task {RUN_JOB}[{job_id}] received":
            return True
    return False


def _contents(client: Any, key: bytes) -> bytes:
    """A key's members or value, joined, whatever its type (to look for our ids in shared keys)."""
    kind = client.type(key)
    if kind == b"set":
        return b"\n".join(client.smembers(key))
    if kind == b"hash":
        return b"\n".join(k + b"\n" + v for k, v in client.hgetall(key).items())
    if kind == b"list":
        return b"\n".join(client.lrange(key, 0, -1))
    if kind == b"zset":
        return b"\n".join(client.zrange(key, 0, -1))
    if kind == b"string":
        return client.get(key) or b""
    return b""


@pytest.fixture(scope="module")
def stacks(
    service_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """Stacks A and B: one Redis database, one queue name, two key prefixes; A's worker running.

    Job tasks are sent once, B's first: one for ``job_b`` from B's client, one for ``job_a``
    from A's client, neither job in any store (the task then fails at once: no job). Yields once
    A's worker has received ``job_a``'s task.
    """
    import redis

    tag = secrets.token_hex(4)
    queue = f"tdprefix-{tag}"
    logs = tmp_path_factory.mktemp("prefix-logs")
    envs = {
        side: {**service_env, "TAGDISTILL_KEY_PREFIX": f"tdprefix-{side}-{tag}:", "TAGDISTILL_QUEUE": queue}
        for side in ("a", "b")
    }
    url = service_env["TAGDISTILL_REDIS_URL"]
    settings = {
        side: Settings(redis_url=url, key_prefix=env["TAGDISTILL_KEY_PREFIX"], queue=queue)
        for side, env in envs.items()
    }
    client = redis.Redis.from_url(url)
    store_a = Store.from_url(url, settings["a"].key_prefix)
    worker_name = f"{queue}-a@{os.uname().nodename}"
    worker_log = logs / "worker-a.log"
    proc = start_worker(envs["a"], worker_name, worker_log, store_a)
    try:
        job_a, job_b = f"job_prefix_a_{tag}", f"job_prefix_b_{tag}"
        enqueue_job(celery_client(settings["b"]), job_b, queue)
        enqueue_job(celery_client(settings["a"]), job_a, queue)
        wait_for(lambda: _received(worker_log, job_a), 60, "A's worker to receive A's task")
        yield {
            "client": client, "queue": queue, "settings": settings, "worker": worker_name,
            "worker_log": worker_log, "job_a": job_a, "job_b": job_b,
        }
    finally:
        _stop(proc)
        for s in settings.values():
            keys = list(client.scan_iter(match=s.key_prefix + "*", count=1000))
            if keys:
                client.delete(*keys)


def test_two_deployments_on_one_redis_never_see_each_others_tasks(stacks: dict[str, Any]) -> None:
    client, queue, settings = stacks["client"], stacks["queue"], stacks["settings"]
    job_a, job_b = stacks["job_a"], stacks["job_b"]
    # A's worker received A's task, sent after B's, but never B's: that one waits in B's queue,
    # a list of its own, while A's worker keeps polling
    b_queue = settings["b"].key_prefix + queue
    for _ in range(3):
        assert job_b.encode() not in stacks["worker_log"].read_bytes(), "A's worker received B's task"
        assert client.llen(b_queue) == 1
        time.sleep(1)
    assert json.loads(client.lindex(b_queue, 0))["headers"]["id"] == job_b
    assert not client.exists(settings["b"].key_prefix + f"celery-task-meta-{job_b}")
    # A's task went through A's queue and left its result under A's prefix
    result_a = settings["a"].key_prefix + f"celery-task-meta-{job_a}"
    wait_for(lambda: client.exists(result_a), 30, "the result of A's task under A's prefix")
    assert json.loads(client.get(result_a))["task_id"] == job_a
    assert client.llen(settings["a"].key_prefix + queue) == 0
    assert client.llen(queue) == 0  # no unprefixed queue list


def test_every_celery_key_starts_with_the_key_prefix(stacks: dict[str, Any]) -> None:
    client, queue, settings = stacks["client"], stacks["queue"], stacks["settings"]
    prefixes = tuple(s.key_prefix.encode() for s in settings.values())
    ours = [stacks["job_a"].encode(), stacks["job_b"].encode(), queue.encode(), stacks["worker"].encode()]
    keys = list(client.scan_iter(match="*", count=1000))
    named = [k for k in keys if any(m in k for m in ours)]
    # the queue's bindings (written by both senders), B's waiting task, A's task result
    a, b = (s.key_prefix.encode() for s in (settings["a"], settings["b"]))
    assert {a + b"_kombu.binding." + queue.encode(), b + b"_kombu.binding." + queue.encode()} <= set(named)
    assert b + queue.encode() in named
    assert a + f"celery-task-meta-{stacks['job_a']}".encode() in named
    assert [k for k in named if not k.startswith(prefixes)] == []
    # A's worker's remote-control (pidbox) binding is under A's prefix too
    assert stacks["worker"].encode() in _contents(client, a + b"_kombu.binding.celery.pidbox")
    # keys whose names are the same for every deployment (other test sessions may write them
    # unprefixed) hold nothing of these stacks: no binding, unacked message or result
    celery_names = (b"_kombu", b"unacked", b"celery")
    shared = [k for k in keys if not k.startswith(prefixes) and any(n in k for n in celery_names)]
    for key in shared:
        contents = _contents(client, key)
        assert not any(m in contents for m in ours), key


def test_the_key_prefix_goes_to_a_redis_broker_and_backend_only() -> None:
    def options(**fields: str) -> tuple[dict[str, Any], dict[str, Any]]:
        config = celery_config(Settings(redis_url="redis://h:6379/0", key_prefix="dep-a:", **fields))
        visibility = config["broker_transport_options"].pop("visibility_timeout")
        assert config["result_backend_transport_options"].pop("visibility_timeout") == visibility
        return config["broker_transport_options"], config["result_backend_transport_options"]

    prefixed = {"global_keyprefix": "dep-a:"}
    assert options() == (prefixed, prefixed)
    for url in ("rediss://h:6380/0", "unix:///run/redis.sock?db=1", "redis+socket:///run/redis.sock"):
        assert options(broker_url=url) == (prefixed, prefixed)
    assert options(broker_url="amqp://guest@h//") == ({}, prefixed)  # RabbitMQ: no Redis keys to prefix
