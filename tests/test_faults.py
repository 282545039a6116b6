"""Faults for real: a worker killed with SIGKILL mid-job, and the job resumed on another worker;
the API killed and restarted mid-job, and the job unaffected; Redis restarted mid-job, and the
records kept (append-only file) and the job unaffected.

This module runs its own API and workers (own key prefix, queue and data dir in the session's
Redis) with a short heartbeat timeout, so a vanished worker is noticed within seconds.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import ROOT, _stop, start_api, start_worker, upload_sample, wait_for
from test_redis_down import PrivateRedis

from tagdistill.progress import STAGES

HEARTBEAT_TIMEOUT_S = 3
EPOCHS = 5  # of the teacher and of the student; each is killed after its epoch 2


@contextmanager
def _stack(redis_url: str, folder: Path, **overrides: str) -> Iterator[dict[str, Any]]:
    """An API on ``redis_url`` and the environment for workers (own key prefix, queue and data dir
    in ``folder``), with a 3 s heartbeat timeout and 3 attempts unless ``overrides`` (environment
    variables) say otherwise. At the end it stops every process in ``procs`` and removes its keys."""
    import redis

    from jobstore.store import Store

    tag = secrets.token_hex(4)
    env = {
        **os.environ, "PYTHONPATH": str(ROOT), "TAGDISTILL_REDIS_URL": redis_url,
        "TAGDISTILL_DATA_DIR": str(folder / "data"), "TAGDISTILL_KEY_PREFIX": f"tdfault-{tag}:",
        "TAGDISTILL_QUEUE": f"tdfault-{tag}", "TAGDISTILL_TORCH_THREADS": "1",
        "TAGDISTILL_HEARTBEAT_S": "0.5", "TAGDISTILL_HEARTBEAT_TIMEOUT_S": str(HEARTBEAT_TIMEOUT_S),
        "TAGDISTILL_MAX_ATTEMPTS": "3", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
        "TAGDISTILL_MAX_WIDTH": "1000000",  # the out-of-memory test asks for a far too big student
        "TOKENIZERS_PARALLELISM": "false", **overrides,
    }
    store = Store.from_url(redis_url, env["TAGDISTILL_KEY_PREFIX"])
    api, url = start_api(env, folder / "api.log")
    procs: list[subprocess.Popen] = [api]
    try:
        yield {"env": env, "url": url, "store": store, "procs": procs, "logs": folder}
    finally:
        for proc in procs:
            if proc.poll() is None:
                _stop(proc)
        if store.ping():  # a test that failed during a Redis outage leaves nothing to remove there
            client = redis.Redis.from_url(redis_url)
            # the Store's keys and Celery's (queue, bindings, results) all start with the prefix
            keys = list(client.scan_iter(match=env["TAGDISTILL_KEY_PREFIX"] + "*", count=1000))
            if keys:
                client.delete(*keys)


@pytest.fixture
def stack(redis_url: str, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """An API and the environment for workers in the session's Redis, with a 3 s heartbeat timeout."""
    with _stack(redis_url, tmp_path) as running:
        yield running


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A private append-only redis-server, which a test may stop and start again on the same files."""
    (tmp_path / "redis").mkdir()
    server = PrivateRedis(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        if server.proc is not None and server.proc.poll() is None:
            _stop(server.proc)


@contextmanager
def _redis_outage(server: PrivateRedis, seconds: float) -> Iterator[None]:
    """Stop the private Redis (SIGTERM) for ``seconds``, run the body, and start Redis again on the
    same port and files (the append-only file is read back)."""
    server.stop()
    time.sleep(seconds)
    yield
    server.start()


def _worker(stack: dict[str, Any], name: str, workers: dict[str, subprocess.Popen]) -> None:
    """Start a worker and add it to ``workers`` (by its full name, as job records show it)."""
    full = f"{stack['env']['TAGDISTILL_QUEUE']}-{name}@{os.uname().nodename}"
    proc = start_worker(stack["env"], full, stack["logs"] / f"worker-{name}.log", stack["store"])
    stack["procs"].append(proc)
    workers[full] = proc


def _pool_process(worker: subprocess.Popen) -> int:
    """The pid of the worker's pool process (concurrency 1: the one that runs its job)."""
    children = Path(f"/proc/{worker.pid}/task/{worker.pid}/children").read_text().split()
    assert len(children) == 1, children
    return int(children[0])


