"""Property-based run against a running service's own OpenAPI schema: no request may get a 5xx.

Schemathesis (``pip install -e '.[fuzz]'``) reads ``/openapi.json`` and, for every operation,
generates requests that follow the schema (positive) and requests that break it (negative:
wrong types, missing fields, odd strings, NUL bytes, huge numbers). Each one is sent over
HTTP; a 5xx answer, or no answer at all (a refused or reset connection, a body cut short, a
timeout), is a failure. With ``--checks all`` every answer also goes through all of
schemathesis' checks (status codes, content types, headers and bodies against the schema,
schema-breaking requests accepted, schema-valid ones refused, authentication enforced, ...),
whose failures are counted and shown by kind. Rounds with fresh seeds continue until at least
``--requests`` requests have been sent, so operations with few distinct inputs do not cut the
run short (requests that the checks themselves send are not counted).

Run it against a disposable stack, never a service with data you care about: generated
requests may delete datasets and queue jobs (jobs on generated datasets fail at once)::

    tagdistill up --port 8123 --data-dir /tmp/fuzzdata &      # a throwaway data directory
    python scripts/fuzz_api.py --url http://127.0.0.1:8123 --requests 1000
    kill %1

With API keys set, pass one with ``--key`` (else nearly everything is an uninteresting 401).
By default the sample is uploaded first, and every other generated request gets its real id in
place of a generated ``dataset_id`` (path or JSON body; DELETE excluded, so the sample stays);
with ``--train-tiny`` a tiny model is trained first as ``scripts/load_test.py`` does (the
service must accept ``/tmp`` as a model root), so ``model_id`` and ``job_id`` get real ids too
and ``POST /predict`` tags with a real model. Exit status 0 when no request got a 5xx or no
answer and no selected check failed; each failure is printed once per kind and operation, with
a curl command that reproduces it.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import httpx

SCRIPTS = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="base URL of the running service")
    parser.add_argument("--requests", type=int, default=1000, help="send at least this many requests")
    parser.add_argument("--per-operation", type=int, default=40, help="examples per operation and round")
    parser.add_argument("--key", help="an API key, sent as Authorization: Bearer")
    parser.add_argument("--timeout", type=float, default=30, help="seconds per request")
    parser.add_argument("--max-seconds", type=float, default=900, help="stop after this long")
    parser.add_argument("--seed", type=int, default=1, help="seed of the first round (then +1 per round)")
    parser.add_argument(
        "--checks", default="not_a_server_error",
        help="schemathesis checks run on every answer: 'all', or names separated by commas "
        "(default: not_a_server_error, i.e. only 5xx; unanswered requests always count)",
    )
    parser.add_argument(
        "--no-dataset", action="store_true",
        help="do not upload the sample first (by default its real dataset_id goes into every other "
        "request that has one, so the checks behind it are reached too; each job so made is cancelled)",
    )
    parser.add_argument(
        "--train-tiny", action="store_true",
        help="first train a tiny model (about a minute), whose model_id and job_id go into every other "
        "request that has one",
    )
    args = parser.parse_args(argv)

    try:
        import hypothesis
        import requests
        import schemathesis
        from hypothesis import HealthCheck, Phase
        from schemathesis import GenerationMode
        from schemathesis.checks import CHECKS, load_all_checks
        from schemathesis.core.failures import Failure, FailureGroup
    except ImportError:
        sys.exit("needs schemathesis: pip install -e '.[fuzz]'")
    warnings.filterwarnings("ignore")

    if not args.url.startswith(("http://127.0.0.1", "http://localhost", "http://[::1]")):
        sys.exit("fuzz only a service on this machine (loopback): generated requests change its data")
    load_all_checks()
    known = {check.__name__: check for check in CHECKS.get_all()}
    names = list(known) if args.checks == "all" else [n.strip() for n in args.checks.split(",") if n.strip()]
    names = list(dict.fromkeys(["not_a_server_error", *names]))  # a 5xx is always a failure
    if unknown := [n for n in names if n not in known]:
        sys.exit(f"unknown check(s) {', '.join(unknown)}; schemathesis has: {', '.join(known)}")
    checks = [known[n] for n in names]

    schema = schemathesis.openapi.from_url(args.url.rstrip("/") + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    headers = {"Authorization": f"Bearer {args.key}"} if args.key else {}

    real: dict[str, str] = {}
    if not args.no_dataset:
        real["dataset_id"] = upload_sample(args.url, headers)
    if args.train_tiny:
        sys.path.insert(0, str(SCRIPTS))
        from load_test import train_tiny

        with httpx.Client(base_url=args.url, headers=headers, timeout=60) as client:
            real["model_id"] = train_tiny(client)
            real["job_id"] = client.get(f"/models/{real['model_id']}").json()["job_id"]
    made_jobs: list[str] = []
    sent, with_real_ids = 0, 0
    by_status: collections.Counter[Any] = collections.Counter()
    unanswered: collections.Counter[str] = collections.Counter()  # connection, broken stream, timeout
    failed: collections.Counter[str] = collections.Counter()  # check failures by kind: "ST101 Server error"
    per_op: collections.Counter[str] = collections.Counter()
    examples: dict[tuple[str, str], str] = {}  # (kind, operation) -> the first example
    started = time.monotonic()

    def put_real_ids(case: schemathesis.Case, name: str) -> bool:
        """Real ids in place of generated ones, in the path and the top of a JSON body (not DELETE)."""
        if name.startswith("DELETE") or not real:
            return False
        put = False
        for part in (case.path_parameters, case.body if isinstance(case.body, dict) else None):
            for key in set(part or {}) & set(real):
                part[key], put = real[key], True
        if name == "POST /jobs" and isinstance(case.body, dict) and "dataset_id" in real:
            case.body["dataset_id"], put = real["dataset_id"], True
        return put

    def run(op: schemathesis.APIOperation, mode: GenerationMode, seed: int) -> None:
        name = f"{op.method.upper()} {op.path}"

        @hypothesis.seed(seed)
        @hypothesis.settings(
            max_examples=args.per_operation, deadline=None, database=None, derandomize=False,
            phases=[Phase.generate], suppress_health_check=list(HealthCheck), print_blob=False,
        )
        @hypothesis.given(case=op.as_strategy(generation_mode=mode))
        def send(case: schemathesis.Case) -> None:
            nonlocal sent, with_real_ids
            if case.query and case.query.get("stream") not in (None, False, "false", "0"):
                case.query["stream"] = "false"  # a stream lasts until its job ends
            if sent % 2 == 0 and put_real_ids(case, name):
                with_real_ids += 1
            sent += 1
            per_op[name] += 1
            try:
                response = case.call(base_url=args.url, headers=headers, timeout=args.timeout)
            except Exception as exc:  # no answer: each kind is counted, and each is a failure
                no_answer(exc, case, name)
                return
            by_status[response.status_code] += 1
            if name == "POST /jobs" and response.status_code == 202:
                job_id = response.json()["id"]
                made_jobs.append(job_id)
                httpx.post(f"{args.url}/jobs/{job_id}/cancel", headers=headers, timeout=args.timeout)
            try:
                case.validate_response(
                    response, checks=checks, headers=headers,
                    transport_kwargs={"base_url": args.url, "headers": headers, "timeout": args.timeout},
                )
            except FailureGroup as group:
                record(group.exceptions, response, case, name)
            except Failure as failure:
                record([failure], response, case, name)
            except Exception as exc:  # a request that a check sent itself got no answer
                no_answer(exc, case, name, " to a check's request")

        # Unsatisfiable: nothing negative to generate for an operation without inputs
        with contextlib.suppress(hypothesis.errors.Unsatisfiable):
            send()

    def no_answer(exc: Exception, case: schemathesis.Case, name: str, whose: str = "") -> None:
        kind = unanswered_kind(exc, requests)
        unanswered[kind] += 1
        example = f"{type(exc).__name__}: {exc}\n  {case.as_curl_command()}"
        examples.setdefault((f"no answer ({kind}){whose}", name), example)

    def record(failures: Any, response: Any, case: schemathesis.Case, name: str) -> None:
        for failure in failures:
            kind = f"{type(failure).code} {type(failure).kind_title}"
            failed[kind] += 1
            said = failure.message.strip().splitlines()[0][:200] if failure.message.strip() else ""
            detail = f"{response.status_code}: {failure.title}" + (f": {said}" if said else "")
            if response.status_code >= 500:
                detail += f"; body: {response.text[:300]}"
            examples.setdefault((kind, name), f"{detail}\n  {case.as_curl_command()}")

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

    print(f"{sent} requests in {seconds:.0f} s against {args.url} ({len(operations)} operations), "
          f"seeds {args.seed} to {seed - 1}, schemathesis {schemathesis.__version__}")
    print(f"checks: {', '.join(names)}")
    if real:
        print(f"{with_real_ids} requests with real ids ({', '.join(real)})")
    if made_jobs:
        print(f"{len(made_jobs)} generated job(s) were accepted (202) and cancelled at once")
    print("by status:", ", ".join(f"{k}: {v}" for k, v in sorted(by_status.items())))
    server_errors = sum(v for k, v in by_status.items() if k >= 500)
    print(f"5xx: {server_errors}; no answer: {sum(unanswered.values())}"
          + (f" ({', '.join(f'{k}: {v}' for k, v in sorted(unanswered.items()))})" if unanswered else ""))
    for kind, count in sorted(failed.items()):
        print(f"  {count:6d}  {kind} ({len({op for k, op in examples if k == kind})} operations)")
    for name, count in sorted(per_op.items()):
        print(f"  {count:6d}  {name}")
    if examples:
        print(f"\n{len(examples)} kind(s) of failure by operation, one example each:")
        for (kind, name), example in sorted(examples.items()):
            print(f"- {kind}, {name}: {example}")
    ok = not examples and sent >= args.requests
    if not examples and not ok:
        print(f"no failure, but only {sent} of {args.requests} requests")
    return 0 if ok else 1


def unanswered_kind(exc: Exception, requests: Any) -> str:
    """What went wrong with a request that got no (whole) answer."""
    if isinstance(exc, requests.exceptions.Timeout):
        return "timeout"
    if isinstance(exc, requests.exceptions.ChunkedEncodingError | requests.exceptions.ContentDecodingError):
        return "broken stream"
    if isinstance(exc, requests.exceptions.ConnectionError):
        return "connection"
    return type(exc).__name__


def upload_sample(url: str, headers: dict[str, str]) -> str:
    sample = Path(__file__).resolve().parents[1] / "tagdistill" / "sample"
    names = ("train.conll", "dev.conll", "test.conll", "unlabeled.txt")
    files = {n.split(".")[0]: (n, (sample / n).read_bytes()) for n in names}
    response = httpx.post(url + "/datasets", files=files, data={"name": "fuzz"}, headers=headers, timeout=60)
    response.raise_for_status()
    return response.json()["id"]


if __name__ == "__main__":
    sys.exit(main())
