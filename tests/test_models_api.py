"""Models you can run safely: aliases that POST /predict follows, names and tags on jobs and models,
the teacher's download (issue 16).

Through real HTTP against the session's API, Redis and worker (see conftest). The models are
untrained (tests/builders.py ``fixed_student``, ``fixed_teacher``): no training, known answers.
"""

from __future__ import annotations

import io
import json
import secrets
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from builders import fixed_student, fixed_teacher, remove_model, untrained_model
from test_service import slow_job, wait_status

LABELS = ["O", "B-LOC", "I-LOC"]
TEXT = "Paris is nice"


def message(response: httpx.Response) -> str:
    """The error's message, in either shape of the error body (``{"error": {"message"}}``, ``{"detail"}``)."""
    body = response.json()
    found = body.get("error", {}).get("message") or body.get("detail")
    return found if isinstance(found, str) else json.dumps(found)


def make_model(store: Any, settings: Any, always: str, teacher: Path | None = None, **fields: Any) -> Any:
    """A model record whose student tags every word ``always`` (and, given ``teacher``, a teacher folder
    tagging every word "O"), in a job folder of the session's data directory."""
    job_dir = Path(settings.data_dir) / "jobs" / f"job_{secrets.token_hex(6)}"
    if teacher is not None:
        fixed_teacher(job_dir / "teacher", teacher, LABELS, "O")
    return untrained_model(store, job_dir, fixed_student(TEXT.split(), LABELS, always), "ds_models", **fields)


def drop_aliases_of(store: Any, model_ids: set[str], owner: str | None = None) -> None:
    for alias in store.list_aliases(owner):
        if alias.model_id in model_ids:
            store.delete_alias(alias.name, owner)


@pytest.fixture(scope="module")
def pair(api: str, store, settings, tiny_teacher: Path) -> Iterator[tuple[Any, Any]]:
    """Two models: "loc" tags every word LOC (and has a teacher that tags none), "none" tags none."""
    loc = make_model(store, settings, "B-LOC", teacher=tiny_teacher, name="Everything is a place",
                     tags=["aliases-test", "loc"])
    none = make_model(store, settings, "O", name="Nothing at all", tags=["aliases-test"])
    yield loc, none
    drop_aliases_of(store, {loc.id, none.id})
    remove_model(store, loc)
    remove_model(store, none)


def set_alias(client: httpx.Client, name: str, model_id: str) -> httpx.Response:
    return client.put(f"/aliases/{name}", json={"model_id": model_id})


# --- aliases and POST /predict --------------------------------------------------------------------


def test_predict_without_a_model_and_without_a_production_alias_is_422_saying_how_to_set_one(
    client: httpx.Client, store, pair: tuple[Any, Any]
) -> None:
    assert "production" not in [a.name for a in store.list_aliases(None)]
    response = client.post("/predict", json={"texts": [TEXT]})
    assert response.status_code == 422, response.text
    assert "no 'production' alias" in message(response)
    assert "PUT /aliases/production" in message(response)


def test_predict_without_a_model_uses_the_production_alias_and_follows_it_when_moved(
    client: httpx.Client, store, pair: tuple[Any, Any]
) -> None:
    loc, none = pair
    made = set_alias(client, "production", loc.id)
    assert made.status_code == 200, made.text
    assert made.json()["model_id"] == loc.id and made.json()["previous_model_id"] is None
    try:
        tagged = client.post("/predict", json={"texts": [TEXT]})
        assert tagged.status_code == 200, tagged.text
        assert (tagged.json()["model_id"], tagged.json()["alias"]) == (loc.id, "production")
        assert [e["text"] for e in tagged.json()["results"][0]["entities"]] == TEXT.split()

        moved = set_alias(client, "production", none.id)
        assert moved.status_code == 200, moved.text
        assert moved.json()["previous_model_id"] == loc.id
        tagged = client.post("/predict", json={"texts": [TEXT]})
        assert (tagged.json()["model_id"], tagged.json()["alias"]) == (none.id, "production")
        assert tagged.json()["results"][0]["entities"] == []
    finally:
        store.delete_alias("production", None)


