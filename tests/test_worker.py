"""The worker's parts against the real Redis: progress records, heartbeat and cancel, lost workers."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest
from conftest import wait_for

from jobstore.records import Dataset, Model, utcnow
from jobstore.store import Conflict, NotFound, Store
from tagdistill.config import JobConfig
from tagdistill.progress import Cancelled
from worker.progress import STAGE_WEIGHTS, Heartbeat, RedisProgress


@pytest.fixture
def job_id(store: Store) -> Iterator[str]:
    """A queued job on a dataset record of its own (no files: these tests never run the engine)."""
    ds = Dataset(
        id=store.new_id("ds"), created_at=utcnow(), files={}, format="conll", unlabeled_format="text",
        tag_column=-1, size_bytes=0, stats={},
    )
    store.add_dataset(ds)
    job, created = store.create_job(ds.id, JobConfig(dataset_id=ds.id), None, "f", 60)
    assert created
    yield job.id
    store.sent(job.id)  # never to run (a requeue notes it again): a session worker's sweep must not send it


def test_progress_is_recorded_with_fraction_and_events(store: Store, job_id: str) -> None:
    progress = RedisProgress(store, job_id, threading.Event())
    progress.stage("teacher", 10)
    progress.step(5, loss=0.5)
    progress.epoch(1, {"dev_f1": 0.25, "per_type": {"PER": {"f1": 0.5}}})
    progress.stage("labeling", 0)
    progress.log("hello")
    job = store.get_job(job_id)
    assert job.stage == "labeling"
    assert job.progress.fraction == pytest.approx(STAGE_WEIGHTS["teacher"])  # teacher done, labeling begun
    assert job.metrics["teacher"] == {"epoch": 1, "dev_f1": 0.25, "per_type": {"PER": {"f1": 0.5}}}
    kinds = [(e.type, e.data.get("stage")) for e in store.events(job_id)]
    assert kinds[0] == ("status", None)  # queued
    assert ("stage", "teacher") in kinds and ("epoch", "teacher") in kinds
    assert kinds[-2:] == [("stage", "labeling"), ("log", None)]


def test_log_lines_name_files_relative_to_the_data_directory(store: Store, job_id: str, settings) -> None:
    data = settings.data
    progress = RedisProgress(store, job_id, threading.Event(), data.redact)
    progress.log(f"teacher: reusing {data.root}/jobs/job_x/teacher; data in {data.root}")
    assert store.events(job_id)[-1].data["message"] == "teacher: reusing jobs/job_x/teacher; data in ."


def test_a_cancel_reaches_the_job_through_the_heartbeat(store: Store, job_id: str) -> None:
    assert store.claim_job(job_id, "w1") is not None
    assert store.claim_job(job_id, "w2") is None  # a second delivery does not run it again
    with Heartbeat(store, job_id, every_s=0.1) as beat:
        progress = RedisProgress(store, job_id, beat.cancelled)
        progress.stage("student", 100)
        store.request_cancel(job_id)
        wait_for(beat.cancelled.is_set, 5, "the heartbeat to see the cancel")
        with pytest.raises(Cancelled):
            progress.step()
    assert store.get_job(job_id).status == "running"  # the task records the end, not the reporter
    assert store.finish_job(job_id, "cancelled").status == "cancelled"
    with pytest.raises(Conflict):
        store.request_cancel(job_id)


def _model(store: Store, job_id: str) -> Model:
    return Model(
        id=store.new_id("mdl"), job_id=job_id, dataset_id="ds", created_at=utcnow(), labels=["O"],
        student_path="s", teacher_path="t", teacher={}, student={}, speedup={}, seconds={}, device="cpu",
        config=JobConfig(dataset_id="ds"),
    )


def test_only_the_current_run_registers_a_model_and_ends_the_job(store: Store, job_id: str, settings) -> None:
    store.claim_job(job_id, "lost@host")
    _silence(store, job_id, settings)
    assert store.reap_stale(settings.heartbeat_timeout_s, max_attempts=2).requeued == [job_id]
    late = _model(store, job_id)  # the first run, still alive through an outage, finishes after its requeue
    assert store.finish_job(job_id, "succeeded", attempt=1, model=late).status == "queued"
    store.claim_job(job_id, "other@host")
    assert store.finish_job(job_id, "succeeded", attempt=1, model=late).status == "running"
    with pytest.raises(NotFound):
        store.get_model(late.id)
    current = _model(store, job_id)
    job = store.finish_job(job_id, "succeeded", attempt=2, model=current)
    assert job.status == "succeeded" and job.model_id == current.id
    assert store.get_model(current.id).job_id == job_id  # one model for the job: the current run's


def test_a_cancel_during_the_last_stage_leaves_no_model(store: Store, job_id: str) -> None:
    store.claim_job(job_id, "w1")
    store.request_cancel(job_id)  # while the run evaluates, after its last progress check
    model = _model(store, job_id)
    assert store.finish_job(job_id, "succeeded", attempt=1, model=model).status == "running"
    with pytest.raises(NotFound):
        store.get_model(model.id)
    assert store.finish_job(job_id, "cancelled", attempt=1).status == "cancelled"


def test_a_queued_job_is_cancelled_at_once_and_never_claimed(store: Store, job_id: str) -> None:
    assert store.request_cancel(job_id).status == "cancelled"
    assert store.claim_job(job_id, "w1") is None


def _silence(store: Store, job_id: str, settings) -> None:
    store.update_job(job_id, heartbeat_at=utcnow() - timedelta(seconds=settings.heartbeat_timeout_s + 5))


def test_a_job_whose_worker_vanished_is_requeued_then_failed(store: Store, job_id: str, settings) -> None:
    timeout = settings.heartbeat_timeout_s
    first = store.claim_job(job_id, "gone@host")
    assert first is not None and first.attempts == 1
    assert store.reap_stale(timeout, max_attempts=2).requeued == []  # its heartbeat is fresh
    _silence(store, job_id, settings)
    assert store.reap_stale(timeout, max_attempts=2).requeued == [job_id]
    assert store.get_job(job_id).status == "queued"
    assert store.reap_stale(timeout, max_attempts=2).requeued == []  # one sweeper acts, once
    assert store.heartbeat(job_id, attempt=1)  # the lost run is told to stop...
    assert store.finish_job(job_id, "failed", attempt=1).status == "queued"  # ...and cannot end the job

    second = store.claim_job(job_id, "other@host")
    assert second is not None and second.attempts == 2
    assert store.claim_job(job_id, "third@host") is None  # never two runs at once
    assert not store.heartbeat(job_id, attempt=2)
    _silence(store, job_id, settings)
    assert store.reap_stale(timeout, max_attempts=2).failed == [job_id]
    job = store.get_job(job_id)
    assert job.status == "failed" and "other@host lost" in job.error and "attempt 2 of 2" in job.error
    statuses = [e.data for e in store.events(job_id) if e.type == "status"]
    assert [d["status"] for d in statuses] == ["queued", "running", "queued", "running", "failed"]
    assert statuses[1]["attempt"] == 1
    assert statuses[3] == {"status": "running", "attempt": 2, "worker": "other@host"}
    assert "gone@host lost" in statuses[2]["reason"] and "attempt 2 of 2" in statuses[2]["reason"]


def test_with_one_attempt_a_vanished_worker_fails_the_job(store: Store, job_id: str, settings) -> None:
    store.claim_job(job_id, "gone@host")
    _silence(store, job_id, settings)
    assert store.reap_stale(settings.heartbeat_timeout_s).failed == [job_id]  # max_attempts=1
    job = store.get_job(job_id)
    assert job.status == "failed" and "gone@host lost" in job.error
    assert store.reap_stale(settings.heartbeat_timeout_s).failed == []


def test_records_are_plain_json_hashes(store: Store, job_id: str) -> None:
    raw = store.r.hgetall(store.p + f"job:{job_id}")
    assert json.loads(raw["status"]) == "queued"
    assert store.r.zscore(store.p + "jobs:queued", job_id) is not None


def test_a_cancelled_job_whose_worker_vanished_is_cancelled_not_requeued(
    store: Store, job_id: str, settings
) -> None:
    store.claim_job(job_id, "gone@host")
    store.request_cancel(job_id)
    _silence(store, job_id, settings)
    assert store.reap_stale(settings.heartbeat_timeout_s, max_attempts=3).failed == [job_id]
    assert store.get_job(job_id).status == "cancelled"


def test_deliveries_of_ended_jobs_are_dropped_before_the_pool_and_a_requeue_still_runs(
    store: Store, settings, worker: str
) -> None:
    from jobstore.broker import celery_client, enqueue_job

    celery = celery_client(settings)
    ids = []
    for _ in range(3):
        ds = Dataset(id=store.new_id("ds"), created_at=utcnow(), files={}, format="conll",
                     unlabeled_format="text", tag_column=-1, size_bytes=0, stats={})
        store.add_dataset(ds)
        job, _ = store.create_job(ds.id, JobConfig(dataset_id=ds.id), None, "f", 60)
        store.request_cancel(job.id)  # cancelled while its message is still on the way
        enqueue_job(celery, job.id, settings.queue)
        ids.append(job.id)
    for job_id in ids:  # revoked in the worker's main process: no pool process spent on them
        wait_for(lambda j=job_id: celery.AsyncResult(j).state == "REVOKED", 120, f"{job_id} dropped")

    # the same job id queued again (as a requeue does) is not remembered as revoked: it runs
    store.transition(ids[0], {"cancelled"}, "queued", cancel_requested=False)
    enqueue_job(celery, ids[0], settings.queue)
    ended = wait_for(lambda: store.get_job(ids[0]).status in ("failed", "succeeded"), 120, "the requeued run")
    assert ended and store.get_job(ids[0]).attempts == 1  # it ran (and failed: its dataset has no files)
    assert celery.AsyncResult(ids[0]).state == "SUCCESS"


def test_a_cuda_job_split_across_queues_runs_its_student_part_on_whatever_the_cpu_worker_has() -> None:
    from worker.tasks import part_config

    cfg = JobConfig(dataset_id="ds_1", device="cuda")
    assert part_config(cfg, "teacher", split=True).device == "cuda"  # the teacher part keeps its GPU
    assert part_config(cfg, "student", split=True).device == "auto"  # the cpu queue's worker may have none
    assert part_config(cfg, "student", split=False).device == "cuda"  # one queue: one worker runs it all
    assert part_config(cfg.model_copy(update={"device": "cpu"}), "student", split=True).device == "cpu"
