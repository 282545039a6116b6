"""Inputs that once got a 500 (issue 13): each is a clear 4xx now, and a 500 keeps the connection.

Through real HTTP against the session's API, Redis and worker (see conftest).
"""

from __future__ import annotations

import http.client
import io
import json
import os
import secrets
import tarfile
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from builders import remove_model, untrained_model
from test_service import KNOWN, cancelled_job  # noqa: F401  (a fixture)

ROUTES_WITH_PAGES = ["/jobs", "/datasets", "/models"]


@pytest.fixture(scope="module")
def model(api: str, store, settings) -> Iterator[dict[str, Any]]:
    """A model record whose student is a small, untrained BiLSTM (no training needed), padded."""
    from tagdistill.config import StudentConfig
    from tagdistill.student import NeuralTagger
    from tagdistill.vocab import Vocab

    cfg = StudentConfig(hidden=8, word_dim=8, char_dim=4, char_hidden=4)
    student = NeuralTagger(cfg, Vocab.build([KNOWN.split()], ["O", "B-LOC", "I-LOC"], cfg))
    job_dir = Path(settings.data_dir) / "jobs" / f"job_{secrets.token_hex(6)}"
    record = untrained_model(store, job_dir, student, "ds_inputs")
    # 8 MB that gzip cannot shrink: building the archive takes long enough for downloads to overlap
    (job_dir / "student" / "padding.bin").write_bytes(os.urandom(8 << 20))
    yield {**record.model_dump(mode="json"), "folder": job_dir}
    remove_model(store, record)  # so later tests that take the newest model never get this one


# --- 1. cursors ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ROUTES_WITH_PAGES)
@pytest.mark.parametrize("cursor", ["²", "①", "١٢٣", "１２", "-1", str(2**63), "9" * 5000, "1e3", "garbage"])
def test_a_cursor_not_an_ascii_decimal_in_int64_is_422_naming_cursor(
    client: httpx.Client, path: str, cursor: str
) -> None:
    response = client.get(path, params={"cursor": cursor})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["param"] == "query.cursor"


@pytest.mark.parametrize("path", ROUTES_WITH_PAGES)
def test_the_largest_cursor_is_read(client: httpx.Client, path: str) -> None:
    response = client.get(path, params={"cursor": str(2**63 - 1), "limit": 1})
    assert response.status_code == 200, response.text


# --- 2. event positions -------------------------------------------------------------------------


@pytest.mark.parametrize("after", [str(2**63), str(2**62 + 1), "9" * 5000, "-2", "²"])
def test_events_after_out_of_bounds_is_422_naming_after(
    client: httpx.Client, cancelled_job: dict[str, Any], after: str
) -> None:
    for stream in ("false", "true"):
        params = {"after": after, "stream": stream}
        response = client.get(f"/jobs/{cancelled_job['id']}/events", params=params)
        assert response.status_code == 422, response.text
        assert response.json()["error"]["param"] == "query.after"


def test_events_after_at_the_bound_is_an_empty_list(
    client: httpx.Client, cancelled_job: dict[str, Any]
) -> None:
    response = client.get(f"/jobs/{cancelled_job['id']}/events", params={"after": str(2**62)})
    assert response.status_code == 200 and response.json() == []


def _streamed_ids(client: httpx.Client, job_id: str, last_event_id: str | bytes) -> list[int]:
    headers = {"Accept": "text/event-stream", "Last-Event-ID": last_event_id}
    with client.stream("GET", f"/jobs/{job_id}/events", headers=headers) as response:
        assert response.status_code == 200
        return [int(line[3:].strip()) for line in response.iter_lines() if line.startswith("id:")]


# headers are read as Latin-1: b"\xb2" is "²", which str.isdigit takes and int() refuses
@pytest.mark.parametrize(
    "last_event_id", [b"\xb2", b"\xb9", str(2**63), str(2**62 + 1), "9" * 4400, "-1", "abc", ""]
)
def test_an_unusable_last_event_id_is_ignored_and_the_stream_starts_over(
    client: httpx.Client, cancelled_job: dict[str, Any], last_event_id: str | bytes
) -> None:
    seqs = [e["seq"] for e in client.get(f"/jobs/{cancelled_job['id']}/events").json()]
    assert len(seqs) >= 2
    assert _streamed_ids(client, cancelled_job["id"], last_event_id) == seqs


def test_a_last_event_id_resumes_the_stream_after_it(
    client: httpx.Client, cancelled_job: dict[str, Any]
) -> None:
    seqs = [e["seq"] for e in client.get(f"/jobs/{cancelled_job['id']}/events").json()]
    assert _streamed_ids(client, cancelled_job["id"], "0") == seqs[1:]
    assert _streamed_ids(client, cancelled_job["id"], str(2**62)) == []