def _attempts(events: list[Any]) -> list[list[Any]]:
    """The job's events split into its runs: each from a ``running`` status to the next."""
    starts = [i for i, e in enumerate(events) if e.type == "status" and e.data["status"] == "running"]
    ends = [*starts[1:], len(events)] if starts else []  # no run yet: no runs
    return [events[a:b] for a, b in zip(starts, ends, strict=True)]


def _epochs(events: list[Any], stage: str) -> list[int]:
    """The epochs of ``stage`` that ``events`` report, in order."""
    return [e.data["epoch"] for e in events if e.type == "epoch" and e.data["stage"] == stage]


def _this_attempt(store: Any, job_id: str) -> list[Any]:
    """The job's events since its latest ``running`` status."""
    runs = _attempts(store.events(job_id))
    return runs[-1] if runs else []


def _kill_after_epoch(
    store: Any, job_id: str, workers: dict[str, subprocess.Popen], stage: str, epoch: int
) -> tuple[int, str]:
    """SIGKILL the process group of the job's worker once this attempt reported ``epoch`` of
    ``stage``; the last epoch reported (and so checkpointed) before the kill, and the worker."""

    def reached() -> int | None:
        events = _this_attempt(store, job_id)
        done = [e.data["epoch"] for e in events if e.type == "epoch" and e.data["stage"] == stage]
        return max(done) if done and max(done) >= epoch else None

    wait_for(reached, 120, f"{stage} epoch {epoch}", every_s=0.05)
    name = store.get_job(job_id).worker
    proc = workers.pop(name)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return reached(), name


def _job_body(dataset_id: str, teacher: Path) -> dict[str, Any]:
    """EPOCHS epochs of a tiny teacher and of a tiny student: about 25 s on one shared core."""
    return {
        "dataset_id": dataset_id,
        "teacher": {"base_model": str(teacher), "epochs": EPOCHS, "min_steps": 0, "learning_rate": 3e-3},
        "student": {"hidden": 16, "word_dim": 16, "char_hidden": 16},
        "distill": {"mode": "kd", "epochs": EPOCHS, "min_steps": 0, "patience": 50, "learning_rate": 5e-3,
                    "baseline": False},  # the kills target the student stage; baseline tested elsewhere
        "device": "cpu",
    }


def _submit_job(client: httpx.Client, teacher: Path) -> str:
    """Upload the sample and submit a ``_job_body`` job on it; the job's id."""
    ds = upload_sample(client).json()
    return client.post("/jobs", json=_job_body(ds["id"], teacher)).json()["id"]


def _quick_body(dataset_id: str, teacher: Path, **student: Any) -> dict[str, Any]:
    body = _job_body(dataset_id, teacher)
    body["teacher"]["epochs"] = body["distill"]["epochs"] = 1
    body["student"].update(student)
    return body


