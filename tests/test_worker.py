"""The worker's parts against the real Redis: progress records, heartbeat and cancel, lost workers."""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import pytest
from conftest import wait_for

from service.schemas import Dataset, utcnow
from service.store import Conflict, Store
from tagdistill.progress import Cancelled
from worker.progress import Heartbeat, RedisProgress


@pytest.fixture
def job_id(store: Store) -> str:
    """A queued job on a dataset record of its own (no files: these tests never run the engine)."""
    ds = Dataset(
        id=store.new_id("ds"), created_at=utcnow(), files={}, format="conll", unlabeled_format="text",
        tag_column=-1, size_bytes=0, stats={},
    )
    store.add_dataset(ds)
    job, created = store.create_job(ds.id, {"dataset_id": ds.id}, None, "f", 60)
    assert created
    return job.id


def test_progress_is_recorded_with_fraction_and_events(store: Store, job_id: str) -> None:
    progress = RedisProgress(store, job_id, threading.Event())
    progress.stage("teacher", 10)
    progress.step(5, loss=0.5)
    progress.epoch(1, {"dev_f1": 0.25, "per_type": {"PER": {"f1": 0.5}}})
    progress.stage("labeling", 0)
    progress.log("hello")
    job = store.get_job(job_id)
    assert job.stage == "labeling"
    assert job.progress.fraction == pytest.approx(0.5)  # teacher (half the job) done, labeling begun
    assert job.metrics["teacher"] == {"epoch": 1, "dev_f1": 0.25, "per_type": {"PER": {"f1": 0.5}}}
    kinds = [(e.type, e.data.get("stage")) for e in store.events(job_id)]
    assert kinds[0] == ("status", None)  # queued
    assert ("stage", "teacher") in kinds and ("epoch", "teacher") in kinds
    assert kinds[-2:] == [("stage", "labeling"), ("log", None)]


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


def test_a_queued_job_is_cancelled_at_once_and_never_claimed(store: Store, job_id: str) -> None:
    assert store.request_cancel(job_id).status == "cancelled"
    assert store.claim_job(job_id, "w1") is None


def test_a_job_whose_worker_vanished_is_failed(store: Store, job_id: str, settings) -> None:
    store.claim_job(job_id, "gone@host")
    store.update_job(job_id, heartbeat_at=utcnow() - timedelta(seconds=settings.heartbeat_timeout_s + 5))
    assert job_id in store.reap_stale(settings.heartbeat_timeout_s)
    job = store.get_job(job_id)
    assert job.status == "failed" and "gone@host lost" in job.error
    assert job_id not in store.reap_stale(settings.heartbeat_timeout_s)
    assert [e.data for e in store.events(job_id) if e.type == "status"][-1]["status"] == "failed"


def test_records_are_plain_json_hashes(store: Store, job_id: str) -> None:
    raw = store.r.hgetall(store.p + f"job:{job_id}")
    assert json.loads(raw["status"]) == "queued"
    assert store.r.zscore(store.p + "jobs:queued", job_id) is not None
