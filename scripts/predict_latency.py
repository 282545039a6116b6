"""Latency of POST /predict for one sentence and for a batch of 32, one request at a time, against a
running API.

    python scripts/predict_latency.py [--url http://127.0.0.1:8000] [--model-id ID] [--requests 200]
    python scripts/predict_latency.py --url http://127.0.0.1:8123 --compare-url http://127.0.0.1:8124 \
        --rounds 4 --out docs/benchmarks/predict_latency.json

Prints the median (p50), p90 and p99 in milliseconds of each size. With ``--compare-url`` (another API,
e.g. older code, on the same data) the two are timed in alternating rounds (A B A B ...), so a change
in the machine's load weighs on both alike. ``--out`` writes every figure as JSON, with the load
average before and after. Sends only to the given URLs (keep them on this machine), a bounded number
of requests, one at a time.
"""

from __future__ import annotations

import argparse
import json
import os
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


def summary(times: list[float]) -> dict[str, float]:
    q = statistics.quantiles(times, n=100)
    return {"requests": len(times), "p50": statistics.median(times), "p90": q[89], "p99": q[98]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--compare-url", help="a second API, timed in alternating rounds")
    parser.add_argument("--model-id", default=None, help="default: the caller's 'production' alias")
    parser.add_argument("--requests", type=int, default=200, help="per size, URL and round")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--teacher", action="store_true", help="time the teacher instead of the student")
    parser.add_argument("--out", type=Path, help="JSON file for the figures")
    args = parser.parse_args()
    sentences = SAMPLE.read_text().splitlines()
    urls = [args.url] + ([args.compare_url] if args.compare_url else [])
    who = "teacher" if args.teacher else "student"
    times: dict[str, dict[int, list[float]]] = {url: {1: [], 32: []} for url in urls}
    load_before = os.getloadavg()
    clients = {url: httpx.Client(base_url=url, timeout=120) for url in urls}
    try:
        for r in range(args.rounds):
            for url in urls if r % 2 == 0 else urls[::-1]:
                for size in (1, 32):
                    body = {"texts": sentences[:size], "model_id": args.model_id, "use_teacher": args.teacher}
                    times[url][size] += measure(clients[url], body, args.requests)
    finally:
        for client in clients.values():
            client.close()
    load = {"before": load_before, "after": os.getloadavg()}
    result = {"who": who, "rounds": args.rounds, "load_average": load,
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "urls": {}}
    for url in urls:
        result["urls"][url] = {f"batch_{size}": summary(t) for size, t in times[url].items()}
        for size, s in result["urls"][url].items():
            print(f"{url} {size:>8}: p50 {s['p50']:7.2f} ms  p90 {s['p90']:7.2f}  p99 {s['p99']:7.2f}"
                  f"  ({s['requests']} requests, {who})")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
