"""``tagdistill up`` (the CLI loads service.run by name and calls its ``up``).

With no Redis at the configured URL it brings its own; Ctrl-C stops everything it started.
Without the service extra it says what to install.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
from conftest import ROOT, wait_for

from service.run import free_port


def test_up_starts_embedded_redis_worker_and_api_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    port, dead_redis = free_port(), free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "TAGDISTILL_REDIS_URL": f"redis://127.0.0.1:{dead_redis}/0",  # nothing answers there
        "TAGDISTILL_QUEUE": f"up-test-{port}",
        "TAGDISTILL_HEARTBEAT_S": "0.5",
    }
    command = [sys.executable, "-m", "tagdistill.cli", "up", "--port", str(port), "--data-dir", str(tmp_path)]
    proc = subprocess.Popen(
        command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        def healthy() -> dict | None:
            assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).json()
            except httpx.TransportError:
                return None
            return health if health["workers"] else None

        health = wait_for(healthy, 90, "tagdistill up to be healthy", every_s=0.5)
        assert health["status"] == "ok" and health["redis"] is True
        assert (tmp_path / "redis" / "redis.log").is_file()
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        assert proc.wait(60) == 0
        output = proc.stdout.read().decode()
        assert "stopping" in output
        # the embedded Redis wrote its append-only file in the data dir
        assert list((tmp_path / "redis").rglob("*.aof"))
        # and nothing it started is left
        left = subprocess.run(["pgrep", "-s", str(proc.pid)], capture_output=True, text=True).stdout.split()
        assert left == []
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


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