def test_a_job_goes_on_while_the_api_is_killed_and_restarted(
    stack: dict[str, Any], tiny_teacher: Path
) -> None:
    store, workers = stack["store"], {}
    _worker(stack, "a", workers)
    with httpx.Client(base_url=stack["url"], timeout=60) as client:
        job_id = _submit_job(client, tiny_teacher)
    api = stack["procs"][0]

    def epochs() -> int:
        return sum(e.type == "epoch" for e in store.events(job_id))

    wait_for(lambda: epochs() >= 1, 120, "the first epoch")
    os.killpg(api.pid, signal.SIGKILL)  # a crash: no shutdown of any kind
    api.wait()
    before = epochs()
    wait_for(lambda: epochs() > before, 60, "an epoch while the API is down")
    proc, url = start_api(stack["env"], stack["logs"] / "api-2.log")
    stack["procs"].append(proc)
    with httpx.Client(base_url=url, timeout=60) as client:
        assert client.get(f"/jobs/{job_id}").json()["status"] in {"running", "succeeded"}

        def ended() -> dict[str, Any] | None:
            job = client.get(f"/jobs/{job_id}").json()
            return job if job["status"] in {"succeeded", "failed", "cancelled"} else None

        job = wait_for(ended, 120, "the job to end")
        assert job["status"] == "succeeded" and job["attempts"] == 1, job
        assert client.get(f"/models/{job['model_id']}").status_code == 200
    statuses = [e.data["status"] for e in store.events(job_id) if e.type == "status"]
    assert statuses == ["queued", "running", "succeeded"]


def test_a_job_resumes_after_its_pool_process_is_killed(stack: dict[str, Any], tiny_teacher: Path) -> None:
    """Only the process running the job is killed (as the kernel's OOM killer does). Celery puts
    its message back (``task_reject_on_worker_lost``) and the sweep requeues the job once its
    heartbeat is old and sends another: two deliveries, of which the claim lets one run (the
    other finds the job not ``queued``); the same worker resumes the job."""
    store, workers = stack["store"], {}
    _worker(stack, "a", workers)
    (main,) = workers.values()
    with httpx.Client(base_url=stack["url"], timeout=60) as client:
        job_id = _submit_job(client, tiny_teacher)

        def reached() -> int | None:
            done = [e.data["epoch"] for e in store.events(job_id) if e.type == "epoch"]
            return max(done) if done and max(done) >= 2 else None

        wait_for(reached, 120, "teacher epoch 2", every_s=0.05)
        os.kill(_pool_process(main), signal.SIGKILL)
        killed_at = reached()

        def ended() -> dict[str, Any] | None:
            job = client.get(f"/jobs/{job_id}").json()
            return job if job["status"] in {"succeeded", "failed", "cancelled"} else None

        job = wait_for(ended, 120, "the job to end")
    assert job["status"] == "succeeded" and job["attempts"] == 2, job
    events = store.events(job_id)
    statuses = [e.data["status"] for e in events if e.type == "status"]
    assert statuses == ["queued", "running", "queued", "running", "succeeded"]
    logs = [e.data["message"] for e in events if e.type == "log"]
    at = killed_at
    resumed = f"teacher: resumed at epoch {at + 1} of {EPOCHS} from the checkpoint of epoch {at}"
    assert resumed in logs