def test_a_new_model_is_not_served_until_the_alias_moves_onto_it(
    client: httpx.Client, store, settings, pair: tuple[Any, Any]
) -> None:
    loc, _ = pair
    assert set_alias(client, "production", loc.id).status_code == 200
    newer = make_model(store, settings, "O")
    try:
        assert client.post("/predict", json={"texts": [TEXT]}).json()["model_id"] == loc.id
    finally:
        store.delete_alias("production", None)
        remove_model(store, newer)


def test_model_field_takes_an_id_or_an_alias_and_an_unknown_alias_is_404(
    client: httpx.Client, store, pair: tuple[Any, Any]
) -> None:
    loc, none = pair
    assert set_alias(client, "staging", none.id).status_code == 200
    try:
        by_alias = client.post("/predict", json={"model": "staging", "texts": [TEXT]})
        assert (by_alias.json()["model_id"], by_alias.json()["alias"]) == (none.id, "staging")
        by_id = client.post("/predict", json={"model": loc.id, "texts": [TEXT]})
        assert (by_id.json()["model_id"], by_id.json()["alias"]) == (loc.id, None)
    finally:
        store.delete_alias("staging", None)
    unknown = client.post("/predict", json={"model": "staging", "texts": [TEXT]})
    assert unknown.status_code == 404 and message(unknown) == "no alias 'staging'"
    both = client.post("/predict", json={"model": "staging", "model_id": loc.id, "texts": [TEXT]})
    assert both.status_code == 422 and "at most one of 'model'" in message(both)


@pytest.mark.parametrize("name", ["mdl_123", "has space", "-dash-first", "x" * 65, "é"])
def test_a_bad_alias_name_is_422_saying_what_an_alias_may_be(
    client: httpx.Client, pair: tuple[Any, Any], name: str
) -> None:
    response = set_alias(client, name, pair[0].id)
    assert response.status_code == 422, response.text
    assert "is not a valid alias name: 1 to 64 letters" in message(response)


def test_an_alias_onto_an_unknown_model_is_422_naming_the_model(client: httpx.Client) -> None:
    response = set_alias(client, "production", "mdl_nope")
    assert response.status_code == 422, response.text
    assert "no model 'mdl_nope'" in message(response)


def test_aliases_are_listed_read_and_deleted(client: httpx.Client, pair: tuple[Any, Any]) -> None:
    loc, none = pair
    set_alias(client, "blue", loc.id)
    set_alias(client, "green", none.id)
    listed = {a["name"]: a["model_id"] for a in client.get("/aliases").json()["items"]}
    assert listed["blue"] == loc.id and listed["green"] == none.id
    assert client.get("/aliases/green").json()["model_id"] == none.id
    for name in ("blue", "green"):
        assert client.delete(f"/aliases/{name}").status_code == 204
    assert client.get("/aliases/green").status_code == 404
    assert client.delete("/aliases/green").status_code == 404
    assert "green" not in [a["name"] for a in client.get("/aliases").json()["items"]]


def test_a_model_an_alias_points_to_is_not_deleted_409_until_the_alias_moves(
    client: httpx.Client, store, settings, pair: tuple[Any, Any]
) -> None:
    doomed = make_model(store, settings, "O")
    assert set_alias(client, "canary", doomed.id).status_code == 200
    refused = client.delete(f"/models/{doomed.id}")
    assert refused.status_code == 409, refused.text
    assert "alias 'canary' points to model" in message(refused)
    assert client.get(f"/models/{doomed.id}").status_code == 200
    assert set_alias(client, "canary", pair[1].id).status_code == 200  # moved away: no longer held
    try:
        assert client.delete(f"/models/{doomed.id}").status_code == 204
        assert client.get(f"/models/{doomed.id}").status_code == 404
        assert doomed.id not in [m["id"] for m in client.get("/models").json()["items"]]
    finally:
        store.delete_alias("canary", None)


# --- names and tags -------------------------------------------------------------------------------


