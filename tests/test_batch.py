"""Batch tagging (``POST /batch-jobs``) for real: an API and two Celery worker processes of this module
(own key prefix, queue and data directory in the session's Redis), chunks of 7 sentences so that a
small file makes several, and pool processes that keep their model across chunks.

The processes share no folder: every file goes through an S3-compatible HTTP endpoint (moto's server,
``conftest.s3_endpoint``), and each process has a local cache of its own, so a chunk tagged on
one worker is merged on another through the store.

The model is an untrained student (``builders.untrained_model``): its tags mean nothing, but they are
a fixed function of the input, which is what identity with one-process tagging needs.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from builders import untrained_model
from conftest import CREDENTIALS, ROOT, _stop, start_api, start_worker, wait_for

from jobstore.artifacts import ArtifactStore
from jobstore.batches import Batches
from tagdistill.tagger import same_tagging

CHUNK = 7  # sentences per chunk in this module's service
HEARTBEAT_TIMEOUT_S = 3  # the workers' sweep bound: a silent worker's chunks, and messages noted unsent
LARGE, LARGE_CHUNK = 100_000, 12_500  # the large batch: 8 chunks, about four for each worker
WORDS = ["Paris", "said", "Anna", "lives", "in", "Berlin", "the", "Union", "on", "Monday", "Kenji", "Warsaw"]
SENTENCES = [
    "EU rejects German call to boycott British lamb .",
    "Peter Blackburn",
    "BRUSSELS 1996-08-22",
    "The European Commission said on Thursday it disagreed with German advice .",
    "Germany 's representative to the European Union 's veterinary committee Werner Zwingmann said .",
    "Kenji Varga said the Turkish team would travel to Warsaw on Monday .",
]


@pytest.fixture(scope="module")
def stack(
    redis_url: str, tmp_path_factory: pytest.TempPathFactory, s3_endpoint: str
) -> Iterator[dict[str, Any]]:
    """The API and two workers ("a", "b"), each with a cache of its own in front of the object store;
    yields the URL, the store, an operator's view of the object store, the processes and their logs."""
    import redis

    from jobstore.store import Store

    folder, tag = tmp_path_factory.mktemp("batch"), secrets.token_hex(4)
    prefix = f"s3://tagdistill/{tag}"
    env = {
        **os.environ, "PYTHONPATH": str(ROOT), "TAGDISTILL_REDIS_URL": redis_url,
        "TAGDISTILL_DATA_DIR": str(folder / "cache-api"), "TAGDISTILL_KEY_PREFIX": f"tdbatch-{tag}:",
        "TAGDISTILL_QUEUE": f"tdbatch-{tag}", "TAGDISTILL_TORCH_THREADS": "1",
        "TAGDISTILL_HEARTBEAT_S": "0.5", "TAGDISTILL_HEARTBEAT_TIMEOUT_S": str(HEARTBEAT_TIMEOUT_S),
        "TAGDISTILL_BATCH_CHUNK_SIZE": str(CHUNK), "TAGDISTILL_MAX_TASKS_PER_CHILD": "1000",
        "TAGDISTILL_MAX_BATCH_UPLOAD_MB": "1", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
        "TAGDISTILL_STORAGE_URL": prefix, "TAGDISTILL_STORAGE_ENDPOINT_URL": s3_endpoint,
        "TAGDISTILL_STORAGE_KEY": CREDENTIALS["key"], "TAGDISTILL_STORAGE_SECRET": CREDENTIALS["secret"],
    }
    store = Store.from_url(redis_url, env["TAGDISTILL_KEY_PREFIX"])
    operator = ArtifactStore(folder / "operator", prefix, endpoint_url=s3_endpoint, **CREDENTIALS)
    procs: dict[str, Any] = {}
    try:
        for name in ("a", "b"):
            log = folder / f"worker-{name}.log"
            worker_env = {**env, "TAGDISTILL_DATA_DIR": str(folder / f"cache-{name}")}
            procs[name] = (start_worker(worker_env, f"{name}@{env['TAGDISTILL_QUEUE']}", log, store), log)
        api, url = start_api(env, folder / "api.log")
        procs["api"] = (api, folder / "api.log")
        queue = env["TAGDISTILL_QUEUE"]
        yield {"url": url, "store": store, "operator": operator, "queue": queue, "procs": procs, "env": env,
               "folder": folder}
    finally:
        for proc, _ in procs.values():
            _stop(proc)
        client = redis.Redis.from_url(redis_url)
        keys = list(client.scan_iter(match=env["TAGDISTILL_KEY_PREFIX"] + "*", count=1000))
        if keys:
            client.delete(*keys)


