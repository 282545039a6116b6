"""The service through real HTTP, with a real Redis and a real Celery worker process (see conftest)."""

from __future__ import annotations

import io
import json
import tarfile
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from builders import SAMPLE
from conftest import upload_sample, wait_for

KNOWN = "Researchers at Osaka University said they had found a new species of frog in the Andes ."
KNOWN_ENTITIES = [
    {"text": "Osaka University", "label": "ORG", "start": 15, "end": 31},
    {"text": "Andes", "label": "LOC", "start": 81, "end": 86},
]


def spans_of(entities: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Entities without their ``score`` (a probability, checked in test_export), to compare spans."""
    assert all(0 <= e["score"] <= 1 for e in entities)
    return [{k: v for k, v in e.items() if k != "score"} for e in entities]


def fast_job(dataset_id: str, teacher: Path, **teacher_overrides: Any) -> dict[str, Any]:
    """A job that runs every stage in well under a minute on one core: tiny teacher, small student."""
    return {
        "dataset_id": dataset_id,
        "teacher": {
            "base_model": str(teacher), "epochs": 1, "min_steps": 0, "learning_rate": 3e-3,
            **teacher_overrides,
        },
        "student": {"hidden": 100},
        "distill": {"mode": "kd", "epochs": 6, "min_steps": 0, "learning_rate": 5e-3, "distill_weight": 0.1},
        "device": "cpu",
    }


def slow_job(dataset_id: str, teacher: Path) -> dict[str, Any]:
    """A job that stays in teacher training for minutes unless cancelled."""
    return fast_job(dataset_id, teacher, epochs=500)


def wait_status(client: httpx.Client, job_id: str, statuses: set[str], timeout_s: float) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        job = client.get(f"/jobs/{job_id}").json()
        if job["status"] not in statuses and job["status"] in {"succeeded", "failed", "cancelled"}:
            pytest.fail(f"job {job_id} ended {job['status']} ({job['error']}), expected {statuses}")
        return job if job["status"] in statuses else None

    return wait_for(check, timeout_s, f"job {job_id} to be {'/'.join(sorted(statuses))}", every_s=0.5)


@pytest.fixture(scope="module")
def cancelled_job(api: str, dataset: dict[str, Any], tiny_teacher: Path) -> dict[str, Any]:
    """A job cancelled at once: it has a few events and a stream that ends."""
    with httpx.Client(base_url=api, timeout=60) as client:
        job = client.post("/jobs", json=slow_job(dataset["id"], tiny_teacher)).json()
        client.post(f"/jobs/{job['id']}/cancel")
        return wait_status(client, job["id"], {"cancelled"}, 60)


@pytest.fixture(scope="module")
def trained(api: str, dataset: dict[str, Any], tiny_teacher: Path) -> dict[str, Any]:
    """A job run to success through the API; its final record."""
    with httpx.Client(base_url=api, timeout=60) as client:
        response = client.post("/jobs", json=fast_job(dataset["id"], tiny_teacher))
        assert response.status_code == 202, response.text
        job = response.json()
        assert job["status"] == "queued"
        assert response.headers["location"] == f"/jobs/{job['id']}"
        return wait_status(client, job["id"], {"succeeded"}, 300)


def test_health_sees_redis_and_the_worker(client: httpx.Client, worker: str) -> None:
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["redis"] is True
    assert worker in [w["name"] for w in health["workers"]]
    assert health["version"]


def test_upload_reports_statistics(client: httpx.Client, dataset: dict[str, Any]) -> None:
    stats = dataset["stats"]
    assert stats["scheme"] == "IOB2"
    assert stats["entity_types"] == ["LOC", "MISC", "ORG", "PER"]
    assert stats["splits"]["train"]["sentences"] == 400
    assert set(dataset["files"]) == {"train", "dev", "test", "unlabeled"}
    assert client.get(f"/datasets/{dataset['id']}").json() == dataset
    listed = client.get("/datasets", params={"limit": 100}).json()["items"]
    assert dataset["id"] in [d["id"] for d in listed]


def test_job_runs_to_success_and_its_student_tags(
    client: httpx.Client, trained: dict[str, Any], dataset: dict[str, Any]
) -> None:
    assert trained["progress"]["fraction"] == 1.0
    assert trained["started_at"] and trained["finished_at"] and trained["attempts"] == 1
    assert {"teacher", "student"} <= set(trained["metrics"]) and "report" not in trained["metrics"]
    assert "heartbeat_at" not in trained and "seq" not in trained  # the workers' bookkeeping stays inside
    model = client.get(f"/models/{trained['model_id']}").json()
    assert model["job_id"] == trained["id"] and model["dataset_id"] == dataset["id"]
    assert model["student"]["test"]["f1"] > 0.5  # the student learns the sample data from gold + teacher
    assert set(model["student"]["test"]["per_type"]) <= {"LOC", "MISC", "ORG", "PER"}
    assert model["speedup"]["batch_32"] > 0 and model["teacher"]["parameters"] > 0
    assert model["onnx"]["int8"]["bytes"] < model["onnx"]["fp32"]["bytes"]  # served by ONNX Runtime
    assert 0 <= model["student_int8"]["test"]["f1"] <= 1 and model["machine"]
    # the baseline stage: the same student alone, the gain, and which of the two is served and why
    assert model["baseline"]["test"]["support"] == model["student"]["test"]["support"] > 0
    assert model["served"]["student"] in ("distilled", "baseline")
    gain = model["distillation_gain"]["test"]["f1"]
    if model["served"]["student"] == "distilled":
        assert gain == pytest.approx(model["student"]["test"]["f1"] - model["baseline"]["test"]["f1"])
        assert model["student"]["dev"]["f1"] >= model["baseline"]["dev"]["f1"]
    else:
        assert model["student"] == model["baseline"]
    assert model["teaching"]["by"] in ("teacher", "teacher_and_baseline")  # who taught the distilled one
    assert model["teaching"]["f1"]["test"]["teacher"] == pytest.approx(model["teacher"]["test"]["f1"])
    assert model["config"] == trained["config"]  # the config as submitted, typed, in both records

    response = client.post("/predict", json={"model_id": model["id"], "texts": [KNOWN]})
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["model"] == "student" and result["note"] is None
    assert spans_of(result["results"][0]["entities"]) == KNOWN_ENTITIES
    for entity in result["results"][0]["entities"]:
        assert KNOWN[entity["start"] : entity["end"]] == entity["text"]

    # the same from tokens
    tokens = client.post("/predict", json={"model_id": model["id"], "tokens": [KNOWN.split()]}).json()
    assert tokens["model_id"] == model["id"]
    assert spans_of(tokens["results"][0]["entities"]) == KNOWN_ENTITIES


def test_teacher_predictions_are_marked_slower(client: httpx.Client, trained: dict[str, Any]) -> None:
    body = {"model_id": trained["model_id"], "texts": [KNOWN], "use_teacher": True}
    response = client.post("/predict", json=body)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "teacher" and "slower" in body["note"]
    assert body["results"][0]["tokens"] == KNOWN.split()


def test_events_are_ordered_and_streamed(client: httpx.Client, trained: dict[str, Any]) -> None:
    events = client.get(f"/jobs/{trained['id']}/events").json()
    assert [e["seq"] for e in events] == list(range(len(events)))
    stages = [e["data"]["stage"] for e in events if e["type"] == "stage"]
    assert stages == ["teacher", "labeling", "baseline", "student", "evaluating"]
    assert any(e["type"] == "epoch" and e["data"]["stage"] == "baseline" for e in events)
    statuses = [e["data"]["status"] for e in events if e["type"] == "status"]
    assert statuses == ["queued", "running", "succeeded"]
    assert any(e["type"] == "epoch" and e["data"]["stage"] == "student" for e in events)

    # the job has ended, so the stream sends everything and closes
    with client.stream("GET", f"/jobs/{trained['id']}/events", headers={"Accept": "text/event-stream"}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        ids = [int(line[3:].strip()) for line in r.iter_lines() if line.startswith("id:")]
    assert ids == [e["seq"] for e in events]
    page = client.get(f"/jobs/{trained['id']}/events", params={"after": 1, "limit": 3}).json()
    assert [e["seq"] for e in page] == [2, 3, 4]  # pages of events: after the last seq seen, a limit
    tail = client.get(f"/jobs/{trained['id']}/events", params={"after": len(events) - 2}).json()
    assert [e["seq"] for e in tail] == [len(events) - 1]


def test_download_holds_a_loadable_student(
    client: httpx.Client, trained: dict[str, Any], tmp_path: Path
) -> None:
    from tagdistill.tagger import Tagger

    response = client.get(f"/models/{trained['model_id']}/download")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/gzip"
    with tarfile.open(fileobj=io.BytesIO(response.content), mode="r:gz") as tar:
        tar.extractall(tmp_path, filter="data")
    tagger = Tagger.load(tmp_path / trained["model_id"])
    assert spans_of(tagger.predict([KNOWN])[0]["entities"]) == KNOWN_ENTITIES


def test_idempotent_retry_returns_the_same_job(
    client: httpx.Client, dataset: dict[str, Any], tiny_teacher: Path
) -> None:
    body = slow_job(dataset["id"], tiny_teacher)
    headers = {"Idempotency-Key": f"retry-{time.time_ns()}"}
    first = client.post("/jobs", json=body, headers=headers)
    again = client.post("/jobs", json=body, headers=headers)
    assert first.status_code == again.status_code == 202
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["idempotent-replayed"] == "true"
    other = client.post("/jobs", json={**body, "seed": 99}, headers=headers)
    assert other.status_code == 422
    assert other.json()["error"]["param"] == "header.Idempotency-Key"
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    ids = [j["id"] for j in client.get("/jobs", params={"limit": 100}).json()["items"]]
    assert ids.count(first.json()["id"]) == 1
    client.post(f"/jobs/{first.json()['id']}/cancel")
    wait_status(client, first.json()["id"], {"cancelled"}, 30)


def test_listing_pages_newest_first_and_filters(
    client: httpx.Client, dataset: dict[str, Any], tiny_teacher: Path
) -> None:
    made = [client.post("/jobs", json=slow_job(dataset["id"], tiny_teacher)).json()["id"] for _ in range(3)]
    for job_id in made:
        assert client.post(f"/jobs/{job_id}/cancel").status_code == 202
    for job_id in made:
        wait_status(client, job_id, {"cancelled"}, 30)

    seen, cursor = [], None
    while True:
        params = {"limit": 2, "status": "cancelled", **({"cursor": cursor} if cursor else {})}
        page = client.get("/jobs", params=params).json()
        assert len(page["items"]) <= 2
        assert all(j["status"] == "cancelled" for j in page["items"])
        seen += [j["id"] for j in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen))
    assert [j for j in seen if j in made] == made[::-1]  # newest first
    running = client.get("/jobs", params={"status": "running", "limit": 100}).json()["items"]
    assert not set(made) & {j["id"] for j in running}
    assert client.get("/jobs", params={"cursor": "garbage"}).status_code == 422
    assert client.get("/jobs", params={"status": "sleeping"}).status_code == 422


def test_cancel_stops_a_running_job_and_frees_the_worker(
    client: httpx.Client, dataset: dict[str, Any], tiny_teacher: Path
) -> None:
    job = client.post("/jobs", json=slow_job(dataset["id"], tiny_teacher)).json()

    def training() -> bool:
        j = client.get(f"/jobs/{job['id']}").json()
        return j["status"] == "running" and j["progress"]["step"] > 0

    wait_for(training, 120, "the job to be training", every_s=0.5)
    asked = time.monotonic()
    response = client.post(f"/jobs/{job['id']}/cancel")
    assert response.status_code == 202 and response.json()["cancel_requested"] is True
    done = wait_status(client, job["id"], {"cancelled"}, 15)
    assert time.monotonic() - asked < 15
    assert done["finished_at"] is not None and done["model_id"] is None
    assert client.post(f"/jobs/{job['id']}/cancel").status_code == 409

    # the worker takes the next job
    following = client.post("/jobs", json=slow_job(dataset["id"], tiny_teacher)).json()
    wait_status(client, following["id"], {"running"}, 60)
    client.post(f"/jobs/{following['id']}/cancel")
    wait_status(client, following["id"], {"cancelled"}, 15)


def test_dataset_delete_is_refused_while_a_job_uses_it(client: httpx.Client, tiny_teacher: Path) -> None:
    ds = upload_sample(client).json()
    job = client.post("/jobs", json=slow_job(ds["id"], tiny_teacher)).json()
    refused = client.delete(f"/datasets/{ds['id']}")
    assert refused.status_code == 409
    assert job["id"] in refused.json()["error"]["message"]
    assert refused.json()["error"]["code"] == "dataset_in_use"
    client.post(f"/jobs/{job['id']}/cancel")
    wait_status(client, job["id"], {"cancelled"}, 30)
    assert client.delete(f"/datasets/{ds['id']}").status_code == 204
    assert client.get(f"/datasets/{ds['id']}").status_code == 404
    late = client.post("/jobs", json={"dataset_id": ds["id"]})
    assert late.status_code == 422 and late.json()["error"]["param"] == "dataset_id"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/jobs/job_nope"),
        ("POST", "/jobs/job_nope/cancel"),
        ("GET", "/jobs/job_nope/events"),
        ("GET", "/datasets/ds_nope"),
        ("DELETE", "/datasets/ds_nope"),
        ("GET", "/models/mdl_nope"),
        ("GET", "/models/mdl_nope/download"),
    ],
)
def test_unknown_ids_are_404(client: httpx.Client, method: str, path: str) -> None:
    response = client.request(method, path)
    assert response.status_code == 404
    assert "nope" in response.json()["error"]["message"]
    assert response.json()["error"]["code"] == f"{path.split('/')[1][:-1]}_not_found"


def test_predict_with_an_unknown_model_is_404(client: httpx.Client) -> None:
    response = client.post("/predict", json={"model_id": "mdl_nope", "texts": ["Paris"]})
    assert response.status_code == 404 and "mdl_nope" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("change", "param", "words"),
    [
        ({"teacher": {"epoch": 3}}, "teacher.epoch", "Extra inputs are not permitted"),
        ({"distill": {"epochs": -1}}, "distill.epochs", "greater than or equal"),
        ({"distill": {"temperature": 0}}, "distill.temperature", "greater than 0"),
        ({"distill": {"mode": "magic"}}, "distill.mode", "alone"),
        ({"dataset_id": "ds_missing"}, "dataset_id", "no dataset 'ds_missing'"),
        ({"dataset_id": None}, None, "a job needs a dataset_id"),
        ({"data": {"train": "/etc/passwd", "dev": "/etc/passwd"}}, "data", "POST /datasets"),
        ({"teacher": {"path": "../../etc"}}, "teacher.path", "outside the data directory"),
        ({"teacher": {"path": "jobs/none"}}, "teacher.path", "does not exist in your jobs"),
        ({"teacher": {"epochs": -3}}, "teacher.epochs", "greater than or equal"),
        ({"teacher": {"base_model": "/no/such/model"}}, "teacher.base_model", "MODEL_ROOTS"),
        ({"teacher": {"base_model": "/etc"}}, "teacher.base_model", "MODEL_ROOTS"),
        ({"teacher": {"base_model": "jobs/job_x"}}, "teacher.base_model", "in your jobs"),
        ({"teacher": {"base_model": "../up/there"}}, "teacher.base_model", "Hugging Face"),
        ({"teacher": {"base_model": "a\u0000" + "b" * 5000}}, "teacher.base_model", "minilm"),
        ({"teacher": {"path": "x\u0000y"}}, "teacher.path", "not a usable path"),
        ({"student": {"embeddings": "v" * 300}}, "student.embeddings", "does not exist"),
        # bounds: the schema's, then this service's (TAGDISTILL_MAX_*)
        ({"seed": 2**70}, "seed", "less than"),
        ({"distill": {"learning_rate": "inf"}}, "distill.learning_rate", "finite"),
        ({"distill": {"epochs": 10**9}}, "distill.epochs", "TAGDISTILL_MAX_EPOCHS"),
        ({"teacher": {"min_steps": 10**28}}, "teacher.min_steps", "TAGDISTILL_MAX_STEPS"),
        ({"student": {"hidden": 10**9}}, "student.hidden", "TAGDISTILL_MAX_WIDTH"),
        ({"teacher": {"max_length": 10**9}}, "teacher.max_length", "TAGDISTILL_MAX_WINDOW"),
    ],
)
def test_bad_configs_are_422_naming_the_field(
    client: httpx.Client, dataset: dict[str, Any], change: dict, param: str | None, words: str
) -> None:
    response = client.post("/jobs", json={"dataset_id": dataset["id"], **change})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request" and error["param"] == param
    assert words in error["message"]


@pytest.mark.skipif(any(Path("/dev").glob("nvidia[0-9]*")), reason="this machine has a GPU")
def test_a_cuda_job_is_422_when_no_worker_has_a_gpu(client: httpx.Client, dataset: dict[str, Any]) -> None:
    response = client.post("/jobs", json={"dataset_id": dataset["id"], "device": "cuda"})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["param"] == "device" and "has a GPU" in error["message"]


def test_malformed_json_is_422(client: httpx.Client) -> None:
    response = client.post("/jobs", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 422


def _files(**overrides: bytes | None) -> dict[str, tuple[str, bytes]]:
    files = {"train": (SAMPLE / "train.conll").read_bytes(), "dev": (SAMPLE / "dev.conll").read_bytes()}
    files.update(overrides)
    return {split: (f"my-{split}.txt", content) for split, content in files.items() if content is not None}


@pytest.mark.parametrize(
    ("files", "param", "words"),
    [
        (_files(train=b"Paris B-LOC\nis O\n\nBerlin B-LOC X\n"), "train", "train.conll, line 4"),
        (_files(dev=b"Paris X-LOC\n"), "dev", "dev.conll, line 1"),
        (_files(dev=None), "dev", "Field required"),
        (_files(train=b"Paris B-LOC\nis O\n\xff\xfe O\n"), "train", "line 3: not UTF-8"),
        (_files(dev=b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00"), "dev", "dev.conll, line 1"),
        (_files(train=b""), "train", "train.conll: no sentences"),
        (_files(dev=b"-DOCSTART- -X- O\n\n\n  \n"), "dev", "dev.conll: no sentences"),
        (_files(train=b"Paris O\nis O\n"), "train", "no entities"),
        (_files(dev=b"Paris B-FOOD\n"), "dev", "entity type FOOD does not occur in train.conll"),
        (_files(train=b"Paris\tB-LOC\nis\n"), "train", "line 2: 1 columns"),
        (_files(train=b"".join(b"w B-T%d\n" % i for i in range(501)), dev=b"w B-T0\n"), "train",
         "501 entity types; at most 500"),
    ],
)
def test_bad_files_are_422_naming_file_and_line(
    client: httpx.Client, files: dict, param: str, words: str, settings, dataset: dict[str, Any]
) -> None:
    before = set((settings.data_dir / "datasets").glob("*"))
    folder = settings.data_dir / "datasets" / dataset["id"]
    stored = {p.name: p.read_bytes() for p in folder.iterdir()}
    response = client.post("/datasets", files=files)
    assert response.status_code == 422, response.text
    error = response.json()["errors"][0]
    assert error["param"] == param and words in error["message"]
    if error["code"] == "data_error":
        assert error["filename"] == f"my-{param}.txt"
    assert set((settings.data_dir / "datasets").glob("*")) == before  # nothing kept
    assert not list((settings.data_dir / "tmp").glob("*"))
    # and what was stored before is still listed, unchanged
    assert client.get(f"/datasets/{dataset['id']}").json() == dataset
    assert dataset["id"] in [d["id"] for d in client.get("/datasets", params={"limit": 100}).json()["items"]]
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == stored


def test_bad_format_field_is_422(client: httpx.Client) -> None:
    response = client.post("/datasets", files=_files(), data={"format": "xml"})
    assert response.status_code == 422
    assert response.json()["error"]["param"] == "format"


def test_upload_over_the_size_limit_is_413(client: httpx.Client, settings, dataset: dict[str, Any]) -> None:
    big = b"Paris B-LOC\n\n" * (3 * 1024 * 1024 // 13)  # 3 MB against the tests' 2 MB limit
    response = client.post("/datasets", files=_files(train=big))
    assert response.status_code == 413
    assert "limit" in response.json()["error"]["message"]

    def chunks():  # no Content-Length (chunked): counted while it arrives
        yield b'--b\r\nContent-Disposition: form-data; name="train"; filename="t.conll"\r\n\r\n'
        for _ in range(30):
            yield b"Paris B-LOC\n\n" * 8000
        yield b"\r\n--b--\r\n"

    headers = {"content-type": "multipart/form-data; boundary=b"}
    streamed = client.post("/datasets", content=chunks(), headers=headers)
    assert streamed.status_code == 413
    assert client.get(f"/datasets/{dataset['id']}").json() == dataset
    assert not list((settings.data_dir / "tmp").glob("*"))


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"texts": []}, "empty"),
        ({"texts": ["Paris", "  "]}, "texts[1] is empty"),
        ({"texts": ["Paris"], "tokens": [["Paris"]]}, "exactly one"),
        ({}, "exactly one"),
        ({"tokens": [["Paris", ""]]}, "tokens[0]"),
        ({"texts": ["Paris"] * 65}, "at most 64"),
        ({"texts": ["x" * 19_000] * 11}, "209000 characters in all; at most 200000 a request to the student"),
        ({"texts": ["x" * 15_000] * 2, "use_teacher": True}, "at most 20000 a request to the teacher"),
        ({"texts": ["Paris"], "beam": 3}, "Extra inputs"),
    ],
)
def test_bad_predict_requests_are_422(client: httpx.Client, body: dict, words: str) -> None:
    response = client.post("/predict", json=body)
    assert response.status_code == 422, response.text
    assert words in json.dumps(response.json()["errors"])


def test_a_predict_whose_client_hangs_up_is_abandoned(
    api: str, api_log: Path, trained: dict[str, Any]
) -> None:
    texts = [" ".join([KNOWN] * 200)] * 10  # 10 pieces of work of 18,000 characters, seconds in all
    # the client leaves during the first pieces (the whole takes half a second or more, even on ONNX Runtime)
    with httpx.Client(base_url=api, timeout=0.1) as impatient, pytest.raises(httpx.ReadTimeout):
        impatient.post("/predict", json={"model_id": trained["model_id"], "texts": texts})

    def abandoned() -> dict[str, Any] | None:
        lines = [json.loads(line) for line in api_log.read_text().splitlines() if line.startswith("{")]
        return next((e for e in lines if e.get("message", "").startswith("predict abandoned")), None)

    entry = wait_for(abandoned, 20, "the API to give up the request")
    assert entry["done"] < entry["of"] == 10


@pytest.mark.slow
def test_a_dataset_id_alone_runs_a_full_job_with_minilm(
    client: httpx.Client, dataset: dict[str, Any]
) -> None:
    """Every default: the packaged MiniLM teacher, the BiLSTM student, distillation with pseudo-labels."""
    job = client.post("/jobs", json={"dataset_id": dataset["id"]}).json()
    assert job["config"]["teacher"]["base_model"] == "minilm"
    done = wait_status(client, job["id"], {"succeeded"}, 3600)
    model = client.get(f"/models/{done['model_id']}").json()
    assert model["teacher"]["test"]["f1"] > 0.5 and model["student"]["test"]["f1"] > 0.5
    assert model["speedup"]["batch_1"] > 1


def test_openapi_names_operations_and_describes_every_config_field(client: httpx.Client) -> None:
    schema = client.get("/openapi.json").json()
    ids = {op["operationId"] for path in schema["paths"].values() for op in path.values()}
    assert {"create_job", "list_jobs", "get_job", "cancel_job", "job_events", "upload_dataset"} <= ids
    for path in schema["paths"].values():  # the errors every route may answer are documented on each
        assert all({"404", "422", "429", "503"} <= set(op["responses"]) or "422" not in op["responses"]
                   for op in path.values())
    schemas = schema["components"]["schemas"]
    for name in ("TeacherConfig", "StudentConfig", "DistillConfig"):
        undescribed = [f for f, spec in schemas[name]["properties"].items() if not spec.get("description")]
        assert not undescribed, (name, undescribed)
    assert "data" not in schemas["JobConfig"]["properties"]  # the service refuses it, so it is not shown


def test_analysis_shows_disagreements_filtered_by_type_and_each_models_confusion(
    client: httpx.Client, trained: dict[str, Any]
) -> None:
    url = f"/models/{trained['model_id']}/analysis"
    analysis = client.get(url).json()
    assert analysis["split"] == "test" and {"teacher", "student"} <= set(analysis["confusion"])
    assert analysis["total_disagreements"] >= len(analysis["disagreements"])
    for kind in {t for row in analysis["disagreements"] for t in row["types"]}:
        only = client.get(url, params={"type": kind, "limit": 5}).json()
        assert 0 < len(only["disagreements"]) <= 5 and all(kind in r["types"] for r in only["disagreements"])
    assert client.get(url, params={"type": "NO_SUCH_TYPE"}).json()["disagreements"] == []