def test_a_job_takes_a_name_and_tags_and_the_list_filters_by_them(
    client: httpx.Client, dataset: dict[str, Any], tiny_teacher: Path
) -> None:
    tag = f"t-{secrets.token_hex(3)}"
    labels = {"name": " Clinical NER, run 7 ", "tags": [tag, "ner", tag]}
    submitted = client.post("/jobs", json={**slow_job(dataset["id"], tiny_teacher), **labels})
    assert submitted.status_code == 202, submitted.text
    job = submitted.json()
    client.post(f"/jobs/{job['id']}/cancel")
    wait_status(client, job["id"], {"cancelled"}, 60)
    assert (job["name"], job["tags"]) == ("Clinical NER, run 7", [tag, "ner"])  # trimmed, each tag once
    assert "name" not in job["config"] and "tags" not in job["config"]  # the config is the engine's alone

    def listed(query: str) -> list[str]:
        response = client.get(f"/jobs?{query}")
        assert response.status_code == 200, response.text
        return [j["id"] for j in response.json()["items"]]

    assert listed(f"tag={tag}") == [job["id"]]
    assert job["id"] in listed("q=clinical ner")  # any case
    assert job["id"] in listed(f"tag={tag}&q=RUN 7&status=cancelled")
    assert listed(f"tag={tag}&q=other") == []
    assert listed(f"tag={tag}&status=running") == []

    patched = client.patch(f"/jobs/{job['id']}", json={"tags": ["kept"]})
    assert patched.status_code == 200, patched.text
    assert (patched.json()["name"], patched.json()["tags"]) == ("Clinical NER, run 7", ["kept"])
    assert listed(f"tag={tag}") == []
    cleared = client.patch(f"/jobs/{job['id']}", json={"name": None}).json()
    assert (cleared["name"], cleared["tags"], cleared["status"]) == (None, ["kept"], "cancelled")


def test_models_are_renamed_retagged_and_filtered(client: httpx.Client, pair: tuple[Any, Any]) -> None:
    loc, none = pair
    ids = lambda query: [m["id"] for m in client.get(f"/models?{query}").json()["items"]]  # noqa: E731
    assert ids("tag=aliases-test") == [none.id, loc.id]  # newest first
    assert ids("tag=loc") == [loc.id]
    assert ids("tag=aliases-test&q=NOTHING") == [none.id]
    # one at a time: the cursor leads to the next match
    first = client.get("/models?tag=aliases-test&limit=1").json()
    second = client.get(f"/models?tag=aliases-test&limit=1&cursor={first['next_cursor']}").json()
    assert [m["id"] for m in first["items"] + second["items"]] == [none.id, loc.id]
    assert second["next_cursor"] is None

    patched = client.patch(f"/models/{none.id}", json={"name": "Quiet", "tags": ["aliases-test", "quiet"]})
    assert patched.status_code == 200, patched.text
    assert client.get(f"/models/{none.id}").json()["name"] == "Quiet"
    assert ids("tag=quiet") == [none.id]
    assert client.patch("/models/mdl_nope", json={"name": "x"}).status_code == 404


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"tags": ["has space"]}, "tag 'has space' is not a valid tag"),
        ({"tags": ["x" * 33]}, "is not a valid tag: 1 to 32 letters"),
        ({"tags": [f"t{i}" for i in range(21)]}, "at most 20 items"),
        ({"name": ""}, "at least 1 character"),
        ({"name": "n" * 101}, "at most 100 characters"),
        ({}, "nothing to change"),
        ({"colour": "red"}, "Extra inputs"),
    ],
)
def test_bad_names_and_tags_are_422_saying_what_is_wrong(
    client: httpx.Client, pair: tuple[Any, Any], dataset: dict[str, Any], body: dict, words: str
) -> None:
    patched = client.patch(f"/models/{pair[0].id}", json=body)
    assert patched.status_code == 422 and words in message(patched), patched.text
    if body and "colour" not in body:  # the same rules when a job is submitted (and nothing is queued)
        submitted = client.post("/jobs", json={"dataset_id": dataset["id"], **body})
        assert submitted.status_code == 422 and words in message(submitted), submitted.text


