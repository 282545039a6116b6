"""Property-based run against a running service's own OpenAPI schema: no request may get a 5xx.

Schemathesis (``pip install -e '.[fuzz]'``) reads ``/openapi.json`` and, for every operation,
generates requests that follow the schema (positive) and requests that break it (negative:
wrong types, missing fields, odd strings, NUL bytes, huge numbers). Each one is sent over
HTTP and any 5xx answer is a failure. Rounds with fresh seeds continue until at least
``--requests`` requests have been sent, so operations with few distinct inputs do not cut
the run short.

Run it against a disposable stack, never a service with data you care about: generated
requests may delete datasets and queue jobs (jobs on generated datasets fail at once)::

    tagdistill up --port 8123 --data-dir /tmp/fuzzdata &      # a throwaway data directory
    python scripts/fuzz_api.py --url http://127.0.0.1:8123 --requests 1000
    kill %1

With API keys set, pass one with ``--key`` (else nearly everything is an uninteresting 401).
Exit status 0 when no 5xx was seen, 1 otherwise (each failure is printed with a curl command
that reproduces it).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import sys
import time
import warnings
from pathlib import Path

import httpx


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="base URL of the running service")
    parser.add_argument("--requests", type=int, default=1000, help="send at least this many requests")
    parser.add_argument("--per-operation", type=int, default=40, help="examples per operation and round")
    parser.add_argument("--key", help="an API key, sent as Authorization: Bearer")
    parser.add_argument("--timeout", type=float, default=30, help="seconds per request")
    parser.add_argument("--max-seconds", type=float, default=900, help="stop after this long")
    parser.add_argument("--seed", type=int, default=1, help="seed of the first round")
    parser.add_argument(
        "--no-dataset", action="store_true",
        help="do not upload the sample first (by default half of the generated POST /jobs bodies get its "
        "real dataset_id, so the checks behind it are reached too; each job so made is cancelled at once)",
    )
    args = parser.parse_args(argv)

    try:
        import hypothesis
        import schemathesis
        from hypothesis import HealthCheck, Phase
        from schemathesis import GenerationMode
    except ImportError:
        sys.exit("needs schemathesis: pip install -e '.[fuzz]'")
    warnings.filterwarnings("ignore")

    if not args.url.startswith(("http://127.0.0.1", "http://localhost", "http://[::1]")):
        sys.exit("fuzz only a service on this machine (loopback): generated requests change its data")
    schema = schemathesis.openapi.from_url(args.url.rstrip("/") + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    headers = {"Authorization": f"Bearer {args.key}"} if args.key else {}

    dataset_id = None if args.no_dataset else upload_sample(args.url, headers)
    made_jobs: list[str] = []
    sent, by_status = 0, collections.Counter()
    per_op: collections.Counter[str] = collections.Counter()
    failures: list[str] = []
    started = time.monotonic()
    def run(op: schemathesis.APIOperation, mode: GenerationMode, seed: int) -> None:
        nonlocal sent
        name = f"{op.method.upper()} {op.path}"

        @hypothesis.seed(seed)
        @hypothesis.settings(
            max_examples=args.per_operation, deadline=None, database=None, derandomize=False,
            phases=[Phase.generate], suppress_health_check=list(HealthCheck), print_blob=False,
        )
        @hypothesis.given(case=op.as_strategy(generation_mode=mode))
        def send(case: schemathesis.Case) -> None:
            nonlocal sent
            if case.query and case.query.get("stream") not in (None, False, "false", "0"):
                case.query["stream"] = "false"  # a stream lasts until its job ends
            real_dataset = (
                dataset_id and name == "POST /jobs" and isinstance(case.body, dict) and sent % 2 == 0
            )
            if real_dataset:
                case.body["dataset_id"] = dataset_id
            sent += 1
            per_op[name] += 1
            try:
                response = case.call(base_url=args.url, headers=headers, timeout=args.timeout)
            except Exception as exc:  # a dropped connection or a timeout counts as a failure
                by_status["error"] += 1
                failures.append(f"{name}: {type(exc).__name__}: {exc}\n  {case.as_curl_command()}")
                return
            by_status[response.status_code] += 1
            if real_dataset:
                by_status["POST /jobs with the real dataset_id"] += 1
            if name == "POST /jobs" and response.status_code == 202:
                job_id = response.json()["id"]
                made_jobs.append(job_id)
                httpx.post(f"{args.url}/jobs/{job_id}/cancel", headers=headers, timeout=args.timeout)
            if response.status_code >= 500:
                body = response.text[:300]
                failures.append(f"{name}: {response.status_code} {body}\n  {case.as_curl_command()}")

        # Unsatisfiable: nothing negative to generate for an operation without inputs
        with contextlib.suppress(hypothesis.errors.Unsatisfiable):
            send()

    seed = args.seed
    while sent < args.requests and time.monotonic() - started < args.max_seconds:
        before = sent
        for op in operations:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                run(op, mode, seed)
        seed += 1
        if sent == before:
            break
    seconds = time.monotonic() - started
    if made_jobs:
        print(f"{len(made_jobs)} generated job(s) were accepted (202) and cancelled at once")

    print(f"{sent} requests in {seconds:.0f} s against {args.url} ({len(operations)} operations)")
    print("by status:", ", ".join(f"{k}: {v}" for k, v in sorted(by_status.items(), key=str)))
    for name, count in sorted(per_op.items()):
        print(f"  {count:5d}  {name}")
    if failures:
        print(f"\n{len(failures)} request(s) got a 5xx or no answer:")
        for failure in dict.fromkeys(failures):
            print("-", failure)
        return 1
    print("no 5xx" if sent >= args.requests else f"no 5xx, but only {sent} of {args.requests} requests")
    return 0 if sent >= args.requests else 1


def upload_sample(url: str, headers: dict[str, str]) -> str:
    sample = Path(__file__).resolve().parents[1] / "tagdistill" / "sample"
    names = ("train.conll", "dev.conll", "test.conll", "unlabeled.txt")
    files = {n.split(".")[0]: (n, (sample / n).read_bytes()) for n in names}
    response = httpx.post(url + "/datasets", files=files, data={"name": "fuzz"}, headers=headers, timeout=60)
    response.raise_for_status()
    return response.json()["id"]


if __name__ == "__main__":
    sys.exit(main())