@pytest.fixture(scope="module")
def model(stack: dict[str, Any]) -> dict[str, Any]:
    """A model record whose student (default sizes, no word vectors, untrained) is in the object store
    only (put there by an operator)."""
    from tagdistill.config import StudentConfig
    from tagdistill.student import NeuralTagger
    from tagdistill.vocab import Vocab

    cfg = StudentConfig(embeddings=None)
    labels = ["O", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
    student = NeuralTagger(cfg, Vocab.build([s.split() for s in SENTENCES], labels, cfg))
    operator, job = stack["operator"], f"jobs/job_{secrets.token_hex(6)}"
    record = untrained_model(stack["store"], operator.local(job), student, "ds_batch")
    operator.push(record.student_path)
    return {"id": record.id, "folder": operator.local(record.student_path)}


@pytest.fixture(scope="module")
def onnx_model(stack: dict[str, Any]) -> dict[str, Any]:
    """Like ``model``, exported to ONNX as the pipeline exports the served student: the runtime that tags
    the large input, in the workers and in this process alike."""
    from tagdistill.config import StudentConfig
    from tagdistill.export import export_student
    from tagdistill.student import NeuralTagger
    from tagdistill.vocab import Vocab

    cfg = StudentConfig(embeddings=None)
    sentences = [short_sentence(i).split() for i in range(200)]
    labels = ["O", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
    student = NeuralTagger(cfg, Vocab.build(sentences, labels, cfg))
    operator, job = stack["operator"], f"jobs/job_{secrets.token_hex(6)}"
    record = untrained_model(stack["store"], operator.local(job), student, "ds_batch")
    export_student(operator.local(record.student_path), sentences=sentences)
    operator.push(record.student_path)
    return {"id": record.id, "folder": operator.local(record.student_path)}


@pytest.fixture
def large_api(stack: dict[str, Any]) -> Iterator[str]:
    """A second API on the same Redis, queue and store as ``stack``'s, that cuts uploads into chunks of
    LARGE_CHUNK and takes files of up to 8 MB: the workers tag whatever chunks a batch record names."""
    env = {
        **stack["env"], "TAGDISTILL_BATCH_CHUNK_SIZE": str(LARGE_CHUNK),
        "TAGDISTILL_MAX_BATCH_UPLOAD_MB": "8", "TAGDISTILL_DATA_DIR": str(stack["folder"] / "cache-large"),
    }
    proc, url = start_api(env, stack["folder"] / "large-api.log")
    yield url
    _stop(proc)


@pytest.fixture
def unswept(stack: dict[str, Any]) -> Batches:
    """Batch records under a key prefix of their own, which no worker's sweep reads: the store's rules
    alone, with no sweep taking notes or chunks meanwhile."""
    from jobstore.store import Store

    return Batches(Store(stack["store"].r, stack["store"].p + f"unswept-{secrets.token_hex(4)}:"))


@pytest.fixture
def client(stack: dict[str, Any]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack["url"], timeout=60) as c:
        yield c


def short_sentence(i: int) -> str:
    """Line ``i`` of the large input: 2 to 4 words, the last one ``i`` itself, so that every line is its
    own and its output says where it came from."""
    return " ".join([*(WORDS[(i * 5 + k) % len(WORDS)] for k in range(1 + i % 3)), str(i)])


def one_process(model: dict[str, Any], items: list[Any]) -> list[dict[str, Any]]:
    """What tagging the whole input in this process gives."""
    from tagdistill.tagger import Tagger

    return Tagger.load(model["folder"]).predict(items)


def submit(
    client: httpx.Client, model_id: str, body: bytes, format: str = "text", name: str = "in.txt"
) -> httpx.Response:
    form = {"model_id": model_id, "format": format}
    return client.post("/batch-jobs", files={"file": (name, body)}, data=form)


def ended(client: httpx.Client, batch_id: str, timeout_s: float = 120) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        batch = client.get(f"/batch-jobs/{batch_id}").json()
        return batch if batch["status"] in {"succeeded", "failed", "cancelled"} else None

    return wait_for(done, timeout_s, f"batch job {batch_id} to end")


def output(client: httpx.Client, batch_id: str) -> list[dict[str, Any]]:
    response = client.get(f"/batch-jobs/{batch_id}/output")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/x-ndjson"
    return [json.loads(line) for line in response.text.splitlines()]


def recorded_batch(stack: dict[str, Any], model: dict[str, Any], lines: list[str]) -> Any:
    """A batch as ``POST /batch-jobs`` records it (chunk files in the store, the queued record and its
    chord's outbox note) with no message sent: what an API that died before sending leaves."""
    from jobstore.batches import BatchJob, folder, split_input
    from jobstore.records import utcnow

    operator, batches = stack["operator"], Batches(stack["store"])
    batch_id, source = batches.new_id(), stack["folder"] / "recorded.txt"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    inputs = f"{folder(batch_id)}/input"
    sentences, chunks = split_input(source, "text", "in.txt", 10_000, CHUNK, operator.local(inputs))
    operator.push(inputs)
    now, student = utcnow(), stack["store"].get_model(model["id"]).student_path
    return batches.create(BatchJob(
        id=batch_id, status="queued", model_id=model["id"], format="text", created_at=now, updated_at=now,
        sentences=sentences, chunks=chunks, chunk_size=CHUNK, student_path=student,
    ), max_active=100)


def back_date(stack: dict[str, Any], note: str) -> None:
    """Make the outbox's ``note`` as old as the sweep's bound, without waiting it out."""
    store, when = stack["store"], time.time() - HEARTBEAT_TIMEOUT_S
    assert store.r.zadd(store.p + "batches:outbox", {note: when}, xx=True, ch=True)


def sent_again_by_the_sweep(stack: dict[str, Any], note: str) -> bool:
    """Whether a worker's log says its sweep sent the message of ``note`` again, and the note is gone."""
    store, said = stack["store"], "batch message sent again: it was noted but its send was never confirmed"
    logs = "".join(log.read_text() for name, (_, log) in stack["procs"].items() if name != "api")
    return (store.r.zscore(store.p + "batches:outbox", note) is None
            and any(said in line and note in line for line in logs.splitlines()))


def test_same_tagging_allows_score_rounding_but_no_other_difference() -> None:
    entity = {"text": "Paris", "label": "LOC", "start": 0, "end": 5, "score": 0.1541}
    result = {"tokens": ["Paris"], "tags": ["B-LOC"], "entities": [entity]}
    assert same_tagging([result], [{**result, "entities": [{**entity, "score": 0.1542}]}])
    assert not same_tagging([result], [{**result, "entities": [{**entity, "score": 0.1545}]}])
    assert not same_tagging([result], [{**result, "entities": [{**entity, "label": "ORG"}]}])
    assert not same_tagging([result], [{**result, "tags": ["B-ORG"]}])
    assert not same_tagging([result], [{**result, "entities": []}])


def test_text_output_is_what_one_process_gives_in_input_order_and_progress_adds_up(
    client: httpx.Client, model: dict[str, Any], stack: dict[str, Any]
) -> None:
    lines = [f"{s} ( line {i} )" for i, s in enumerate(SENTENCES * 10)]  # 60 sentences, each its own
    body = "\n".join([*lines[:30], "", "   ", *lines[30:]]) + "\n"  # blank lines are skipped
    response = submit(client, model["id"], body.encode())
    assert response.status_code == 202, response.text
    queued = response.json()
    assert queued["status"] == "queued" and queued["sentences"] == 60 and queued["chunks"] == 9
    assert response.headers["location"] == f"/batch-jobs/{queued['id']}"
    batch = ended(client, queued["id"])
    assert batch["status"] == "succeeded", batch
    expected = one_process(model, lines)
    assert same_tagging(output(client, batch["id"]), expected)
    assert batch["chunks_done"] == 9 and batch["sentences_done"] == 60
    assert batch["words_done"] == sum(len(r["tokens"]) for r in expected)
    assert batch["words_per_second"] > 0 and batch["output_bytes"] > 0
    assert sum(batch["workers"].values()) == 9
    operator = stack["operator"]  # what the store keeps: the merged output, not the chunks
    kept = [k.rsplit("/", 1)[-1] for k in operator.fs.find(f"{operator.url}/batches/{batch['id']}")]
    assert len(kept) == 1 and kept[0].startswith("output-"), kept
    assert batch["id"] in [b["id"] for b in client.get("/batch-jobs").json()["items"]]


def test_json_lines_of_text_and_tokens_are_tagged_as_one_process_tags_them(
    client: httpx.Client, model: dict[str, Any]
) -> None:
    items: list[Any] = [s if i % 2 else s.split() for i, s in enumerate(SENTENCES * 3)]
    body = "".join(json.dumps({"text": x} if isinstance(x, str) else {"tokens": x, "id": i}) + "\n"
                   for i, x in enumerate(items))
    response = submit(client, model["id"], body.encode(), "jsonl", "in.jsonl")
    assert response.status_code == 202, response.text
    batch = ended(client, response.json()["id"])
    assert batch["status"] == "succeeded", batch
    assert same_tagging(output(client, batch["id"]), one_process(model, items))


@pytest.mark.parametrize(
    ("format", "body", "line", "says"),
    [
        ("jsonl", b'{"text": "fine"}\n{"tokens": ["a", "b"]}\n{"text": "oops"\n', 3, "not JSON"),
        ("jsonl", b'{"text": "fine"}\n\n{"tokens": ["a", " b"]}\n', 3, '"tokens" must be'),
        ("jsonl", b'{"text": "fine"}\n{"text": "x", "tokens": ["x"]}\n', 2, 'one of "text" or "tokens"'),
        ("jsonl", b'{"text": ""}\n', 1, '"text" must be a non-empty string'),
        ("text", b"fine\nalso fine\nnot \xff UTF-8\n", 3, "not UTF-8"),
    ],
)
def test_a_bad_line_is_422_naming_the_line_and_nothing_is_queued(
    client: httpx.Client, model: dict[str, Any], format: str, body: bytes, line: int, says: str
) -> None:
    before = client.get("/batch-jobs").json()["items"]
    response = submit(client, model["id"], body, format, "big.input")
    assert response.status_code == 422, response.text
    (error,) = response.json()["errors"]
    assert error["param"] == "file" and error["line"] == line and error["code"] == "data_error"
    assert error["message"].startswith(f"big.input, line {line}: ") and says in error["message"]
    assert client.get("/batch-jobs").json()["items"] == before


def test_a_file_without_sentences_is_422(client: httpx.Client, model: dict[str, Any]) -> None:
    response = submit(client, model["id"], b"\n  \n")
    assert response.status_code == 422, response.text
    assert "no sentences" in response.json()["error"]["message"]


def test_an_unknown_model_is_422_naming_model_id(client: httpx.Client) -> None:
    response = submit(client, "mdl_nothere", b"EU rejects German call .\n")
    assert response.status_code == 422, response.text
    assert response.json()["error"]["param"] == "model_id"


def test_a_model_whose_student_is_not_in_the_store_is_422_naming_model_id(
    client: httpx.Client, stack: dict[str, Any]
) -> None:
    from jobstore.records import Model, utcnow
    from tagdistill.config import JobConfig

    store = stack["store"]
    record = Model(
        id=store.new_id("mdl"), job_id="job_gone", dataset_id="ds_batch", created_at=utcnow(), labels=["O"],
        student_path="jobs/job_gone/student", teacher_path="jobs/job_gone/teacher", teacher={}, student={},
        speedup={}, seconds={}, device="cpu", config=JobConfig(dataset_id="ds_batch"),
    )
    store.add_model(record)
    response = submit(client, record.id, b"EU rejects German call .\n")
    assert response.status_code == 422, response.text
    assert response.json()["error"]["param"] == "model_id" and "not in the artifact store" in response.text


def test_a_file_over_the_upload_limit_is_413(client: httpx.Client, model: dict[str, Any]) -> None:
    response = submit(client, model["id"], b"EU rejects German call .\n" * 50_000)  # 1.25 MB, limit 1 MB
    assert response.status_code == 413, response.text


def test_output_of_an_unfinished_or_unknown_batch_is_409_or_404(
    client: httpx.Client, model: dict[str, Any]
) -> None:
    assert client.get("/batch-jobs/bat_nothere/output").status_code == 404
    batch = submit(client, model["id"], ("\n".join(SENTENCES * 20)).encode()).json()
    client.post(f"/batch-jobs/{batch['id']}/cancel")
    assert client.get(f"/batch-jobs/{batch['id']}/output").status_code == 409


def test_a_cancelled_batch_ends_cancelled_at_once_and_stops_tagging(
    client: httpx.Client, model: dict[str, Any], stack: dict[str, Any]
) -> None:
    lines = [" ".join(f"{s} {i}" for s in SENTENCES * 5) for i in range(40 * CHUNK)]  # 40 chunks, seconds
    batch = submit(client, model["id"], "\n".join(lines).encode()).json()
    response = client.post(f"/batch-jobs/{batch['id']}/cancel")
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "cancelled" and response.json()["cancel_requested"]
    assert client.post(f"/batch-jobs/{batch['id']}/cancel").status_code == 409
    store = stack["store"]

    def queue_drained() -> bool:  # the deliveries still queued are dropped at once, not tagged
        return store.r.llen(store.p + stack["queue"]) == 0

    wait_for(queue_drained, 60, "the cancelled chunks to be dropped")
    after = client.get(f"/batch-jobs/{batch['id']}").json()
    assert after["status"] == "cancelled" and after["chunks_done"] < after["chunks"] / 2, after
    assert after["output_bytes"] is None
    assert client.get(f"/batch-jobs/{batch['id']}").json()["chunks_done"] == after["chunks_done"]


def test_100000_sentences_are_split_across_both_workers_and_tagged_as_one_process_in_input_order(
    large_api: str, onnx_model: dict[str, Any], stack: dict[str, Any]
) -> None:
    """The scale the issue asks for, kept cheap: short sentences and an untrained ONNX student, so that
    the tagging takes seconds and what is checked is the split, the store round trips and the merge."""
    lines = [short_sentence(i) for i in range(LARGE)]
    with httpx.Client(base_url=large_api, timeout=120) as client:
        response = submit(client, onnx_model["id"], ("\n".join(lines) + "\n").encode())
        assert response.status_code == 202, response.text
        queued = response.json()
        assert (queued["sentences"], queued["chunks"]) == (LARGE, LARGE // LARGE_CHUNK)
        batch = ended(client, queued["id"], 170)
        assert batch["status"] == "succeeded", batch
        tagged = output(client, batch["id"])
    assert [r["tokens"][-1] for r in tagged] == [str(i) for i in range(LARGE)]  # in input order, none lost
    assert same_tagging(tagged, one_process(onnx_model, lines))
    assert batch["workers"].keys() == {f"{name}@{stack['queue']}" for name in ("a", "b")}, batch["workers"]
    assert sum(batch["workers"].values()) == batch["chunks_done"] == LARGE // LARGE_CHUNK
    assert batch["sentences_done"] == LARGE


def test_delete_removes_an_ended_batch_its_record_and_its_files_and_is_409_while_it_runs(
    client: httpx.Client, model: dict[str, Any], stack: dict[str, Any]
) -> None:
    operator, store = stack["operator"], stack["store"]

    def stored(batch_id: str) -> list[str]:
        return operator.fs.find(f"{operator.url}/batches/{batch_id}")

    lines = [f"{s} ( line {i} )" for i, s in enumerate(SENTENCES * 3)]
    done = ended(client, submit(client, model["id"], "\n".join(lines).encode()).json()["id"])
    assert done["status"] == "succeeded", done
    assert stored(done["id"])  # the merged output
    assert client.delete(f"/batch-jobs/{done['id']}").status_code == 204
    assert client.get(f"/batch-jobs/{done['id']}").status_code == 404
    assert client.get(f"/batch-jobs/{done['id']}/output").status_code == 404
    assert done["id"] not in [b["id"] for b in client.get("/batch-jobs").json()["items"]]
    assert stored(done["id"]) == [] and list(store.r.scan_iter(match=store.p + f"batch:{done['id']}*")) == []
    again = client.delete(f"/batch-jobs/{done['id']}")
    assert again.status_code == 404 and again.json()["error"]["code"] == "batch_job_not_found"
    assert client.delete("/batch-jobs/bat_nothere").status_code == 404

    lines = [" ".join(f"{s} {i}" for s in SENTENCES * 5) for i in range(40 * CHUNK)]  # 40 chunks, seconds
    busy = submit(client, model["id"], "\n".join(lines).encode()).json()
    refused = client.delete(f"/batch-jobs/{busy['id']}")
    assert refused.status_code == 409, refused.text
    error = refused.json()["error"]
    assert error["code"] == "batch_job_active" and "cancel it first" in error["message"]
    assert client.get(f"/batch-jobs/{busy['id']}").json()["status"] in {"queued", "running"}
    assert client.post(f"/batch-jobs/{busy['id']}/cancel").status_code == 202
    assert client.delete(f"/batch-jobs/{busy['id']}").status_code == 204
    assert client.get(f"/batch-jobs/{busy['id']}").status_code == 404

    def settled() -> bool:  # no chunk queued, none running (kombu keeps a running task's message unacked)
        return store.r.llen(store.p + stack["queue"]) == 0 and store.r.hlen(store.p + "unacked") == 0

    wait_for(settled, 60, "the deleted batch's chunks to be dropped or ended")
    assert stored(busy["id"]) == []  # a chunk that was running removed its file on finding the batch gone


def test_a_chunk_whose_pool_process_is_killed_runs_again_and_the_output_is_unchanged(
    client: httpx.Client, model: dict[str, Any], stack: dict[str, Any]
) -> None:
    """Both workers' pool processes are killed with SIGKILL while they tag (as the OOM killer does):
    Celery puts each chunk back (``task_reject_on_worker_lost``), it is tagged again, the merge runs once
    and the output is still exactly what one process gives."""
    # long sentences (about 1,500 words each): a chunk takes about a second, long enough to be caught
    lines = [" ".join(f"{s} {i}" for s in SENTENCES * 25) for i in range(4 * CHUNK)]
    batch = submit(client, model["id"], "\n".join(lines).encode()).json()

    def tagging() -> bool:  # past the first chunk: the pool processes have loaded torch and the model
        return client.get(f"/batch-jobs/{batch['id']}").json()["chunks_done"] >= 1

    wait_for(tagging, 120, "the first chunk to be tagged", every_s=0.05)
    logs = {}
    for name in ("a", "b"):
        proc, log = stack["procs"][name]
        logs[name] = log
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        for pid in children:
            os.kill(int(pid), signal.SIGKILL)
    done = ended(client, batch["id"], 180)
    assert done["status"] == "succeeded", done
    assert same_tagging(output(client, batch["id"]), one_process(model, lines))
    assert done["chunks_done"] == 4 and sum(done["workers"].values()) == 4
    lost = sum(log.read_text().count("WorkerLostError") for log in logs.values())
    assert lost >= 1, "no chunk was running when its pool process was killed"


def test_a_chunk_recorded_twice_counts_once_and_only_one_merge_ends_the_batch(unswept: Batches) -> None:
    """What keeps attempts apart when Celery runs a chunk twice (a redelivery after its worker was lost)
    or delivers the merge twice: the first attempt to record a chunk is the one that counts, and one
    delivery at a time claims a chunk. A chunk running on a worker that stopped reporting is found by
    one sweep, once, and noted in the outbox with its requeue."""
    from jobstore.batches import BatchJob, chord_note, chunk_note, merge_note
    from jobstore.records import utcnow

    batches, now = unswept, utcnow()
    batch = batches.create(BatchJob(
        id=batches.new_id(), status="queued", model_id="mdl_x", format="text", created_at=now, updated_at=now,
        sentences=10, chunks=2, chunk_size=5, student_path="jobs/x/student",
    ), max_active=100)
    assert batches.r.zscore(batches.outbox.key, chord_note(batch.id, 2)) is not None  # noted with the record
    batches.sent(chord_note(batch.id, 2))
    assert batches.start_chunk(batch.id, 0, "w1", "t0") and batches.get(batch.id).status == "running"
    assert batches.chunk_done(batch.id, 0, "first", "w1", 5, 40, 1.0)
    assert not batches.start_chunk(batch.id, 0, "w2", "t0-again")  # a second message finds it done
    assert not batches.chunk_done(batch.id, 0, "second", "w2", 5, 40, 1.0)
    assert not batches.succeed(batch.id, "batches/x/output-a.jsonl", 100)  # chunk 1 is not done
    assert batches.start_chunk(batch.id, 1, "w2", "t1")
    assert not batches.start_chunk(batch.id, 1, "w1", "t1-again")  # tagged by another delivery meanwhile
    assert batches.start_chunk(batch.id, 1, "w2", "t1")  # its own message back (its pool process killed)
    assert batches.lost_chunks(alive={"w2"}, timeout_s=0) == []
    assert batches.lost_chunks(alive={"w1"}, timeout_s=0) == [(batch.id, 1)]  # w2 died: sent again once
    assert batches.lost_chunks(alive={"w1"}, timeout_s=0) == []
    assert batches.get(batch.id).resent == 1
    assert batches.r.zscore(batches.outbox.key, chunk_note(batch.id, 1)) is not None  # with the requeue
    batches.sent(chunk_note(batch.id, 1))
    assert batches.start_chunk(batch.id, 1, "w1", "t1-sweep")  # the sweep's message claims it
    after = batches.chunk_done(batch.id, 1, "third", "w1", 5, 35, 1.0)
    assert after is not None and (after.chunks_done, after.sentences_done, after.words_done) == (2, 10, 75)
    assert batches.r.zscore(batches.outbox.key, merge_note(batch.id)) is not None  # a resent chunk ended it
    assert batches.attempts(batch.id) == {0: "first", 1: "third"}
    assert batches.succeed(batch.id, "batches/x/output-a.jsonl", 100)
    assert not batches.succeed(batch.id, "batches/x/output-b.jsonl", 100)
    assert batches.get(batch.id).output == "batches/x/output-a.jsonl"


def test_the_batch_outbox_gives_a_note_left_unsent_to_one_sweeper_and_drops_one_no_longer_wanted(
    unswept: Batches
) -> None:
    from jobstore.batches import BatchJob, chord_note
    from jobstore.records import utcnow

    batches, now = unswept, utcnow()
    batch = batches.create(BatchJob(
        id=batches.new_id(), status="queued", model_id="mdl_x", format="text", created_at=now, updated_at=now,
        sentences=3, chunks=1, chunk_size=5, student_path="jobs/x/student",
    ), max_active=100)
    note, outbox = chord_note(batch.id, 1), batches.outbox.key
    assert batches.unsent(older_than_s=60) == []  # its sender may still be sending
    batches.r.zadd(outbox, {note: time.time() - 120})  # as if its sender had died before the send
    assert batches.unsent(older_than_s=60) == [note]
    assert batches.unsent(older_than_s=60) == []  # renewed by the sweeper that took it
    batches.cancel(batch.id)
    batches.r.zadd(outbox, {note: time.time() - 120})
    assert batches.unsent(older_than_s=60) == [] and batches.r.zscore(outbox, note) is None  # dropped


def test_a_batch_whose_api_died_before_sending_its_chord_is_sent_by_the_sweep_and_tagged_as_one_process(
    client: httpx.Client, model: dict[str, Any], stack: dict[str, Any]
) -> None:
    from jobstore.batches import chord_note

    lines = [f"{s} ( line {i} )" for i, s in enumerate(SENTENCES * 3)]  # 18 sentences, 3 chunks
    batch = recorded_batch(stack, model, lines)
    note = chord_note(batch.id, batch.chunks)
    back_date(stack, note)
    done = ended(client, batch.id)
    assert done["status"] == "succeeded", done
    assert same_tagging(output(client, batch.id), one_process(model, lines))
    assert done["chunks_done"] == 3 and sum(done["workers"].values()) == 3
    assert sent_again_by_the_sweep(stack, note)


def test_chunks_of_a_lost_worker_whose_sweeper_died_before_sending_them_are_sent_by_the_sweep(
    client: httpx.Client, model: dict[str, Any], stack: dict[str, Any]
) -> None:
    """Every chunk noted running on a worker that is gone, then marked requeued by a sweeper that died
    before sending them again: the outbox's notes are what the live workers' sweep sends."""
    from jobstore.batches import chord_note, chunk_note

    lines = [f"{s} ( line {i} )" for i, s in enumerate(SENTENCES * 2)]  # 12 sentences, 2 chunks
    batch = recorded_batch(stack, model, lines)
    batches = Batches(stack["store"])
    batches.sent(chord_note(batch.id, batch.chunks))
    for index in range(batch.chunks):
        assert batches.start_chunk(batch.id, index, "gone@nowhere", f"lost-{index}")
    alive = {w.name for w in stack["store"].live_workers(HEARTBEAT_TIMEOUT_S)}
    lost = sorted((b, i) for b, i in batches.lost_chunks(alive, timeout_s=0) if b == batch.id)
    assert lost == [(batch.id, 0), (batch.id, 1)]
    for index in range(batch.chunks):
        back_date(stack, chunk_note(batch.id, index))
    done = ended(client, batch.id)
    assert done["status"] == "succeeded", done  # and the chunk that completed it sent the merge
    assert same_tagging(output(client, batch.id), one_process(model, lines))
    assert done["resent"] == 2 and "gone@nowhere" not in done["workers"]
    assert all(sent_again_by_the_sweep(stack, chunk_note(batch.id, i)) for i in range(batch.chunks))


def test_a_merge_whose_sender_died_after_the_last_chunk_was_recorded_is_sent_by_the_sweep(
    client: httpx.Client, model: dict[str, Any], stack: dict[str, Any]
) -> None:
    """A batch of which a chunk was sent again, its last chunk recorded done by a worker that died before
    sending the merge: every chunk done, no merge on any queue. The chunks' outputs are written here as a
    worker would, then the sweep sends the merge."""
    from jobstore.batches import chord_note, chunk_note, chunk_output_path, merge_note, result_line

    lines = [f"{s} ( line {i} )" for i, s in enumerate(SENTENCES * 2)]  # 12 sentences, 2 chunks
    batch = recorded_batch(stack, model, lines)
    operator, batches, live = stack["operator"], Batches(stack["store"]), f"a@{stack['queue']}"
    alive = {w.name for w in stack["store"].live_workers(HEARTBEAT_TIMEOUT_S)}
    parts = [one_process(model, lines[i : i + CHUNK]) for i in range(0, len(lines), CHUNK)]
    for index, results in enumerate(parts):
        path = chunk_output_path(batch.id, index, "a")
        operator.local(path).parent.mkdir(parents=True, exist_ok=True)
        operator.local(path).write_text("".join(result_line(r) for r in results), encoding="utf-8")
        operator.push(path)
    batches.sent(chord_note(batch.id, batch.chunks))
    assert batches.start_chunk(batch.id, 0, "gone@nowhere", "lost-0")
    assert [(b, i) for b, i in batches.lost_chunks(alive, timeout_s=0) if b == batch.id] == [(batch.id, 0)]
    batches.sent(chunk_note(batch.id, 0))  # sent again, and claimed by a live worker:
    for index, results in enumerate(parts):
        assert batches.start_chunk(batch.id, index, live, f"t{index}")
        words = sum(len(r["tokens"]) for r in results)
        after = batches.chunk_done(batch.id, index, "a", live, len(results), words, 0.1)
    assert after is not None and after.chunks_done == after.chunks and after.status == "running"
    back_date(stack, merge_note(batch.id))  # noted with the last chunk's record: its worker died here
    done = ended(client, batch.id)
    assert done["status"] == "succeeded", done
    assert same_tagging(output(client, batch.id), one_process(model, lines))
    assert sent_again_by_the_sweep(stack, merge_note(batch.id))


def test_a_chunk_whose_worker_is_killed_whole_is_sent_again_and_the_output_is_unchanged(
    client: httpx.Client, model: dict[str, Any], stack: dict[str, Any]
) -> None:
    """A whole worker (main and pool process) is killed with SIGKILL while it tags a chunk: the broker
    would give that chunk's message back only after its visibility timeout (hours), so the other
    worker's sweep sends the chunk again once the dead one has not reported for 3 s, and that run
    merges the batch (the chord, missing the lost message, never would). Last in the module: it leaves
    one worker."""
    lines = [" ".join(f"{s} {i}" for s in SENTENCES * 25) for i in range(6 * CHUNK)]
    batch = submit(client, model["id"], "\n".join(lines).encode()).json()
    store = stack["store"]
    names = {f"{n}@{stack['queue']}": n for n in ("a", "b")}

    def busy_worker() -> str | None:  # a worker tagging a chunk, past the batch's first (torch loaded)
        if client.get(f"/batch-jobs/{batch['id']}").json()["chunks_done"] < 1:
            return None
        running = store.r.hgetall(store.p + f"batch:{batch['id']}:running").values()
        return next((names[w] for w in (json.loads(r)["worker"] for r in running) if w in names), None)

    killed = wait_for(busy_worker, 120, "a worker to tag a chunk", every_s=0.05)
    proc, _ = stack["procs"][killed]
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = ended(client, batch["id"], 180)
    assert done["status"] == "succeeded", done
    assert same_tagging(output(client, batch["id"]), one_process(model, lines))
    survivor = stack["procs"]["b" if killed == "a" else "a"][1]
    assert "chunk sent again: its worker stopped reporting" in survivor.read_text()