def test_a_job_resumes_after_its_worker_is_killed_in_teacher_and_in_student(
    stack: dict[str, Any], tiny_teacher: Path
) -> None:
    store = stack["store"]
    workers: dict[str, subprocess.Popen] = {}
    _worker(stack, "a", workers)  # two workers: when one is killed, the other takes the job over
    _worker(stack, "b", workers)
    with httpx.Client(base_url=stack["url"], timeout=60) as client:
        ds = upload_sample(client)
        assert ds.status_code == 201, ds.text
        job_id = client.post("/jobs", json=_job_body(ds.json()["id"], tiny_teacher)).json()["id"]
        started = time.monotonic()

        killed_at, first = _kill_after_epoch(store, job_id, workers, "teacher", 2)
        assert store.get_job(job_id).status == "running"  # until its heartbeat is old
        _worker(stack, "c", workers)  # meanwhile the sweeps requeue the job, and the idle worker takes it
        wait_for(lambda: store.get_job(job_id).attempts == 2, 30, "the second attempt")
        student_killed_at, second = _kill_after_epoch(store, job_id, workers, "student", 2)

        def ended() -> dict[str, Any] | None:
            job = client.get(f"/jobs/{job_id}").json()
            return job if job["status"] in {"succeeded", "failed", "cancelled"} else None

        job = wait_for(ended, 120, "the job to end")
        seconds = time.monotonic() - started

    assert job["status"] == "succeeded", job["error"]
    assert job["attempts"] == 3 and job["model_id"]
    events = store.events(job_id)
    statuses = [e.data for e in events if e.type == "status"]
    assert [s["status"] for s in statuses] == [
        "queued", "running", "queued", "running", "queued", "running", "succeeded"
    ]  # never two runs at once: each attempt starts only after the previous was given up on
    runs = [s for s in statuses if s["status"] == "running"]
    assert [s["attempt"] for s in runs] == [1, 2, 3]
    assert runs[0]["worker"] == first and runs[1]["worker"] == second and runs[2]["worker"] in workers
    assert "lost: no heartbeat" in statuses[2]["reason"] and "attempt 2 of 3" in statuses[2]["reason"]
    logs = [e.data["message"] for e in events if e.type == "log"]
    for stage, at in (("teacher", killed_at), ("student", student_killed_at)):
        assert f"{stage}: resumed at epoch {at + 1} of {EPOCHS} from the checkpoint of epoch {at}" in logs
        epochs = [e.data["epoch"] for e in events if e.type == "epoch" and e.data["stage"] == stage]
        assert epochs == list(range(1, EPOCHS + 1))  # each epoch trained once: none lost, none redone
    assert any(m.startswith("teacher: already trained") for m in logs)  # the third attempt
    print(f"killed in teacher epoch {killed_at + 1}, student epoch {student_killed_at + 1}; {seconds:.0f} s")


def _ended(client: httpx.Client, job_id: str) -> dict[str, Any] | None:
    """The job once it has ended; None before, and while the API cannot answer (Redis away)."""
    response = client.get(f"/jobs/{job_id}")
    if response.status_code != 200:
        return None
    job = response.json()
    return job if job["status"] in {"succeeded", "failed", "cancelled"} else None


def _models_of(store: Any, job_id: str) -> list[Any]:
    """Every model record of the job, found by reading the whole models index."""
    models, _ = store.list_models(None, 100_000)
    return [m for m in models if m.job_id == job_id]


def test_a_job_goes_on_across_a_redis_restart(
    private_redis: PrivateRedis, tmp_path: Path, tiny_teacher: Path
) -> None:
    """A private append-only redis-server is stopped for 3 s during teacher training and started
    again: the records are all there, and the job ends well in its first attempt (its progress
    is not recorded while Redis is away; its end waits for Redis)."""
    overrides = {"TAGDISTILL_HEARTBEAT_TIMEOUT_S": "20", "TAGDISTILL_REDIS_TIMEOUT_S": "2"}
    with _stack(private_redis.url, tmp_path, **overrides) as stack:
        store = stack["store"]
        _worker(stack, "a", {})
        with httpx.Client(base_url=stack["url"], timeout=60) as client:
            ds = upload_sample(client).json()
            job_id = client.post("/jobs", json=_job_body(ds["id"], tiny_teacher)).json()["id"]
            wait_for(lambda: any(e.type == "epoch" for e in store.events(job_id)), 120, "the first epoch")
            before = store.events(job_id)
            with _redis_outage(private_redis, 3):
                assert client.get("/health").status_code == 503
            job = wait_for(lambda: _ended(client, job_id), 120, "the job to end")
            assert job["status"] == "succeeded" and job["attempts"] == 1, job
            assert client.get(f"/datasets/{ds['id']}").json() == ds  # the records written before
            assert client.get(f"/models/{job['model_id']}").status_code == 200
        after = store.events(job_id)
        assert [e.model_dump() for e in after[: len(before)]] == [e.model_dump() for e in before]
        assert [e.data["status"] for e in after if e.type == "status"] == ["queued", "running", "succeeded"]


