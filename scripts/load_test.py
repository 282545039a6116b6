"""Load test of a running service on this machine: concurrent POST /predict, then a burst of jobs.

1. ``--clients`` (32) threads call ``POST /predict`` with sentences of the bundled sample for
   ``--duration`` seconds (60), at most ``--max-requests`` in all, beside ``--heavy-clients`` (1)
   sending the largest request the default limits take (10 texts of 19,000 characters). One
   request first loads the model, untimed. Reported per kind: requests, errors (anything but 200,
   or no answer), p50/p90/p99 latency, requests/s, words/s, and from the responses'
   ``batched_with`` how many requests shared a tagging call (dynamic batching).
2. ``--burst`` (100) jobs are submitted at once from the same threads, each with its own
   Idempotency-Key, and cancelled straight away (no long training). Every one must be accounted
   for: listed exactly once by ``GET /jobs`` in a known status, no duplicates, and a retry with
   the same key returns the same job. The script waits (bounded) until all of them have ended.

It needs a trained model. Either run a job first (``make demo`` with the stack left up, or any
job through the API), or pass ``--train-tiny``: the sample dataset is uploaded and a job with a
tiny, randomly initialised BERT teacher (built locally in the temporary folder, which the service
must accept as a model root, no download) is run, about a minute on one core. Loopback only::

    export TAGDISTILL_MODEL_ROOTS=/tmp TAGDISTILL_MAX_ACTIVE_JOBS=1000   # the burst is 100 jobs at once
    tagdistill up --port 8123 --data-dir /tmp/loaddata &
    python scripts/load_test.py --url http://127.0.0.1:8123 --train-tiny   # --duration 60 by default
    kill %1

Batching on against off, in one run: start a second API process of the same deployment (same Redis,
key prefix and data directory) with ``TAGDISTILL_BATCH_WINDOW_MS=0`` and pass its URL as
``--compare-url``. Step 1 then runs against both, ``--duration`` seconds each, in alternating
segments (A B B A with ``--compare-rounds 2``, the default, so a machine that gets busier or quieter
over the run weighs on both alike; ``--max-requests`` is then per segment), and prints the two side
by side; what each API did is read from the responses' ``batched_with``, not assumed::

    export TAGDISTILL_MODEL_ROOTS=/tmp TAGDISTILL_MAX_ACTIVE_JOBS=1000 TAGDISTILL_DATA_DIR=/tmp/loaddata
    tagdistill up --port 8123 &                                       # batching on (the default window)
    TAGDISTILL_BATCH_WINDOW_MS=0 python -m uvicorn service.app:app --port 8124 --no-access-log &  # off
    python scripts/load_test.py --url http://127.0.0.1:8123 --compare-url http://127.0.0.1:8124 \
        --train-tiny --heavy-clients 0 --burst 0

Exit status 0 when there were no errors and every job was accounted for.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import secrets
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "tagdistill" / "sample"
STATUSES = {"queued", "running", "succeeded", "failed", "cancelled"}


def sentences() -> list[str]:
    out, words = [], []
    for line in (SAMPLE / "test.conll").read_text().splitlines():
        if line.strip():
            words.append(line.split()[0])
        elif words:
            out.append(" ".join(words))
            words = []
    return out or ["Kenji Varga said the Turkish team would travel to Warsaw ."]


def train_tiny(client: httpx.Client) -> str:
    """Upload the sample and run a job with a tiny local teacher; the model id."""
    sys.path.insert(0, str(ROOT / "tests"))
    from builders import sample_words, tiny_bert

    teacher = tiny_bert(Path(tempfile.mkdtemp(prefix="tagdistill-tiny-bert-")), sample_words())
    names = ("train.conll", "dev.conll", "test.conll", "unlabeled.txt")
    files = {n.split(".")[0]: (n, (SAMPLE / n).read_bytes()) for n in names}
    ds = client.post("/datasets", files=files, data={"name": "load-test sample"})
    ds.raise_for_status()
    body = {
        "dataset_id": ds.json()["id"], "device": "cpu",
        "teacher": {"base_model": str(teacher), "epochs": 1, "min_steps": 0, "learning_rate": 3e-3},
        "student": {"hidden": 100},
        "distill": {"mode": "kd", "epochs": 6, "min_steps": 0, "learning_rate": 5e-3, "distill_weight": 0.1},
    }
    job = client.post("/jobs", json=body)
    job.raise_for_status()
    job_id = job.json()["id"]
    print(f"training a tiny model: job {job_id}", flush=True)
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        state = client.get(f"/jobs/{job_id}").json()
        if state["status"] == "succeeded":
            return state["model_id"]
        if state["status"] in ("failed", "cancelled"):
            sys.exit(f"the tiny job {job_id} {state['status']}: {state['error']}")
        time.sleep(2)
    sys.exit(f"the tiny job {job_id} did not finish in 15 minutes")


def predict_load(
    args: argparse.Namespace, url: str, headers: dict[str, str], model_id: str, seconds: float
) -> dict[str, Any]:
    """``--clients`` light clients (``--batch`` sample sentences a request) and ``--heavy-clients``
    heavy ones (the largest request the default limits take: 10 texts of 19,000 characters), side by
    side for ``seconds`` against ``url``; the raw figures per kind (``summary`` makes the report), so
    the light clients' p99 shows what a heavy neighbour costs them."""
    texts = sentences()
    heavy_batch = [" ".join(texts * 200)[:19_000]] * 10
    deadline = time.monotonic() + seconds
    lock = threading.Lock()
    raw: dict[str, Any] = {
        kind: {"latencies": [], "errors": {}, "words": 0, "batched_with": []} for kind in ("light", "heavy")
    }
    budget = [args.max_requests]

    def client_loop(i: int) -> None:
        kind = "heavy" if i >= args.clients else "light"
        with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
            n = i
            while time.monotonic() < deadline:
                with lock:
                    if budget[0] <= 0:
                        return
                    budget[0] -= 1
                light = [texts[(n + k) % len(texts)] for k in range(args.batch)]
                batch = heavy_batch if kind == "heavy" else light
                n += args.clients
                started = time.perf_counter()
                try:
                    response = client.post("/predict", json={"model_id": model_id, "texts": batch})
                    outcome = None if response.status_code == 200 else str(response.status_code)
                except httpx.HTTPError as exc:
                    outcome = type(exc).__name__
                took = time.perf_counter() - started
                with lock:
                    mine = raw[kind]
                    if outcome is None:
                        mine["latencies"].append(took)
                        mine["words"] += sum(len(t.split()) for t in batch)
                        # absent from an API without dynamic batching: tagged alone
                        mine["batched_with"].append(response.json().get("batched_with", 1))
                    else:
                        mine["errors"][outcome] = mine["errors"].get(outcome, 0) + 1

    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(args.clients + args.heavy_clients) as pool:
        list(pool.map(client_loop, range(args.clients + args.heavy_clients)))
    raw["seconds"] = time.monotonic() - started
    raw["texts_per_request"] = {"light": args.batch, "heavy": len(heavy_batch)}
    return raw


