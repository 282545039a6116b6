"""Beyond one machine, for real: the API and workers that share no folder, each with a cache of its
own, and every file going through an S3-compatible HTTP endpoint (moto's server, started here).

A job's teacher part runs on a worker of the gpu queue and its student part on one of the cpu queue;
a cpu worker killed with SIGKILL mid-stage is replaced by another that resumes from the checkpoint the
first one pushed to the store. Own key prefix and queues in the session's Redis (``test_faults._stack``),
with a heartbeat timeout of HEARTBEAT_TIMEOUT_S: long enough for a loaded machine (the ONNX export can
hold a busy process's heartbeat thread back for seconds), short enough that a killed worker's job is
requeued soon.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import CREDENTIALS, start_worker, upload_sample, wait_for
from test_faults import EPOCHS, _job_body, _kill_after_epoch, _stack

from jobstore.artifacts import ArtifactStore
from jobstore.records import Dataset, utcnow
from tagdistill.config import JobConfig

HEARTBEAT_TIMEOUT_S = 15
TEACHER = "shared/tiny-bert"  # in the object store only: the API checks it there, the workers pull it


@pytest.fixture(scope="module")
def scaled(
    redis_url: str, tmp_path_factory: pytest.TempPathFactory, s3_endpoint: str, tiny_teacher: Path
) -> Iterator[dict[str, Any]]:
    """An API whose data directory is a cache of the store, a gpu-queue worker and a cpu-queue worker
    with caches of their own, and the tiny teacher put in the store's shared/ by an operator."""
    folder = tmp_path_factory.mktemp("scaling")
    tag = secrets.token_hex(4)
    prefix = f"s3://tagdistill/{tag}"
    overrides = {
        "TAGDISTILL_QUEUE": f"tdscale-{tag}-gpu", "TAGDISTILL_CPU_QUEUE": f"tdscale-{tag}-cpu",
        "TAGDISTILL_STORAGE_URL": prefix, "TAGDISTILL_STORAGE_ENDPOINT_URL": s3_endpoint,
        "TAGDISTILL_STORAGE_KEY": CREDENTIALS["key"], "TAGDISTILL_STORAGE_SECRET": CREDENTIALS["secret"],
        "TAGDISTILL_HEARTBEAT_TIMEOUT_S": str(HEARTBEAT_TIMEOUT_S),
    }
    operator = ArtifactStore(folder / "operator", prefix, endpoint_url=s3_endpoint, **CREDENTIALS)
    shutil.copytree(tiny_teacher, operator.local(TEACHER))
    operator.push(TEACHER)
    with _stack(redis_url, folder, **overrides) as stack:
        stack.update(workers={}, caches={}, operator=operator)
        _worker(stack, "gpu", stack["env"]["TAGDISTILL_QUEUE"])
        _worker(stack, "cpu1", stack["env"]["TAGDISTILL_CPU_QUEUE"])
        yield stack


def new_job(store: Any) -> str:
    """A queued job on a dataset record of its own (no files: a run of it fails at once); its id."""
    ds = Dataset(id=store.new_id("ds"), created_at=utcnow(), files={}, format="conll",
                 unlabeled_format="text", tag_column=-1, size_bytes=0, stats={})
    store.add_dataset(ds)
    return store.create_job(ds.id, JobConfig(dataset_id=ds.id), None, "f", 60)[0].id


@pytest.fixture
def unswept(store: Any) -> Iterator[Any]:
    """A Store on a key prefix of its own in the session's Redis, which no worker sweeps (so no worker
    sends the jobs its tests leave queued)."""
    from jobstore.store import Store

    own = Store(store.r, f"tdunswept-{secrets.token_hex(4)}:")
    yield own
    keys = list(own.r.scan_iter(match=own.p + "*", count=1000))
    if keys:
        own.r.delete(*keys)


@pytest.fixture
def queued_job(unswept: Any) -> str:
    return new_job(unswept)