def test_a_redis_outage_longer_than_the_heartbeat_timeout_ends_with_one_model_and_one_run_per_stage(
    private_redis: PrivateRedis, tmp_path: Path, tiny_teacher: Path
) -> None:
    """Redis is stopped as the student stage starts and kept down for 3 heartbeat timeouts; the run
    trains on meanwhile, and mostly finishes and waits for Redis to record its end. Once Redis is
    back, a sweep finds the job's heartbeat too old and requeues it: the run, given up on, must
    register nothing, and the next attempt (teacher reused) registers the job's one model.

    Whether the sweep or the late run reaches Redis first is a race (the run wins it most times, and
    then the job ends in its first attempt, as in the restart test above); to test the other outcome
    every time, the run's process is frozen (SIGSTOP) from the end of the outage until the sweep
    has acted."""
    with _stack(private_redis.url, tmp_path, TAGDISTILL_REDIS_TIMEOUT_S="2") as stack:
        store, workers = stack["store"], {}
        _worker(stack, "a", workers)
        (main,) = workers.values()
        with httpx.Client(base_url=stack["url"], timeout=60) as client:
            job_id = _submit_job(client, tiny_teacher)
            wait_for(lambda: store.get_job(job_id).stage == "student", 120, "the student stage", every_s=0.05)
            run = _pool_process(main)
            try:
                with _redis_outage(private_redis, 3 * HEARTBEAT_TIMEOUT_S):
                    assert client.get("/health").status_code == 503
                    os.kill(run, signal.SIGSTOP)
                wait_for(lambda: store.get_job(job_id).status == "queued", 30, "the sweep to requeue the job")
            finally:
                os.kill(run, signal.SIGCONT)
            job = wait_for(lambda: _ended(client, job_id), 120, "the job to end")
        events = store.events(job_id)
        models = _models_of(store, job_id)

    assert job["status"] == "succeeded" and job["attempts"] == 2, job
    statuses = [e.data for e in events if e.type == "status"]
    assert [s["status"] for s in statuses] == ["queued", "running", "queued", "running", "succeeded"]
    assert "lost: no heartbeat" in statuses[2]["reason"], statuses[2]
    assert [m.id for m in models] == [job["model_id"]]  # one model, the job's
    first, second = _attempts(events)
    assert models[0].created_at > second[0].time  # by the second run: the late first one wrote none
    for events_of_run in (first, second):  # each run went through the stages in order, each once (the
        stages = [e.data["stage"] for e in events_of_run if e.type == "stage"]  # outage's events are lost)
        assert stages == [s for s in STAGES if s in stages], stages
    assert [e.data["stage"] for e in second if e.type == "stage"] == list(STAGES)
    logs = [e.data["message"] for e in second if e.type == "log"]
    assert any(m.startswith("teacher: already trained") for m in logs), logs
    assert (_epochs(first, "teacher"), _epochs(second, "teacher")) == (list(range(1, EPOCHS + 1)), [])
    student = _epochs(second, "student")  # afresh, or resumed after the first run's last checkpoint (none
    assert student == list(range(EPOCHS - len(student) + 1, EPOCHS + 1)), student  # left after epoch 5)
    print(f"student epochs recorded: first run {_epochs(first, 'student')}, second run {student}")


