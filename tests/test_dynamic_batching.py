"""Dynamic batching of POST /predict (service/predictor.py ``Batcher``), through real API processes.

No training and no worker: the model is a small, untrained BiLSTM student with the sample's
vocabulary, exported to ONNX as a job's would be (so the API serves it on ONNX Runtime), registered by
hand under a key prefix of this module's own (inside the session's, so the session removes its keys).
Untrained, it still tags: random weights put entities in most sentences, which is all the comparison
needs. The same model is served by an API with the default batching window and by one with the window
at 0 (batching off).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from builders import SAMPLE, untrained_model
from conftest import _stop, start_api, wait_for

CLIENTS = 16
ROUNDS = 6  # requests per client in a burst
KNOWN = "Researchers at Osaka University said they had found a new species of frog in the Andes ."


def sample_sentences() -> list[str]:
    out, words = [], []
    for line in (SAMPLE / "train.conll").read_text().splitlines():
        if line.strip():
            words.append(line.split()[0])
        elif words:
            out.append(" ".join(words))
            words = []
    return out


def client_texts(client: int, round_: int) -> list[str]:
    """Different texts for every request of the burst, 1 to 3 of them, so slices of unequal sizes sit
    side by side in a batch."""
    sentences = sample_sentences()
    start = (client * ROUNDS + round_) * 3
    return sentences[start : start + 1 + (client + round_) % 3]


@pytest.fixture(scope="module")
def batching_env(service_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    env = {
        **service_env,
        "TAGDISTILL_KEY_PREFIX": service_env["TAGDISTILL_KEY_PREFIX"] + "batching:",
        "TAGDISTILL_DATA_DIR": str(tmp_path_factory.mktemp("batching-data")),
        # room for a request of 64 full pieces (the hang-up test): work no machine ends in a client's 0.3 s
        "TAGDISTILL_MAX_PREDICT_TOTAL_CHARS": str(64 * 20_000),
    }
    env.pop("TAGDISTILL_BATCH_WINDOW_MS", None)  # the default window
    env.pop("TAGDISTILL_BATCH_MAX_INPUTS", None)
    return env


@pytest.fixture(scope="module")
def model(batching_env: dict[str, str]) -> dict[str, Any]:
    """The served student (ONNX) and its model record; ``folder`` is the student's folder."""
    from jobstore.store import Store
    from tagdistill.config import StudentConfig
    from tagdistill.export import export_student
    from tagdistill.student import NeuralTagger
    from tagdistill.vocab import Vocab

    labels = ["O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
    cfg = StudentConfig(hidden=16, word_dim=16, char_dim=8, char_hidden=8, embeddings=None)
    student = NeuralTagger(cfg, Vocab.build([s.split() for s in sample_sentences()], labels, cfg))
    job_dir = Path(batching_env["TAGDISTILL_DATA_DIR"]) / "jobs" / "job_batching"
    store = Store.from_url(batching_env["TAGDISTILL_REDIS_URL"], batching_env["TAGDISTILL_KEY_PREFIX"])
    record = untrained_model(store, job_dir, student, "ds_batching")
    export_student(job_dir / "student")
    return {**record.model_dump(mode="json"), "folder": job_dir / "student"}


@pytest.fixture(scope="module")
def expected(model: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every text of the bursts tagged one by one, in this process, by the same model folder."""
    from tagdistill.tagger import Tagger

    tagger = Tagger.load(model["folder"])
    assert tagger.runtime == "onnx"  # as the API will serve it
    texts = {t for c in range(CLIENTS) for r in range(ROUNDS) for t in client_texts(c, r)} | {KNOWN}
    return {text: tagger.predict([text])[0] for text in texts}


def start(env: dict[str, str], log: Path) -> Iterator[str]:
    proc, url = start_api(env, log)
    try:
        yield url
    finally:
        _stop(proc)


@pytest.fixture(scope="module")
def batching_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs") / "batching-api.log"


@pytest.fixture(scope="module")
def batching_api(batching_env: dict[str, str], model: dict[str, Any], batching_log: Path) -> Iterator[str]:
    """An API with the default batching settings, the model not yet loaded."""
    yield from start(batching_env, batching_log)


@pytest.fixture(scope="module")
def unbatched_api(
    batching_env: dict[str, str], model: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The same, with the window at 0: batching off."""
    env = {**batching_env, "TAGDISTILL_BATCH_WINDOW_MS": "0"}
    yield from start(env, tmp_path_factory.mktemp("logs") / "unbatched-api.log")


def same_results(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> bool:
    """Whether API results are the expected ones: tokens, tags and entities exactly, entity scores to
    within 1e-3 (padded with other sentences in a batch, a model's floats may differ in the last bits,
    which can move a score's rounded fourth decimal)."""
    def without_scores(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{**r, "entities": [{k: v for k, v in e.items() if k != "score"} for e in r["entities"]]}
                for r in results]

    scores = [(a["score"], b["score"]) for x, y in zip(got, want, strict=True)
              for a, b in zip(x["entities"], y["entities"], strict=True)]
    return without_scores(got) == without_scores(want) and all(abs(a - b) <= 1e-3 for a, b in scores)


def burst(url: str, model_id: str) -> list[tuple[list[str], dict[str, Any]]]:
    """CLIENTS clients, released together, each sending ROUNDS requests of its own texts back to back;
    every (texts, response body), after checking each answer is a 200."""
    barrier = threading.Barrier(CLIENTS)

    def client(c: int) -> list[tuple[list[str], dict[str, Any]]]:
        out = []
        with httpx.Client(base_url=url, timeout=120) as http:
            barrier.wait()
            for r in range(ROUNDS):
                texts = client_texts(c, r)
                response = http.post("/predict", json={"model_id": model_id, "texts": texts})
                assert response.status_code == 200, response.text
                out.append((texts, response.json()))
        return out

    with ThreadPoolExecutor(CLIENTS) as pool:
        return [item for items in pool.map(client, range(CLIENTS)) for item in items]


@pytest.fixture(scope="module")
def batched_burst(batching_api: str, model: dict[str, Any]) -> list[tuple[list[str], dict[str, Any]]]:
    """A burst on the batching API: also the model's first requests there."""
    return burst(batching_api, model["id"])


def test_concurrent_clients_each_get_their_own_results_in_order_as_if_tagged_alone(
    batched_burst: list[tuple[list[str], dict[str, Any]]], expected: dict[str, dict[str, Any]]
) -> None:
    assert len(batched_burst) == CLIENTS * ROUNDS
    assert sum(len(texts) for texts, _ in batched_burst) > CLIENTS * ROUNDS  # requests of several texts
    for texts, body in batched_burst:
        assert body["model"] == "student"
        assert same_results(body["results"], [expected[t] for t in texts])
    assert sum(bool(expected[t]["entities"]) for t in expected) > len(expected) / 2  # a real comparison


def test_under_concurrency_some_responses_were_batched_with_others(
    batched_burst: list[tuple[list[str], dict[str, Any]]],
) -> None:
    shared = [body["batched_with"] for _, body in batched_burst]
    assert all(1 <= n <= CLIENTS for n in shared)  # a client has one request at a time
    assert max(shared) > 1, shared
    assert sum(n > 1 for n in shared) >= CLIENTS  # not a fluke: many requests shared a call


def test_a_burst_of_first_requests_loads_the_model_once_and_that_response_says_how_long(
    batched_burst: list[tuple[list[str], dict[str, Any]]], batching_log: Path, model: dict[str, Any]
) -> None:
    loaded = [body for _, body in batched_burst if body["load_ms"] is not None]
    assert len(loaded) == 1  # the other first requests waited for that load
    assert 0 < loaded[0]["load_ms"] <= loaded[0]["elapsed_ms"]
    lines = [json.loads(line) for line in batching_log.read_text().splitlines() if line.startswith("{")]
    logged = [e for e in lines if e.get("message") == "model loaded"]
    assert len(logged) == 1
    assert logged[0]["logger"] == "tagdistill.api" and logged[0]["model_id"] == model["id"]
    assert logged[0]["load_ms"] == loaded[0]["load_ms"] and logged[0]["runtime"] == "onnx"


def test_a_lone_request_is_tagged_alone(
    batching_api: str, batched_burst: list, model: dict[str, Any], expected: dict[str, dict[str, Any]]
) -> None:
    response = httpx.post(batching_api + "/predict", json={"model_id": model["id"], "texts": [KNOWN]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["batched_with"] == 1 and body["load_ms"] is None  # loaded by the burst
    assert same_results(body["results"], [expected[KNOWN]])


def test_with_window_0_every_response_was_tagged_alone(
    unbatched_api: str, model: dict[str, Any], expected: dict[str, dict[str, Any]]
) -> None:
    answers = burst(unbatched_api, model["id"])
    assert [body["batched_with"] for _, body in answers] == [1] * CLIENTS * ROUNDS
    for texts, body in answers:
        assert same_results(body["results"], [expected[t] for t in texts])


def test_a_batched_predict_whose_client_hangs_up_is_abandoned(
    batching_api: str, batching_log: Path, batched_burst: list, model: dict[str, Any]
) -> None:
    # 64 pieces of 18,000 characters, each tagged alone: 15-35 ms each here, so over a second in all. (With
    # 10 pieces a quiet machine tagged them all within the client's wait and nothing was left to abandon.)
    texts = [" ".join([KNOWN] * 200)] * 64
    body = {"model_id": model["id"], "texts": texts}
    with httpx.Client(base_url=batching_api, timeout=0.3) as impatient, pytest.raises(httpx.ReadTimeout):
        impatient.post("/predict", json=body)

    def abandoned() -> dict[str, Any] | None:
        lines = [json.loads(line) for line in batching_log.read_text().splitlines() if line.startswith("{")]
        return next((e for e in lines if e.get("message", "").startswith("predict abandoned")), None)

    entry = wait_for(abandoned, 20, "the API to give up the request")
    assert entry["done"] < entry["of"] == 64


@pytest.fixture(scope="module")
def slow_window_api(
    batching_env: dict[str, str], model: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """Batching with a window of a second and a time limit of 0.3 s: a request that queues behind a
    running batch outwaits the limit."""
    env = {**batching_env, "TAGDISTILL_BATCH_WINDOW_MS": "1000", "TAGDISTILL_PREDICT_TIME_LIMIT_S": "0.3"}
    yield from start(env, tmp_path_factory.mktemp("logs") / "slow-window-api.log")


def test_a_request_still_queued_at_the_time_limit_is_503(slow_window_api: str, model: dict[str, Any]) -> None:
    body = {"model_id": model["id"], "texts": [KNOWN]}
    with httpx.Client(base_url=slow_window_api, timeout=60) as http:
        # the first request loads the model, which may take longer than the limit itself: 503 as well
        http.post("/predict", json=body)
        lone = http.post("/predict", json=body)
    assert lone.status_code == 200, lone.text  # an idle model tags at once, whatever the window

    # CLIENTS clients released together: requests that find the model busy queue, their batch would
    # wait the window, and they end at the time limit instead.
    barrier = threading.Barrier(CLIENTS)

    def client(_: int) -> list[tuple[httpx.Response, float]]:
        out = []
        with httpx.Client(base_url=slow_window_api, timeout=60) as http:
            barrier.wait()
            for _ in range(3):
                started = time.monotonic()
                out.append((http.post("/predict", json=body), time.monotonic() - started))
        return out

    with ThreadPoolExecutor(CLIENTS) as pool:
        answers = [a for answers in pool.map(client, range(CLIENTS)) for a in answers]
    late = [(r, took) for r, took in answers if r.status_code == 503]
    assert late, [r.status_code for r, _ in answers]
    for response, took in late:
        assert "took over 0.3 s" in response.json()["error"]["message"]
        assert response.headers["retry-after"] == "5"
        assert took < 0.9  # answered at the limit, not after the window


def test_a_deleted_model_stops_being_served_within_the_record_ttl(
    batching_api: str, batching_env: dict[str, str], model: dict[str, Any]
) -> None:
    from jobstore.store import Store
    from service.deps import RECORD_TTL_S
    from tagdistill.tagger import load_student

    store = Store.from_url(batching_env["TAGDISTILL_REDIS_URL"], batching_env["TAGDISTILL_KEY_PREFIX"])
    job_dir = Path(batching_env["TAGDISTILL_DATA_DIR"]) / "jobs" / "job_deleted"
    record = untrained_model(store, job_dir, load_student(model["folder"]), "ds_batching")
    body = {"model_id": record.id, "texts": [KNOWN]}
    with httpx.Client(base_url=batching_api, timeout=60) as http:
        assert http.post("/predict", json=body).status_code == 200  # its record is now kept in the API
        store.delete_model(record.id)
        deleted = time.monotonic()
        while (response := http.post("/predict", json=body)).status_code == 200:
            assert time.monotonic() - deleted < RECORD_TTL_S + 1.0, "still served past the TTL"
            time.sleep(0.05)
    assert response.status_code == 404, response.text


# The batcher alone, in this process, with a stand-in tagger: what the HTTP tests cannot time exactly.


class _Recorder:
    """A tagger stand-in that records the batches it gets; fails on "boom"."""

    def __init__(self, seconds: float = 0.01) -> None:
        self.batches: list[list[str]] = []
        self.seconds = seconds

    def predict(self, inputs: list[str]) -> list[dict[str, str]]:
        self.batches.append(list(inputs))
        time.sleep(self.seconds)
        if "boom" in inputs:
            raise ValueError("boom")
        return [{"echo": text} for text in inputs]


def test_batches_respect_the_input_bound_and_slices_keep_order() -> None:
    from service.predictor import Batcher

    tagger = _Recorder()

    async def run() -> list:
        batcher = Batcher(tagger, window_s=0.05, max_inputs=8, max_chars=10_000)  # type: ignore[arg-type]
        return await asyncio.gather(*(batcher.predict([f"{i}a", f"{i}b", f"{i}c"], 6) for i in range(10)))

    answers = asyncio.run(run())
    for i, (results, shared) in enumerate(answers):
        assert results == [{"echo": f"{i}{x}"} for x in "abc"]
        assert shared == 2  # 3 inputs each: two requests fill a batch of at most 8
    assert [len(b) for b in tagger.batches] == [6] * 5


def test_a_large_piece_is_tagged_alone_at_once_beside_a_running_batch() -> None:
    from service.predictor import Batcher

    tagger = _Recorder(seconds=0.3)

    async def run() -> tuple:
        batcher = Batcher(tagger, window_s=0.001, max_inputs=8, max_chars=1_000)  # type: ignore[arg-type]
        small = asyncio.ensure_future(batcher.predict(["small"], 5))
        await asyncio.sleep(0.05)  # "small" is being tagged
        started = time.monotonic()
        large = await batcher.predict(["x" * 101], 101)  # over a tenth of max_chars
        took = time.monotonic() - started
        many = await batcher.predict([str(i) for i in range(5)], 5)  # over half of max_inputs
        return await small, large, took, many

    small, large, took, many = asyncio.run(run())
    assert small[1] == large[1] == many[1] == 1 and large[0] == [{"echo": "x" * 101}]
    assert took < 0.45  # it did not wait for the running batch (0.25 s more) before its own 0.3 s
    assert [len(b) for b in tagger.batches] == [1, 1, 5]


def test_a_piece_whose_caller_gave_up_while_queued_is_never_tagged() -> None:
    from service.predictor import Batcher

    tagger = _Recorder(seconds=0.2)

    async def run() -> tuple:
        batcher = Batcher(tagger, window_s=0.001, max_inputs=64, max_chars=10_000)  # type: ignore[arg-type]
        running = asyncio.ensure_future(batcher.predict(["first"], 5))
        await asyncio.sleep(0.05)  # "first" is being tagged
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(batcher.predict(["gone"], 4), 0.05)
        later = await batcher.predict(["later"], 5)
        return await running, later

    first, later = asyncio.run(run())
    assert first == ([{"echo": "first"}], 1) and later == ([{"echo": "later"}], 1)
    assert tagger.batches == [["first"], ["later"]]


def test_a_failing_piece_fails_alone_and_its_neighbours_get_their_results() -> None:
    from service.predictor import Batcher

    tagger = _Recorder()

    async def run() -> list:
        batcher = Batcher(tagger, window_s=0.05, max_inputs=64, max_chars=10_000)  # type: ignore[arg-type]
        pieces = [["boom"] if i == 2 else [str(i)] for i in range(5)]
        return await asyncio.gather(*(batcher.predict(p, 4) for p in pieces), return_exceptions=True)

    answers = asyncio.run(run())
    assert isinstance(answers[2], ValueError)
    assert [a for i, a in enumerate(answers) if i != 2] == [([{"echo": str(i)}], 1) for i in (0, 1, 3, 4)]
    assert tagger.batches[0] == ["0", "1", "boom", "3", "4"]  # tried together first
