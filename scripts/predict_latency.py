"""Median latency of POST /predict for one sentence and for a batch of 32, against a running API.

    python scripts/predict_latency.py [--url http://127.0.0.1:8000] [--model-id ID] [--requests 50]

Sends only to the given URL (keep it on this machine), a bounded number of requests, one at a time.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import httpx

SAMPLE = Path(__file__).resolve().parents[1] / "tagdistill" / "sample" / "unlabeled.txt"


def measure(client: httpx.Client, body: dict, requests: int) -> list[float]:
    client.post("/predict", json=body).raise_for_status()  # loads the model: not timed
    times = []
    for _ in range(requests):
        started = time.perf_counter()
        client.post("/predict", json=body).raise_for_status()
        times.append((time.perf_counter() - started) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--model-id", default=None, help="default: the newest model")
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--teacher", action="store_true", help="time the teacher instead of the student")
    args = parser.parse_args()
    sentences = SAMPLE.read_text().splitlines()
    with httpx.Client(base_url=args.url, timeout=120) as client:
        for size in (1, 32):
            body = {"texts": sentences[:size], "model_id": args.model_id, "use_teacher": args.teacher}
            times = measure(client, body, args.requests)
            q = statistics.quantiles(times, n=10)
            who = "teacher" if args.teacher else "student"
            print(
                f"batch {size:>2}: median {statistics.median(times):7.1f} ms  p10 {q[0]:7.1f}"
                f"  p90 {q[-1]:7.1f}  ({args.requests} requests, {who})"
            )


if __name__ == "__main__":
    main()