def test_a_model_takes_its_jobs_name_and_tags_when_the_job_succeeds(store, pair: tuple[Any, Any]) -> None:
    from jobstore.records import Dataset, utcnow
    from jobstore.store import Store
    from tagdistill.config import JobConfig

    own = Store(store.r, store.p + f"labels-{secrets.token_hex(3)}:")  # keys of its own: no worker sees it
    try:
        own.add_dataset(Dataset(id="ds_l", created_at=utcnow(), files={}, format="conll",
                                unlabeled_format="text", tag_column=-1, size_bytes=0, stats={}))
        job, _ = own.create_job("ds_l", JobConfig(dataset_id="ds_l"), None, "f", 60, name="Run A", tags=["a"])
        own.relabel("job", job.id, tags=["a", "b"])  # changed while it runs: the model takes the latest
        own.claim_job(job.id, "w")
        model = pair[0].model_copy(update={"id": "mdl_l", "job_id": job.id, "name": None, "tags": []})
        own.finish_job(job.id, "succeeded", 1, model=model)
        made = own.get_model("mdl_l")
        assert (made.name, made.tags) == ("Run A", ["a", "b"])
    finally:
        own.r.delete(*own.r.keys(own.p + "*"))


def test_a_filtered_list_that_reads_its_limit_of_records_returns_a_cursor_to_go_on(
    store, pair: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    import jobstore.store

    monkeypatch.setattr(jobstore.store, "SCAN_LIMIT", 3)
    own = jobstore.store.Store(store.r, store.p + f"scan-{secrets.token_hex(3)}:")
    try:
        for i in range(7):  # newest first: m6 .. m0; tagged "x": m0 and m5
            tags = ["x"] if i in (0, 5) else []
            own.add_model(pair[0].model_copy(update={"id": f"mdl_{i}", "tags": tags, "owner": None}))
        pages, cursor = [], None
        while True:
            found, cursor = own.list_models(cursor, 10, match=jobstore.store.Match(tag="x"))
            pages.append([m.id for m in found])
            if cursor is None:
                break
        assert pages == [["mdl_5"], [], ["mdl_0"]]  # 3 records read a request: m6-m4, m3-m1, m0
    finally:
        own.r.delete(*own.r.keys(own.p + "*"))


# --- downloads ------------------------------------------------------------------------------------


def test_the_teacher_downloads_beside_the_student_as_an_archive_of_its_folder(
    client: httpx.Client, settings, pair: tuple[Any, Any]
) -> None:
    loc = pair[0]
    response = client.get(f"/models/{loc.id}/download?which=teacher")
    assert response.status_code == 200, response.text
    assert f'filename="{loc.id}-teacher.tar.gz"' in response.headers["content-disposition"]
    folder = Path(settings.data_dir) / loc.teacher_path
    with tarfile.open(fileobj=io.BytesIO(response.content), mode="r:gz") as tar:
        names = {m.name: m for m in tar.getmembers() if m.isfile()}
        assert set(names) == {f"{loc.id}-teacher/{p.name}" for p in folder.iterdir()}
        weights = tar.extractfile(names[f"{loc.id}-teacher/model.safetensors"]).read()
    assert weights == (folder / "model.safetensors").read_bytes()
    student = client.get(f"/models/{loc.id}/download")
    assert f'filename="{loc.id}.tar.gz"' in student.headers["content-disposition"]
    missing = client.get(f"/models/{pair[1].id}/download?which=teacher")  # "none" has no teacher folder
    assert missing.status_code == 404 and "not in this data directory" in message(missing)
    assert client.get(f"/models/{loc.id}/download?which=baseline").status_code == 422


def test_an_alias_chooses_the_teacher_too(client: httpx.Client, store, pair: tuple[Any, Any]) -> None:
    loc = pair[0]
    assert set_alias(client, "teachers", loc.id).status_code == 200
    try:
        tagged = client.post("/predict", json={"model": "teachers", "texts": [TEXT], "use_teacher": True})
        assert tagged.status_code == 200, tagged.text
        assert (tagged.json()["model"], tagged.json()["model_id"]) == ("teacher", loc.id)
        assert tagged.json()["results"][0]["entities"] == []  # this teacher tags nothing
    finally:
        store.delete_alias("teachers", None)