# --- 3. text that UTF-8 cannot encode -----------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/predict", rb'{"texts": ["Paris", "a\ud800b"]}', "texts.1"),
        ("/predict", rb'{"tokens": [["Paris", "\udfff"]]}', "tokens.0.1"),
        ("/predict", rb'{"model_id": "mdl_\uDBFF", "texts": ["Paris"]}', "model_id"),
        ("/predict", b'{"texts": ["\xed\xa0\x80"]}', "texts.0"),  # a surrogate's bytes
        ("/predict", rb'{"texts": ["Paris"], "beam": "\ud800"}', "beam"),  # an unknown field
        ("/predict", rb'{"\ud800": 1}', None),  # a key
        ("/jobs", rb'{"dataset_id": "ds_\ud800"}', "dataset_id"),
        (
            "/jobs", rb'{"dataset_id": "x", "teacher": {"base_model": "\ud800"}}',
            "teacher.base_model",
        ),
    ],
)
def test_a_lone_surrogate_in_a_json_body_is_422_naming_the_field(
    client: httpx.Client, path: str, body: bytes, param: str | None
) -> None:
    response = client.post(path, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["param"] == param and error["code"] == "text_not_unicode" and "surrogate" in error["message"]


def test_a_surrogate_pair_is_text_and_reaches_the_route(client: httpx.Client) -> None:
    body = rb'{"model_id": "mdl_nope", "texts": ["frog \ud83d\udc38"]}'
    response = client.post("/predict", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 404 and "mdl_nope" in response.json()["error"]["message"]


@pytest.mark.parametrize("charset", ["utf-7", "unicode_escape"])
def test_a_multipart_charset_other_than_utf8_is_422_naming_the_header(
    client: httpx.Client, charset: str
) -> None:
    # Starlette decodes form fields with this charset: in utf-7 the name "+2AA-" is a lone surrogate
    body = (
        b'--bnd\r\nContent-Disposition: form-data; name="train"; filename="t.conll"\r\n\r\nParis B-LOC\n\r\n'
        b'--bnd\r\nContent-Disposition: form-data; name="dev"; filename="d.conll"\r\n\r\nParis B-LOC\n\r\n'
        b'--bnd\r\nContent-Disposition: form-data; name="name"\r\n\r\n+2AA-\r\n--bnd--\r\n'
    )
    headers = {"content-type": f"multipart/form-data; boundary=bnd; charset={charset}"}
    response = client.post("/datasets", content=body, headers=headers)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["param"] == "header.content-type"
    headers = {"content-type": "multipart/form-data; boundary=bnd; charset=UTF-8"}
    response = client.post("/datasets", content=body.replace(b"+2AA-", b"utf-8 names"), headers=headers)
    assert response.status_code == 201, response.text
    assert response.json()["name"] == "utf-8 names"
    assert client.delete(f"/datasets/{response.json()['id']}").status_code == 204


# --- 4. JSON Lines that the parser cannot take ----------------------------------------------------

SENTENCE = b'{"tokens": ["Paris"], "tags": ["B-LOC"]}\n'


@pytest.mark.parametrize(
    ("line", "words"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "nested too deep"),
        (b'{"tokens": ["Paris"], "tags": [' + b"7" * 5000 + b"]}", "too many digits"),
        (rb'{"tokens": ["Paris"], "tags": ["B-\ud800"]}', "lone surrogate"),
        (rb'{"tokens": ["Pa\udfffris"], "tags": ["B-LOC"]}', "lone surrogate"),
    ],
)
def test_a_jsonl_line_too_deep_with_a_huge_integer_or_a_lone_surrogate_is_422_naming_file_and_line(
    client: httpx.Client, line: bytes, words: str
) -> None:
    files = {"train": ("t.jsonl", SENTENCE + line + b"\n"), "dev": ("d.jsonl", SENTENCE)}
    response = client.post("/datasets", files=files, data={"format": "jsonl"})
    assert response.status_code == 422, response.text
    error = response.json()["errors"][0]
    assert error["param"] == "train" and error["code"] == "data_error" and error["line"] == 2
    assert "train.jsonl, line 2: " in error["message"] and words in error["message"]


# --- 5. first downloads at the same time ----------------------------------------------------------


def test_concurrent_first_downloads_all_get_the_same_archive(api: str, model: dict[str, Any]) -> None:
    start = threading.Barrier(12)

    def download(_: int) -> httpx.Response:
        with httpx.Client(base_url=api, timeout=60) as c:
            start.wait()  # all at once, before any archive exists
            return c.get(f"/models/{model['id']}/download")

    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(download, range(12)))
    assert [a.status_code for a in answers] == [200] * 12
    assert len({a.content for a in answers}) == 1
    with tarfile.open(fileobj=io.BytesIO(answers[0].content), mode="r:gz") as tar:
        names = tar.getnames()
    assert names[0] == model["id"] and f"{model['id']}/tagdistill.json" in names
    assert sorted(p.name for p in model["folder"].iterdir()) == ["student", "student.tar.gz"]  # no leftovers


# --- 6. a 500 ----------------------------------------------------------------------------------


def test_an_internal_error_is_a_json_500_and_the_connection_stays_usable(api: str, store) -> None:
    # a job record that no longer reads as a Job (as from a newer or broken writer) fails inside
    job_id = f"job_{secrets.token_hex(6)}"
    store.r.hset(store.p + f"job:{job_id}", mapping={"id": json.dumps(job_id)})
    url = urlsplit(api)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        conn.request("GET", f"/jobs/{job_id}")
        failed = conn.getresponse()
        assert failed.status == 500
        assert json.loads(failed.read())["error"]["code"] == "internal_error"
        assert failed.getheader("connection") != "close"
        sock = conn.sock
        conn.request("GET", "/health")  # on the same connection: it was reset before
        health = conn.getresponse()
        assert health.status == 200 and json.loads(health.read())["redis"] is True
        assert conn.sock is sock
    finally:
        conn.close()
        store.r.delete(store.p + f"job:{job_id}")
