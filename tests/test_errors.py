"""One error body everywhere (``{"error": {type, code, message, param}}``), base models checked at
submission, and events read page by page.

Through real HTTP against the session's API, Redis and worker (see conftest); the 503 from an API
whose Redis is not there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import ROOT, _stop, start_api
from test_service import cancelled_job, slow_job, wait_status  # noqa: F401  (cancelled_job: a fixture)

from service.bodies import ErrorBody
from service.run import free_port

ERROR_KEYS = {"type", "code", "message", "param"}


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    """The ``error`` of an answer with ``status``, once its body is checked against ErrorBody."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    ErrorBody.model_validate(body)
    assert set(body["error"]) == ERROR_KEYS
    return body["error"]


@pytest.fixture(scope="module")
def api_without_redis(service_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An API whose Redis URL has no server behind it: every route that needs Redis is a 503."""
    env = {**service_env, "TAGDISTILL_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    proc, url = start_api(env, tmp_path_factory.mktemp("logs") / "no-redis-api.log", healthy_status=503)
    yield url
    _stop(proc)


def test_error_body_shape_on_404_409_413_422_503(
    client: httpx.Client, cancelled_job: dict[str, Any], dataset: dict[str, Any], api_without_redis: str
) -> None:
    missing = error_of(client.get("/jobs/job_nope"), 404)
    assert missing == {
        "type": "not_found", "code": "job_not_found", "message": "no job 'job_nope'", "param": None,
    }

    finished = error_of(client.post(f"/jobs/{cancelled_job['id']}/cancel"), 409)
    assert finished["type"] == "conflict" and finished["code"] == "job_finished"
    assert finished["message"] == f"job {cancelled_job['id']} already cancelled" and finished["param"] is None

    big = b"Paris B-LOC\n\n" * (3 * 1024 * 1024 // 13)  # over the tests' 2 MB upload limit
    too_large = error_of(client.post("/datasets", files={"train": ("t.conll", big)}), 413)
    assert too_large["type"] == "too_large" and too_large["code"] == "body_too_large"
    assert "over the limit of" in too_large["message"]

    invalid = error_of(client.post("/jobs", json={"dataset_id": dataset["id"], "seed": "x"}), 422)
    assert invalid["type"] == "invalid_request" and invalid["code"] == "field_invalid"
    assert invalid["param"] == "seed" and "integer" in invalid["message"]

    with httpx.Client(base_url=api_without_redis, timeout=30) as down:
        response = down.get("/jobs")
        unavailable = error_of(response, 503)
    assert unavailable == {
        "type": "unavailable", "code": "redis_unreachable", "param": None,
        "message": "the service's Redis is unreachable; try again shortly",
    }
    assert response.headers["retry-after"] == "5"


def test_a_422_lists_every_invalid_field_and_names_the_first(
    client: httpx.Client, dataset: dict[str, Any]
) -> None:
    body = {"dataset_id": dataset["id"], "teacher": {"epochs": -3}, "distill": {"mode": "magic", "epoch": 1}}
    response = client.post("/jobs", json=body)
    error = error_of(response, 422)
    errors = response.json()["errors"]
    assert {e["param"] for e in errors} == {"teacher.epochs", "distill.mode", "distill.epoch"}
    assert {e["param"]: e["code"] for e in errors}["distill.epoch"] == "field_unknown"
    assert error == {"type": "invalid_request", **{k: errors[0][k] for k in ("code", "message", "param")}}


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [("GET", "/no/such/route", 404, "route_not_found"), ("DELETE", "/jobs", 405, "method_not_allowed")],
)
def test_starlettes_own_errors_use_the_error_body(
    client: httpx.Client, method: str, path: str, status: int, code: str
) -> None:
    assert error_of(client.request(method, path), status)["code"] == code


def test_a_body_that_is_not_json_is_a_422_saying_where(client: httpx.Client) -> None:
    response = client.post("/jobs", content=b'{"dataset_id": ', headers={"content-type": "application/json"})
    error = error_of(response, 422)
    assert error["code"] == "json_invalid" and error["param"] is None
    assert "not valid JSON" in error["message"] and "character 15" in error["message"]


def test_openapi_documents_the_error_body_for_422_too(client: httpx.Client) -> None:
    schema = client.get("/openapi.json").json()
    create = schema["paths"]["/jobs"]["post"]["responses"]
    for status in ("404", "409", "413", "422", "429", "503"):
        assert create[status]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")
    assert "HTTPValidationError" not in schema["components"]["schemas"]


# --- base models that cannot be loaded ----------------------------------------------------------


def test_an_unloadable_hugging_face_name_is_422_at_submission_naming_it(
    client: httpx.Client, dataset: dict[str, Any]
) -> None:
    def job_ids() -> list[str]:
        return [j["id"] for j in client.get("/jobs", params={"limit": 100}).json()["items"]]

    before = job_ids()
    body = {"dataset_id": dataset["id"], "teacher": {"base_model": "bert-base-cased"}}
    response = client.post("/jobs", json=body)
    error = error_of(response, 422)
    assert error["param"] == "teacher.base_model" and error["code"] == "base_model_unloadable"
    assert "'bert-base-cased' cannot be loaded as a base model" in error["message"]
    assert job_ids() == before  # no job was made


def test_a_saved_model_folder_in_shared_is_accepted_and_one_without_a_config_is_not(
    client: httpx.Client, dataset: dict[str, Any], tiny_teacher: Path, settings
) -> None:
    shared = Path(settings.data_dir) / "shared"
    good, empty = shared / f"bert-{os.getpid()}", shared / f"empty-{os.getpid()}"
    shutil.copytree(tiny_teacher, good)
    empty.mkdir(parents=True)
    try:
        body = {"dataset_id": dataset["id"], "teacher": {"base_model": f"shared/{empty.name}"}}
        error = error_of(client.post("/jobs", json=body), 422)
        assert error["param"] == "teacher.base_model" and f"shared/{empty.name}" in error["message"]
        assert str(settings.data_dir) not in error["message"]  # no server path
        body = slow_job(dataset["id"], good)
        body["teacher"]["base_model"] = f"shared/{good.name}"
        accepted = client.post("/jobs", json=body)
        assert accepted.status_code == 202, accepted.text
        client.post(f"/jobs/{accepted.json()['id']}/cancel")
        wait_status(client, accepted.json()["id"], {"cancelled"}, 60)
    finally:
        shutil.rmtree(good)
        shutil.rmtree(empty)


# --- events, page by page -----------------------------------------------------------------------


def test_events_page_by_page_with_after_and_limit_follow_the_next_link(
    client: httpx.Client, cancelled_job: dict[str, Any]
) -> None:
    url = f"/jobs/{cancelled_job['id']}/events"
    everything = client.get(url).json()
    assert len(everything) >= 2 and "link" not in client.get(url).headers  # all on one page: no next
    pages, response = [], client.get(url, params={"limit": 1})
    while True:
        pages.append(response.json())
        link = response.headers.get("link")
        if link is None:
            break
        assert link.endswith('; rel="next"')
        response = client.get(link[1 : link.index(">")])
    assert [len(p) for p in pages] == [1] * len(everything)
    assert [e for p in pages for e in p] == everything
    after = client.get(url, params={"after": everything[0]["seq"]}).json()
    assert after == everything[1:]


def test_a_hugging_face_name_in_the_local_cache_passes_offline(tmp_path: Path, tiny_teacher: Path) -> None:
    # the Hub cache's own layout (models--org--name/refs/main -> snapshots/<commit>/), filled from a
    # saved model, read by a fresh process that may not go online (HF_HUB_OFFLINE=1)
    repo = tmp_path / "hub" / "models--local--tiny-bert"
    snapshot = repo / "snapshots" / ("0" * 40)
    shutil.copytree(tiny_teacher, snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    check = (
        "from service.hub import check_base_model\n"
        "check_base_model('local/tiny-bert', 'local/tiny-bert', str)\n"
        "try:\n"
        "    check_base_model('local/not-cached', 'local/not-cached', str)\n"
        "except Exception as exc:\n"
        "    print(exc.code, exc.param)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(repo.parent)}
    done = subprocess.run([sys.executable, "-c", check], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["base_model_unloadable", "teacher.base_model"]