def test_a_handed_on_job_runs_only_its_next_part_and_counts_that_parts_attempts(
    unswept: Any, queued_job: str, settings: Any
) -> None:
    store = unswept
    first = store.claim_job(queued_job, "gpu@a", "teacher")
    assert first is not None and first.part == "teacher" and first.attempts == 1
    handed = store.hand_off(queued_job, 1, "student")
    assert handed is not None
    assert (handed.status, handed.part, handed.attempts_before) == ("queued", "student", 1)
    assert store.claim_job(queued_job, "gpu@a", "teacher") is None  # a late delivery of the teacher part
    second = store.claim_job(queued_job, "cpu@b", "student")
    assert second is not None and second.attempts == 2 and second.started_at == first.started_at
    assert store.hand_off(queued_job, 1, "student") is None  # not the current attempt: changes nothing
    store.update_job(queued_job, heartbeat_at=utcnow() - timedelta(seconds=settings.heartbeat_timeout_s + 5))
    assert store.reap_stale(settings.heartbeat_timeout_s, max_attempts=2).requeued == [queued_job]
    job = store.get_job(queued_job)
    assert (job.status, job.part, job.attempts) == ("queued", "student", 2)  # the student part, again
    reason = [e.data for e in store.events(queued_job) if e.type == "status"][-1]["reason"]
    assert "requeued for attempt 2 of 2" in reason  # the second of this part, the job's third


def test_a_job_cancelled_during_its_teacher_part_is_not_handed_on(unswept: Any, queued_job: str) -> None:
    store = unswept
    store.claim_job(queued_job, "gpu@a", "teacher")
    store.request_cancel(queued_job)
    assert store.hand_off(queued_job, 1, "student") is None
    assert store.get_job(queued_job).status == "running"  # the worker then ends it cancelled


def test_each_way_of_queueing_a_job_notes_it_until_sent_and_a_note_left_unsent_is_taken_by_one_sweeper(
    unswept: Any
) -> None:
    store, outbox = unswept, unswept.p + "outbox"
    job_id = new_job(store)
    assert store.r.zscore(outbox, job_id) is not None  # a new job: noted with its record
    assert store.unsent(older_than_s=60) == []  # its sender may still be sending
    store.sent(job_id)
    assert store.unsent(older_than_s=0) == []  # sent and said so: never again, however long it waits
    store.claim_job(job_id, "gpu@a", "teacher")
    assert store.hand_off(job_id, 1, "student") is not None
    assert store.r.zscore(outbox, job_id) is not None  # handed on: noted in the hand-off's transaction
    store.sent(job_id)
    store.claim_job(job_id, "cpu@b", "student")
    store.update_job(job_id, heartbeat_at=utcnow() - timedelta(seconds=120))
    assert store.reap_stale(60, max_attempts=2).requeued == [job_id]
    assert store.r.zscore(outbox, job_id) is not None  # requeued: noted in the requeue's transaction
    store.r.zadd(outbox, {job_id: time.time() - 120})  # as if its sender had died before the send
    assert store.unsent(older_than_s=60) == [(job_id, "student")]
    assert store.unsent(older_than_s=60) == []  # renewed by the sweeper that took it
    store.r.zadd(outbox, {job_id: time.time() - 120})
    store.claim_job(job_id, "cpu@c", "student")  # a delivery got through after all
    assert store.unsent(older_than_s=60) == [] and store.r.zscore(outbox, job_id) is None


def test_the_sweep_sends_a_requeued_job_and_a_note_left_unsent_once_and_no_job_waiting_its_turn(
    unswept: Any, settings: Any
) -> None:
    from jobstore.broker import celery_client
    from worker.sweep import sweep

    own = settings.model_copy(update={"key_prefix": unswept.p, "queue": "q", "max_attempts": 2})
    store, queue, timeout = unswept, unswept.p + "q", own.heartbeat_timeout_s
    lost, waiting, orphan = new_job(store), new_job(store), new_job(store)
    store.sent(lost)
    store.sent(waiting)  # sent, and queued behind a backlog: the sweep leaves it alone
    store.claim_job(lost, "gone@a", "teacher")
    store.update_job(lost, heartbeat_at=utcnow() - timedelta(seconds=timeout + 5))
    store.r.zadd(store.p + "outbox", {orphan: time.time() - timeout - 1})  # its API died before sending
    celery = celery_client(own)
    assert sweep(store, celery, own).requeued == [lost]
    sent = [json.loads(message)["headers"]["id"] for message in store.r.lrange(queue, 0, -1)]
    assert sorted(sent) == sorted([lost, orphan])  # each task's id is its job's
    assert store.r.zcard(store.p + "outbox") == 0  # said sent
    sweep(store, celery, own)
    assert store.r.llen(queue) == 2  # no second message for any of them


def _claimed_again(store: Any, job_id: str, after: int) -> dict[str, Any] | None:
    """The status event of the job's first claim after its first ``after`` status events, if any."""
    statuses = [e.data for e in store.events(job_id) if e.type == "status"]
    return next((s for s in statuses[after:] if s["status"] == "running"), None)