def test_a_cancel_during_evaluation_ends_cancelled_without_a_model(
    stack: dict[str, Any], tiny_teacher: Path
) -> None:
    """The job is cancelled as soon as its record shows the evaluating stage (it scores the teacher
    and the two students on dev and test and times them, one after the other): it ends
    ``cancelled``, with no model record."""
    store = stack["store"]
    _worker(stack, "a", {})
    with httpx.Client(base_url=stack["url"], timeout=60) as client:
        ds = upload_sample(client).json()
        body = _quick_body(ds["id"], tiny_teacher)
        body["distill"]["baseline"] = True  # three models to evaluate, not two: a wider window to hit
        job_id = client.post("/jobs", json=body).json()["id"]

        def evaluating() -> bool:
            job = client.get(f"/jobs/{job_id}").json()
            assert job["status"] in {"queued", "running"}, job  # it ended before its evaluation was seen
            return job["stage"] == "evaluating"

        wait_for(evaluating, 120, "the evaluating stage", every_s=0.05)
        cancel = client.post(f"/jobs/{job_id}/cancel")
        assert cancel.status_code == 202, cancel.text
        job = wait_for(lambda: _ended(client, job_id), 60, "the job to end")
    assert job["status"] == "cancelled" and job["model_id"] is None, job
    assert _models_of(store, job_id) == []
    events = store.events(job_id)
    assert [e.data["status"] for e in events if e.type == "status"] == ["queued", "running", "cancelled"]
    said = [e.data.get("stage") or e.data.get("message") for e in events if e.type in {"stage", "log"}]
    assert said.index("cancel requested") > said.index("evaluating")  # asked for during the evaluation


def test_a_full_disk_fails_that_job_and_the_next_one_runs(stack: dict[str, Any], tiny_teacher: Path) -> None:
    """The job's folder is a 64 KiB tmpfs, a disk that is full at the first checkpoint: the job
    fails with the reason, once (not retried), and the worker and the API go on: the next job,
    on the real disk, succeeds."""
    workers: dict[str, subprocess.Popen] = {}
    with httpx.Client(base_url=stack["url"], timeout=60) as client:
        ds = upload_sample(client).json()
        job_id = client.post("/jobs", json=_quick_body(ds["id"], tiny_teacher)).json()["id"]  # no worker yet
        folder = Path(stack["env"]["TAGDISTILL_DATA_DIR"]) / "jobs" / job_id
        folder.mkdir(parents=True)
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)],
                                 capture_output=True, text=True)
        if mounted.returncode != 0:
            pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip()}")
        try:
            _worker(stack, "a", workers)
            job = wait_for(lambda: _ended(client, job_id), 120, "the job on the full disk to end")
        finally:
            subprocess.run(["umount", "--lazy", str(folder)], check=True)
        assert job["status"] == "failed" and job["attempts"] == 1, job
        assert "No space left on device" in job["error"], job["error"]
        assert client.get("/health").status_code == 200
        next_id = client.post("/jobs", json=_quick_body(ds["id"], tiny_teacher)).json()["id"]
        assert wait_for(lambda: _ended(client, next_id), 120, "the next job")["status"] == "succeeded"
    assert all(proc.poll() is None for proc in workers.values())  # the worker survived


def test_out_of_memory_fails_that_job_and_the_next_one_runs(
    stack: dict[str, Any], tiny_teacher: Path
) -> None:
    """A student far too big for the machine (a 100,000-wide BiLSTM: 160 GB for one weight): the
    allocation fails inside the job, which is failed with the allocator's message; the worker
    lives on and runs the next job."""
    store, workers = stack["store"], {}
    _worker(stack, "a", workers)
    with httpx.Client(base_url=stack["url"], timeout=60) as client:
        ds = upload_sample(client).json()
        job_id = client.post("/jobs", json=_quick_body(ds["id"], tiny_teacher, hidden=100_000)).json()["id"]
        job = wait_for(lambda: _ended(client, job_id), 120, "the job that runs out of memory")
        assert job["status"] == "failed" and job["attempts"] == 1, job
        assert "allocate" in job["error"] and "memory" in job["error"], job["error"]
        next_id = client.post("/jobs", json=_quick_body(ds["id"], tiny_teacher)).json()["id"]
        assert wait_for(lambda: _ended(client, next_id), 120, "the next job")["status"] == "succeeded"
    assert all(proc.poll() is None for proc in workers.values())
    assert store.get_job(job_id).status == "failed"
