"""API keys: a second API process with keys set, on the session's Redis, worker and data directory.

Teams see only their own datasets, jobs and models (someone else's is a 404, like a missing
one); an admin key sees all; without a valid key only /health, the docs and the dashboard's
files answer.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from builders import remove_model, untrained_model
from conftest import _stop, start_api, upload_sample
from test_service import KNOWN, slow_job, wait_status

KEYS = {"team-a": "key-a-" + secrets.token_hex(8), "team-b": "key-b-" + secrets.token_hex(8)}
ADMIN = "key-admin-" + secrets.token_hex(8)


def auth(owner: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN if owner == 'admin' else KEYS[owner]}"}


@pytest.fixture(scope="module")
def keyed_api(service_env: dict[str, str], worker: str, tmp_path_factory) -> Iterator[str]:
    env = {
        **service_env,
        "TAGDISTILL_API_KEYS": ",".join(f"{owner}:{key}" for owner, key in KEYS.items()),
        "TAGDISTILL_ADMIN_KEYS": f"ops:{ADMIN}",
        "TAGDISTILL_MAX_UPLOAD_MB": "16",  # room for the 10 MB line below
    }
    proc, url = start_api(env, tmp_path_factory.mktemp("logs") / "keyed-api.log")
    yield url
    _stop(proc)


@pytest.fixture
def as_(keyed_api: str) -> Iterator[Any]:
    clients: list[httpx.Client] = []

    def make(owner: str | None) -> httpx.Client:
        c = httpx.Client(base_url=keyed_api, timeout=60, headers=auth(owner) if owner else {})
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.close()


@pytest.fixture(scope="module")
def team_a_dataset(keyed_api: str) -> dict[str, Any]:
    with httpx.Client(base_url=keyed_api, timeout=60, headers=auth("team-a")) as c:
        response = upload_sample(c)
    assert response.status_code == 201, response.text
    assert response.json()["owner"] == "team-a"
    return response.json()


@pytest.fixture(scope="module")
def team_a_model(keyed_api: str, team_a_dataset: dict[str, Any], store, settings) -> Iterator[dict[str, Any]]:
    """A model record of team-a whose student is a small, untrained BiLSTM (no training needed)."""
    from tagdistill.config import StudentConfig
    from tagdistill.student import NeuralTagger
    from tagdistill.vocab import Vocab

    cfg = StudentConfig(hidden=8, word_dim=8, char_dim=4, char_hidden=4)
    student = NeuralTagger(cfg, Vocab.build([KNOWN.split()], ["O", "B-LOC", "I-LOC"], cfg))
    job_dir = Path(settings.data_dir) / "jobs" / f"job_{secrets.token_hex(6)}"
    model = untrained_model(store, job_dir, student, team_a_dataset["id"], owner="team-a")
    yield model.model_dump(mode="json")
    remove_model(store, model)  # a model without metrics: later tests (the dashboard's) never list it


GUARDED = [
    ("GET", "/datasets"), ("POST", "/datasets"), ("GET", "/datasets/ds_x"), ("DELETE", "/datasets/ds_x"),
    ("GET", "/jobs"), ("POST", "/jobs"), ("GET", "/jobs/job_x"), ("POST", "/jobs/job_x/cancel"),
    ("GET", "/jobs/job_x/events"), ("GET", "/models"), ("GET", "/models/mdl_x"),
    ("GET", "/models/mdl_x/download"), ("POST", "/predict"), ("GET", "/no/such/route"),
]


@pytest.mark.parametrize(("method", "path"), GUARDED)
def test_every_route_needs_a_valid_key(as_, method: str, path: str) -> None:
    anonymous = as_(None)
    missing = anonymous.request(method, path)
    assert missing.status_code == 401, missing.text
    assert missing.headers["www-authenticate"] == "Bearer"
    error = missing.json()["error"]
    assert "Authorization: Bearer" in error.pop("message")
    assert error == {"type": "unauthorized", "code": "api_key_missing", "param": "header.Authorization"}
    wrong = anonymous.request(method, path, headers={"Authorization": f"Bearer {KEYS['team-a']}x"})
    assert wrong.status_code == 401
    assert wrong.headers["www-authenticate"].startswith("Bearer error=")
    assert wrong.json()["error"]["message"] == "the API key is not valid"
    assert wrong.json()["error"]["code"] == "api_key_invalid"
    basic = anonymous.request(method, path, headers={"Authorization": f"Basic {KEYS['team-a']}"})
    assert basic.status_code == 401 and "Bearer" in basic.json()["error"]["message"]


@pytest.mark.parametrize("path", ["/health", "/docs", "/openapi.json", "/", "/ui/api.js"])
def test_health_docs_and_dashboard_files_are_public(as_, path: str) -> None:
    response = as_(None).get(path)
    assert response.status_code == 200, response.text
    if path == "/openapi.json":
        assert response.json()["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


def test_an_upload_without_a_key_is_refused_before_it_is_read(as_) -> None:
    big = b"Paris B-LOC\n\n" * 100_000
    response = as_(None).post("/datasets", files={"train": ("t.conll", big), "dev": ("d.conll", big)})
    assert response.status_code == 401


def test_datasets_are_seen_by_their_owner_and_admins_only(
    as_, team_a_dataset: dict[str, Any], dataset: dict[str, Any]
) -> None:
    a, b, admin = as_("team-a"), as_("team-b"), as_("admin")
    ds_id = team_a_dataset["id"]
    assert a.get(f"/datasets/{ds_id}").json() == team_a_dataset
    assert admin.get(f"/datasets/{ds_id}").status_code == 200

    other = b.get(f"/datasets/{ds_id}")
    assert other.status_code == 404  # as if missing
    assert other.json()["error"] == {
        "type": "not_found", "code": "dataset_not_found", "message": f"no dataset {ds_id!r}", "param": None,
    }
    assert b.delete(f"/datasets/{ds_id}").status_code == 404
    assert ds_id not in [d["id"] for d in b.get("/datasets", params={"limit": 100}).json()["items"]]
    assert a.get(f"/datasets/{ds_id}").status_code == 200  # the refused delete changed nothing

    mine = [d["id"] for d in a.get("/datasets", params={"limit": 100}).json()["items"]]
    assert ds_id in mine and dataset["id"] not in mine  # the open service's dataset has no owner
    everything = [d["id"] for d in admin.get("/datasets", params={"limit": 100}).json()["items"]]
    assert {ds_id, dataset["id"]} <= set(everything)


def test_jobs_use_only_the_callers_datasets_and_stay_private(
    as_, team_a_dataset: dict[str, Any], tiny_teacher: Path, settings
) -> None:
    a, b, admin = as_("team-a"), as_("team-b"), as_("admin")
    body = slow_job(team_a_dataset["id"], tiny_teacher)
    refused = b.post("/jobs", json=body)
    assert refused.status_code == 422
    assert refused.json()["error"]["param"] == "dataset_id"

    key = {"Idempotency-Key": f"shared-{secrets.token_hex(4)}"}
    job = a.post("/jobs", json=body, headers=key)
    assert job.status_code == 202, job.text
    job = job.json()
    assert job["owner"] == "team-a"
    try:
        for method, path in [("GET", f"/jobs/{job['id']}"), ("GET", f"/jobs/{job['id']}/events"),
                             ("POST", f"/jobs/{job['id']}/cancel")]:
            response = b.request(method, path)
            assert response.status_code == 404 and job["id"] in response.json()["error"]["message"]
        assert job["id"] not in [j["id"] for j in b.get("/jobs", params={"limit": 100}).json()["items"]]
        assert job["id"] in [j["id"] for j in a.get("/jobs", params={"limit": 100}).json()["items"]]
        assert admin.get(f"/jobs/{job['id']}").json()["owner"] == "team-a"

        # team-b's own dataset, with team-a's Idempotency-Key: a new job of team-b, not a replay
        b_ds = upload_sample(b).json()
        b_job = b.post("/jobs", json=slow_job(b_ds["id"], tiny_teacher), headers=key)
        assert b_job.status_code == 202 and "idempotent-replayed" not in b_job.headers
        assert b_job.json()["id"] != job["id"] and b_job.json()["owner"] == "team-b"
        b.post(f"/jobs/{b_job.json()['id']}/cancel")

        # files of team-a's job: not for team-b, whichever field names them
        teacher_dir = f"jobs/{job['id']}/teacher"
        for change in [
            {"teacher": {"path": teacher_dir}},
            {"teacher": {"base_model": str(Path(settings.data_dir) / teacher_dir)}},
            {"student": {"embeddings": f"datasets/{team_a_dataset['id']}/train.conll"}},
        ]:
            (Path(settings.data_dir) / teacher_dir).mkdir(parents=True, exist_ok=True)
            response = b.post("/jobs", json={"dataset_id": b_ds["id"], **change})
            assert response.status_code == 422, response.text
            assert "in your jobs, your datasets or shared/" in response.json()["error"]["message"]
        # its owner gets past that check (and then fails on the empty folder only at run time)
        own = a.post("/jobs", json={"dataset_id": team_a_dataset["id"], "teacher": {"path": teacher_dir}})
        assert own.status_code == 202, own.text
        a.post(f"/jobs/{own.json()['id']}/cancel")
        wait_status(a, own.json()["id"], {"cancelled", "failed"}, 30)
    finally:
        assert admin.post(f"/jobs/{job['id']}/cancel").status_code in (202, 409)  # admins may
    wait_status(a, job["id"], {"cancelled"}, 30)


def test_models_predict_and_download_are_the_owners(as_, team_a_model: dict[str, Any]) -> None:
    a, b, admin = as_("team-a"), as_("team-b"), as_("admin")
    mdl = team_a_model["id"]
    assert a.get(f"/models/{mdl}").json()["owner"] == "team-a"
    assert admin.get(f"/models/{mdl}").status_code == 200
    predicted = a.post("/predict", json={"model_id": mdl, "texts": [KNOWN]})
    assert predicted.status_code == 200, predicted.text
    assert predicted.json()["results"][0]["tokens"] == KNOWN.split()
    assert a.put("/aliases/production", json={"model_id": mdl}).status_code == 200  # team-a's own alias
    assert a.post("/predict", json={"texts": [KNOWN]}).json()["model_id"] == mdl
    assert a.delete("/aliases/production").status_code == 204
    assert a.get(f"/models/{mdl}/download").status_code == 200

    for method, path, body in [
        ("GET", f"/models/{mdl}", None), ("GET", f"/models/{mdl}/download", None),
        ("POST", "/predict", {"model_id": mdl, "texts": [KNOWN]}),
    ]:
        response = b.request(method, path, json=body)
        assert response.status_code == 404 and response.json()["error"]["message"] == f"no model {mdl!r}"
    assert mdl not in [m["id"] for m in b.get("/models").json()["items"]]
    assert b.put("/aliases/production", json={"model_id": mdl}).status_code == 422  # not team-b's model
    unnamed = b.post("/predict", json={"texts": [KNOWN]})  # team-b has no alias of its own
    assert unnamed.status_code == 422 and "no 'production' alias" in unnamed.text


def test_a_10_mb_line_is_422_naming_file_and_line(as_, team_a_dataset: dict[str, Any]) -> None:
    a = as_("team-a")
    train = b"Paris B-LOC\n\n" + b"x" * (10 << 20) + b" O\n"
    response = a.post("/datasets", files={"train": ("t.conll", train), "dev": ("d.conll", train[:13])})
    assert response.status_code == 422, response.text
    error = response.json()["errors"][0]
    assert error["param"] == "train" and error["line"] == 3
    assert "train.conll, line 3: line longer than" in error["message"]
    assert a.get(f"/datasets/{team_a_dataset['id']}").json() == team_a_dataset  # nothing else touched


@pytest.fixture(scope="module")
def quota_api(service_env: dict[str, str], tmp_path_factory) -> Iterator[str]:
    """An API with keys and small quotas, with a key prefix and queue of its own (no worker: jobs wait)."""
    import redis

    tag = secrets.token_hex(4)
    env = {
        **service_env,
        "TAGDISTILL_API_KEYS": ",".join(f"{owner}:{key}" for owner, key in KEYS.items()),
        "TAGDISTILL_KEY_PREFIX": f"tdquota-{tag}:", "TAGDISTILL_QUEUE": f"tdquota-{tag}",
        "TAGDISTILL_MAX_ACTIVE_JOBS": "2", "TAGDISTILL_MAX_UPLOADS_PER_HOUR": "3",
    }
    proc, url = start_api(env, tmp_path_factory.mktemp("logs") / "quota-api.log")
    yield url
    _stop(proc)
    client = redis.Redis.from_url(service_env["TAGDISTILL_REDIS_URL"])
    client.delete(*client.scan_iter(match=f"*tdquota-{tag}*", count=1000))


def test_quotas_are_per_key_and_answered_with_429_and_retry_after(quota_api: str) -> None:
    with (httpx.Client(base_url=quota_api, timeout=60, headers=auth("team-a")) as a,
          httpx.Client(base_url=quota_api, timeout=60, headers=auth("team-b")) as b):
        uploads = [upload_sample(a) for _ in range(3)]
        assert [r.status_code for r in uploads] == [201] * 3
        over = upload_sample(a)
        assert over.status_code == 429 and "3 uploads in this hour" in over.json()["error"]["message"]
        assert 0 < int(over.headers["Retry-After"]) <= 3600
        assert upload_sample(b).status_code == 201  # another key's quota is its own

        dataset_id = uploads[0].json()["id"]
        jobs = [a.post("/jobs", json={"dataset_id": dataset_id}) for _ in range(2)]
        assert [r.status_code for r in jobs] == [202, 202]
        third = a.post("/jobs", json={"dataset_id": dataset_id})
        assert third.status_code == 429 and "2 jobs queued or running" in third.json()["error"]["message"]
        assert third.json()["error"]["type"] == "rate_limited"
        assert third.json()["error"]["code"] == "quota_exceeded"
        assert int(third.headers["Retry-After"]) > 0
        assert a.post(f"/jobs/{jobs[0].json()['id']}/cancel").status_code == 202
        assert a.post("/jobs", json={"dataset_id": dataset_id}).status_code == 202  # room again