def _sweep_sent(scaled: dict[str, Any], job_id: str) -> bool:
    """Whether a worker's log says its sweep sent the job's task again."""
    said = "job part sent again: it was queued but its send was never confirmed"
    logs = "".join((scaled["logs"] / f"worker-{n}.log").read_text() for n in ("gpu", "cpu1"))
    return any(said in line and job_id in line for line in logs.splitlines())


def test_a_student_part_whose_sender_died_before_sending_is_sent_again_by_the_sweep_and_runs(
    scaled: dict[str, Any]
) -> None:
    """A teacher part's worker that recorded the hand-off and died before sending the student part's task:
    the job is queued with no message on any queue. A worker's sweep sends it, and the cpu worker takes it
    (and fails it at once: the job's dataset has no files)."""
    store, dead = scaled["store"], "gpu-gone@nowhere"
    job_id = new_job(store)
    store.claim_job(job_id, dead, "teacher")
    store.hand_off(job_id, 1, "student")
    assert store.r.llen(store.p + scaled["env"]["TAGDISTILL_CPU_QUEUE"]) == 0  # no message: nothing runs it
    # the note as old as a silent worker's heartbeat: the sweep's bound, without waiting it out
    assert store.r.zadd(store.p + "outbox", {job_id: time.time() - HEARTBEAT_TIMEOUT_S}, xx=True, ch=True)

    running = wait_for(lambda: _claimed_again(store, job_id, 2), 120, "a worker to claim the student part")
    (cpu,) = (name for name in scaled["workers"] if "-cpu" in name)
    assert running["worker"] == cpu and store.get_job(job_id).part == "student"
    assert store.r.zscore(store.p + "outbox", job_id) is None
    assert _sweep_sent(scaled, job_id)


def test_a_new_job_and_a_requeued_one_whose_sender_died_before_sending_are_sent_by_the_sweep_and_run(
    scaled: dict[str, Any]
) -> None:
    """A job recorded as ``POST /jobs`` records it, by an API that died before sending its task, and a lost
    job requeued by a sweeper that died before sending it again: both queued with no message. The sweep of
    a live worker sends each, and the gpu worker takes it (and fails it at once: no files)."""
    store, queue = scaled["store"], scaled["env"]["TAGDISTILL_QUEUE"]
    submitted = new_job(store)
    requeued = new_job(store)
    store.sent(requeued)
    store.claim_job(requeued, "gpu-gone@nowhere", "teacher")
    # silent for 5 s: over this sweeper's bound of 1 s, under the live workers' (their sweeps leave it)
    store.update_job(requeued, heartbeat_at=utcnow() - timedelta(seconds=5))
    assert store.reap_stale(1, max_attempts=2).requeued == [requeued]
    assert store.r.llen(store.p + queue) == 0  # no message: nothing runs either
    for job_id in (submitted, requeued):  # the notes as old as the sweep's bound, without waiting it out
        assert store.r.zadd(store.p + "outbox", {job_id: time.time() - HEARTBEAT_TIMEOUT_S}, xx=True, ch=True)

    (gpu,) = (name for name in scaled["workers"] if "-gpu@" in name)
    for job_id, before in ((submitted, 1), (requeued, 3)):
        running = wait_for(lambda j=job_id, b=before: _claimed_again(store, j, b), 120, f"{job_id} to run")
        assert running["worker"] == gpu
        assert store.r.zscore(store.p + "outbox", job_id) is None
        assert _sweep_sent(scaled, job_id)
    assert store.get_job(requeued).attempts == 2


def _worker(stack: dict[str, Any], name: str, queues: str) -> str:
    """Start a worker on ``queues`` with a data directory (cache) of its own; its full name."""
    full = f"{stack['env']['TAGDISTILL_QUEUE']}-{name}@{os.uname().nodename}"
    cache = stack["logs"] / f"cache-{name}"
    env = {**stack["env"], "TAGDISTILL_DATA_DIR": str(cache)}
    proc = start_worker(env, full, stack["logs"] / f"worker-{name}.log", stack["store"], queues)
    stack["procs"].append(proc)
    stack["workers"][full] = proc
    stack["caches"][full] = cache
    return full


def _body(dataset_id: str, teacher_epochs: int, student_epochs: int) -> dict[str, Any]:
    body = _job_body(dataset_id, Path(TEACHER))
    body["teacher"].update(base_model=TEACHER, epochs=teacher_epochs)
    body["distill"]["epochs"] = student_epochs
    return body


def _ended(client: httpx.Client, job_id: str) -> dict[str, Any] | None:
    job = client.get(f"/jobs/{job_id}").json()
    return job if job["status"] in {"succeeded", "failed", "cancelled"} else None


