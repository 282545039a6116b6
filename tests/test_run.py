"""``tagdistill up`` (the CLI loads service.run by name and calls its ``up``).

With no Redis at the configured URL it brings its own; Ctrl-C stops everything it started.
A part that dies is started again while the others run on. Without the service extra it says
what to install.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import psutil
from conftest import ROOT, upload_sample, wait_for

from service.run import STOP_GRACE_S, free_port


def start_up(data: Path, log: Path) -> tuple[subprocess.Popen, int]:
    """``tagdistill up`` on a free port with ``data`` as data dir, its output in ``log``, and a
    Redis URL where nothing answers, so it starts its embedded Redis; the process and the port."""
    port, dead_redis = free_port(), free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "TAGDISTILL_REDIS_URL": f"redis://127.0.0.1:{dead_redis}/0",  # nothing answers there
        "TAGDISTILL_QUEUE": f"up-test-{port}",
        "TAGDISTILL_HEARTBEAT_S": "0.5",
    }
    command = [sys.executable, "-m", "tagdistill.cli", "up", "--port", str(port), "--data-dir", str(data)]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            command, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    return proc, port


def wait_healthy(proc: subprocess.Popen, port: int, log: Path, timeout_s: float, what: str) -> dict:
    """/health's body once it is 200 with a worker reporting in; fails at once if ``up`` exits."""

    def healthy() -> dict | None:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            response = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
        except httpx.TransportError:
            return None
        return response.json() if response.status_code == 200 and response.json()["workers"] else None

    return wait_for(healthy, timeout_s, what, every_s=0.5)


def child_pid(proc: subprocess.Popen, word: str) -> int | None:
    """The pid of ``proc``'s child whose command line has ``word`` in it (uvicorn, celery, redis-server)."""
    for child in psutil.Process(proc.pid).children():
        try:
            if any(word in arg for arg in child.cmdline()):
                return child.pid
        except psutil.NoSuchProcess:
            pass
    return None


def test_up_starts_embedded_redis_worker_and_api_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    data, log = tmp_path / "data", tmp_path / "up.log"
    proc, port = start_up(data, log)
    try:
        health = wait_healthy(proc, port, log, 90, "tagdistill up to be healthy")
        assert health["status"] == "ok" and health["redis"] is True
        assert (data / "redis" / "redis.log").is_file()
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        assert proc.wait(60) == 0
        assert "stopping" in log.read_text()
        # the embedded Redis wrote its append-only file in the data dir
        assert list((data / "redis").rglob("*.aof"))
        # and nothing it started is left
        left = subprocess.run(["pgrep", "-s", str(proc.pid)], capture_output=True, text=True).stdout.split()
        assert left == []
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def test_up_restarts_a_killed_api_and_redis_and_the_worker_runs_on(tmp_path: Path) -> None:
    """SIGKILL of the API, then of the embedded Redis: each comes back on its own (Redis on the
    same port, with its data), the worker process is the same throughout, ``up`` runs on; then
    Ctrl-C still stops all of it."""
    data, log = tmp_path / "data", tmp_path / "up.log"
    proc, port = start_up(data, log)
    descendants: list[psutil.Process] = []
    try:
        wait_healthy(proc, port, log, 90, "tagdistill up to be healthy")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            uploaded = upload_sample(client)
        assert uploaded.status_code == 201, uploaded.text
        dataset_id = uploaded.json()["id"]
        worker, api, server = (child_pid(proc, w) for w in ("celery", "uvicorn", "redis-server"))
        assert worker and api and server

        os.killpg(api, signal.SIGKILL)
        wait_for(lambda: child_pid(proc, "uvicorn") not in (None, api), 5, "a new API process")
        wait_healthy(proc, port, log, 30, "the restarted API to be healthy")
        assert child_pid(proc, "celery") == worker  # untouched

        os.killpg(server, signal.SIGKILL)

        def back_with_the_dataset() -> bool:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                listed = httpx.get(f"http://127.0.0.1:{port}/datasets", params={"limit": 100}, timeout=2)
            except httpx.TransportError:
                return False
            return listed.status_code == 200 and dataset_id in [d["id"] for d in listed.json()["items"]]

        wait_for(back_with_the_dataset, 30, "Redis back with the dataset uploaded before", every_s=0.5)
        assert child_pid(proc, "redis-server") not in (None, server)
        wait_healthy(proc, port, log, 30, "the worker to report in again")
        assert child_pid(proc, "celery") == worker  # untouched by the Redis restart too
        output = log.read_text()
        assert "the api process exited (signal SIGKILL); restarting it in 1 s" in output
        assert "the redis process exited (signal SIGKILL); restarting it in 1 s" in output
        assert "the worker process exited" not in output

        descendants = psutil.Process(proc.pid).children(recursive=True)
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        assert proc.wait(3 * STOP_GRACE_S + 10) == 0
        assert "stopping" in log.read_text()

        def none_left() -> bool:
            return not [p for p in descendants if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]

        wait_for(none_left, 5, "every process up started to be gone")
    finally:  # no strays for the next tests, whatever failed
        if proc.poll() is None:
            descendants += psutil.Process(proc.pid).children(recursive=True)
            proc.kill()
        for p in descendants:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()


def test_up_without_the_service_extra_says_what_to_install(tmp_path: Path) -> None:
    """With the service extra's packages missing (hidden from imports here), one line on stderr
    that names the extra to install, a non-zero exit, and no traceback."""
    hidden = ["fastapi", "uvicorn", "celery", "redis", "sse_starlette", "pydantic_settings"]
    code = (
        f"import sys; sys.modules.update(dict.fromkeys({hidden!r})); "  # None in sys.modules: not importable
        f"from tagdistill.cli import main; main(['up', '--data-dir', {str(tmp_path)!r}])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT,
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode != 0
    assert done.stdout == ""
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert "pip install 'tagdistill[service]'" in done.stderr
    assert "fastapi" in done.stderr and not list(tmp_path.iterdir())  # nothing started