def summary(args: argparse.Namespace, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Requests, errors, p50/p90/p99 latency, requests/s, words/s and batching per kind, over ``runs``
    (segments of ``predict_load`` against one API)."""
    seconds = sum(r["seconds"] for r in runs)
    result: dict[str, Any] = {"seconds": round(seconds, 1)}
    for kind, clients in (("light", args.clients), ("heavy", args.heavy_clients)):
        took = [t for r in runs for t in r[kind]["latencies"]]
        shared = [n for r in runs for n in r[kind]["batched_with"]]
        errors: dict[str, int] = {}
        for r in runs:
            for outcome, count in r[kind]["errors"].items():
                errors[outcome] = errors.get(outcome, 0) + count
        q = statistics.quantiles(took, n=100) if len(took) >= 2 else [float("nan")] * 99
        result[kind] = {
            "clients": clients, "texts_per_request": runs[0]["texts_per_request"][kind],
            "requests": len(took) + sum(errors.values()), "ok": len(took), "errors": errors,
            **{f"p{p}_ms": round(q[p - 1] * 1000, 1) for p in (50, 90, 99)},
            "requests_per_s": round(len(took) / seconds, 1),
            "words_per_s": round(sum(r[kind]["words"] for r in runs) / seconds),
            # how many requests shared each one's tagging call: 1.0 and 0 with batching off
            "batched_with_mean": round(statistics.fmean(shared), 2) if shared else None,
            "batched_share": round(sum(n > 1 for n in shared) / len(shared), 3) if shared else None,
        }
    return result


def warm_up(url: str, headers: dict[str, str], model_id: str) -> float | None:
    """One request, so the API has the model loaded before anything is timed; its load time (ms)."""
    with httpx.Client(base_url=url, headers=headers, timeout=120) as client:
        response = client.post("/predict", json={"model_id": model_id, "texts": sentences()[:1]})
        response.raise_for_status()
        return response.json().get("load_ms")


def job_burst(args: argparse.Namespace, headers: dict[str, str], dataset_id: str) -> dict[str, Any]:
    body = {  # if a job starts before its cancel lands, it is short anyway
        "dataset_id": dataset_id, "teacher": {"epochs": 1, "min_steps": 0},
        "distill": {"epochs": 1}, "device": "cpu",
    }
    run = secrets.token_hex(4)
    keys = [f"load-{run}-{i}" for i in range(args.burst)]

    def submit(key: str) -> tuple[str, int, str | None]:
        with httpx.Client(base_url=args.url, headers=headers, timeout=60) as client:
            response = client.post("/jobs", json=body, headers={"Idempotency-Key": key})
            job_id = response.json().get("id") if response.status_code == 202 else None
            if job_id:
                client.post(f"/jobs/{job_id}/cancel")
            return key, response.status_code, job_id

    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(min(args.clients, args.burst)) as pool:
        submitted = list(pool.map(submit, keys))
        submit_s = time.monotonic() - started
        replayed = list(pool.map(submit, keys))  # the same keys again: the same jobs, none new
    ids = [job_id for _, status, job_id in submitted if status == 202 and job_id]
    refused = [f"{key}: {status}" for key, status, job_id in submitted if status != 202 or not job_id]
    replay_mismatch = sum(1 for a, b in zip(submitted, replayed, strict=True) if a[2] != b[2])

    with httpx.Client(base_url=args.url, headers=headers, timeout=60) as client:

        def listed() -> list[dict[str, Any]]:
            items, cursor = [], None
            while True:
                params = {"limit": 100, **({"cursor": cursor} if cursor else {})}
                page = client.get("/jobs", params=params).json()
                items += page["items"]
                cursor = page["next_cursor"]
                if cursor is None:
                    return items

        deadline = time.monotonic() + args.burst_wait
        while True:
            jobs = [j for j in listed() if j["id"] in set(ids)]
            statuses = {j["status"] for j in jobs}
            if not statuses & {"queued", "running"} or time.monotonic() > deadline:
                break
            time.sleep(1)
    seen = [j["id"] for j in jobs]
    by_status: dict[str, int] = {}
    for j in jobs:
        by_status[j["status"]] = by_status.get(j["status"], 0) + 1
    return {
        "submitted": args.burst, "accepted": len(ids), "refused": refused,
        "submit_seconds": round(submit_s, 2), "distinct_ids": len(set(ids)), "listed": len(seen),
        "listed_twice": len(seen) - len(set(seen)), "missing": sorted(set(ids) - set(seen)),
        "unknown_status": sorted({j["status"] for j in jobs} - STATUSES),
        "replay_mismatch": replay_mismatch, "by_status": by_status,
        "all_ended": not ({j["status"] for j in jobs} & {"queued", "running"}),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--key", help="an API key, sent as Authorization: Bearer")
    parser.add_argument("--model-id", help="the model to tag with (default: the newest)")
    parser.add_argument("--train-tiny", action="store_true", help="first train a tiny model through the API")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--duration", type=float, default=60, help="seconds of POST /predict load")
    parser.add_argument("--max-requests", type=int, default=200_000, help="at most this many predict calls")
    parser.add_argument("--batch", type=int, default=1, help="texts per predict request")
    parser.add_argument("--heavy-clients", type=int, default=1,
                        help="clients sending the largest request the limits take, beside the light ones")
    parser.add_argument("--compare-url", help="a second API of the same deployment (same Redis, key "
                        "prefix and data directory) with other batching settings, e.g. "
                        "TAGDISTILL_BATCH_WINDOW_MS=0: the predict load runs against both, compared")
    parser.add_argument("--compare-rounds", type=int, default=2,
                        help="with --compare-url: segments per API, alternated (2: A B B A)")
    parser.add_argument("--burst", type=int, default=100, help="jobs submitted at once (0: none)")
    parser.add_argument("--burst-wait", type=float, default=180, help="seconds to wait for them to end")
    args = parser.parse_args(argv)
    for url in filter(None, (args.url, args.compare_url)):
        if not url.startswith(("http://127.0.0.1", "http://localhost", "http://[::1]")):
            sys.exit("load-test only a service on this machine (loopback)")
    headers = {"Authorization": f"Bearer {args.key}"} if args.key else {}

    with httpx.Client(base_url=args.url, headers=headers, timeout=60) as client:
        model_id = train_tiny(client) if args.train_tiny else args.model_id
        model = client.get(f"/models/{model_id}" if model_id else "/models", params={"limit": 1})
        model.raise_for_status()
        model = model.json() if model_id else (model.json()["items"] or [None])[0]
        if model is None:
            sys.exit("no model yet: run a job first, or pass --train-tiny")
        print(f"model {model['id']} (job {model['job_id']}, dataset {model['dataset_id']})", flush=True)

    ok = True
    if args.duration > 0:
        urls = [args.url, *([args.compare_url] if args.compare_url else [])]
        for url in urls:
            print(f"{url}: model ready (load_ms {warm_up(url, headers, model['id'])})", flush=True)
        rounds = args.compare_rounds if args.compare_url else 1
        order = [url for r in range(rounds) for url in (urls if r % 2 == 0 else urls[::-1])]  # A B B A ...
        runs: dict[str, list[dict[str, Any]]] = {url: [] for url in urls}
        for url in order:
            runs[url].append(predict_load(args, url, headers, model["id"], args.duration / rounds))
        for url in urls:
            result = summary(args, runs[url])
            print(f"predict {url}:", result, flush=True)
            ok = ok and not (result["light"]["errors"] or result["heavy"]["errors"])
            ok = ok and result["light"]["ok"] > 0
        if args.compare_url:
            a, b = (summary(args, runs[url])["light"] for url in urls)
            print("light clients, --url against --compare-url:", {
                k: f"{a[k]} vs {b[k]}" for k in ("requests_per_s", "words_per_s", "p50_ms", "p99_ms",
                                                  "batched_with_mean", "errors")}, flush=True)
    if args.burst > 0:
        result = job_burst(args, headers, model["dataset_id"])
        print("burst:", result, flush=True)
        ok = ok and result["accepted"] == result["distinct_ids"] == result["listed"] == args.burst
        ok = ok and not (result["missing"] or result["listed_twice"] or result["replay_mismatch"])
        ok = ok and not result["unknown_status"] and result["all_ended"]
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