def _files(folder: Path) -> set[str]:
    """The files under ``folder``, relative to it."""
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def test_the_teacher_part_runs_on_the_gpu_worker_and_the_student_part_on_the_cpu_worker(
    scaled: dict[str, Any]
) -> None:
    (gpu, gpu_cache), (cpu, cpu_cache) = scaled["caches"].items()
    api_jobs = Path(scaled["env"]["TAGDISTILL_DATA_DIR"]) / "jobs"
    with httpx.Client(base_url=scaled["url"], timeout=60) as client:
        ds = upload_sample(client)
        assert ds.status_code == 201, ds.text
        assert scaled["operator"].exists(f"datasets/{ds.json()['id']}/train.conll")  # the API pushed it
        gone = {"dataset_id": ds.json()["id"], "teacher": {"path": "shared/gone"}}
        missing = client.post("/jobs", json=gone)  # looked for in the store: a 422 naming the field
        assert missing.status_code == 422 and "teacher.path: shared/gone does not exist" in missing.text
        job_id = client.post("/jobs", json=_body(ds.json()["id"], 1, 1)).json()["id"]
        assert scaled["store"].r.zscore(scaled["store"].p + "outbox", job_id) is None  # sent, and said so
        job = wait_for(lambda: _ended(client, job_id), 180, "the job to end")
        assert job["status"] == "succeeded", job["error"]
        assert job["stage_workers"] == {
            "teacher": gpu, "labeling": gpu, "student": cpu, "baseline": cpu, "evaluating": cpu,
        }
        assert not (api_jobs / job_id).exists()  # the API has not needed the job's files yet
        texts = ["John lives in Paris"]
        predicted = client.post("/predict", json={"model_id": job["model_id"], "texts": texts})
        assert predicted.status_code == 200, predicted.text
        assert (api_jobs / job_id / "student").is_dir()  # pulled from the store for /predict
        assert client.get(f"/models/{job['model_id']}/download").status_code == 200
    statuses = [e.data for e in scaled["store"].events(job_id) if e.type == "status"]
    assert [s["status"] for s in statuses] == ["queued", "running", "queued", "running", "succeeded"]
    assert statuses[1]["worker"] == gpu and statuses[2]["part"] == "student" and statuses[3]["worker"] == cpu
    on_gpu, on_cpu = _files(gpu_cache / "jobs" / job_id), _files(cpu_cache / "jobs" / job_id)
    assert "teacher_logits.safetensors" in on_gpu and not any(f.startswith("student/") for f in on_gpu)
    assert "teacher_logits.safetensors" in on_cpu and "student/model.onnx" in on_cpu  # pulled, then made
    assert not any(f.startswith("checkpoints/") for f in on_cpu)
    stored = {f.split(f"jobs/{job_id}/", 1)[1] for f in scaled["operator"].fs.find(
        f"{scaled['operator'].url}/jobs/{job_id}")}
    assert stored == on_cpu  # the finished job, as the last worker left it (checkpoints removed)


def test_a_cpu_worker_killed_mid_stage_is_replaced_by_another_resuming_from_the_store(
    scaled: dict[str, Any]
) -> None:
    store, workers = scaled["store"], scaled["workers"]
    cpu_workers = [name for name in workers if "-cpu" in name]
    cpu_workers.append(_worker(scaled, "cpu2", scaled["env"]["TAGDISTILL_CPU_QUEUE"]))
    with httpx.Client(base_url=scaled["url"], timeout=60) as client:
        ds = upload_sample(client).json()
        job_id = client.post("/jobs", json=_body(ds["id"], 1, EPOCHS)).json()["id"]
        killed_at, killed = _kill_after_epoch(store, job_id, workers, "student", 2)
        job = wait_for(lambda: _ended(client, job_id), 180, "the job to end")
    assert job["status"] == "succeeded", job["error"]
    (survivor,) = (name for name in cpu_workers if name != killed)
    assert killed in cpu_workers and job["stage_workers"]["student"] == survivor
    assert job["attempts"] == 3  # the teacher part's one, and two of the student part
    events = store.events(job_id)
    logs = [e.data["message"] for e in events if e.type == "log"]
    at = killed_at
    assert f"student: resumed at epoch {at + 1} of {EPOCHS} from the checkpoint of epoch {at}" in logs
    epochs = [e.data["epoch"] for e in events if e.type == "epoch" and e.data["stage"] == "student"]
    assert epochs == list(range(1, EPOCHS + 1))  # each epoch trained once: none lost, none redone
    assert job["stage_workers"]["teacher"].endswith(f"-gpu@{os.uname().nodename}")
