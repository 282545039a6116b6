"""The artifact store's overhead on a full small job: the same job (the bundled sample, the MiniLM teacher)
run three ways, as a worker runs it, and timed:

- ``local``: the data directory is the store (the default): no transfer at all;
- ``s3``: one worker whose data directory is a cache of an S3 endpoint (moto's server on this machine):
  the dataset pulled first, each checkpoint pushed as it is written, the job folder pushed at the end;
- ``s3-split``: the teacher part in one cache and the student part in another (as a gpu and a cpu
  worker do), the second pulling the first's job folder from the store.

The endpoint is local, so the figures are the protocol's and the copies' cost, not a network's: add
(bytes moved / bandwidth) for a remote store. Redis and Celery are left out: they cost the same in
every mode. Prints a table and writes docs/benchmarks/store_overhead.json.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/store_overhead.py [--teacher-epochs 1 --student-epochs 2]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from jobstore.artifacts import ArtifactStore
from tagdistill.checkpoint import STATE, after_save
from tagdistill.config import DataFiles, JobConfig
from tagdistill.pipeline import run_job
from tagdistill.progress import NullProgress

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "tagdistill" / "sample"
OUT = ROOT / "docs" / "benchmarks" / "store_overhead.json"
CREDENTIALS = {"key": "bench", "secret": "bench"}
JOB, DATASET = "jobs/job_bench", "datasets/ds_bench"


class Timed:
    """An ArtifactStore whose pushes and pulls are timed (seconds, calls) and whose bytes are counted."""

    def __init__(self, store: ArtifactStore) -> None:
        self.store, self.seconds, self.calls = store, 0.0, 0

    def __getattr__(self, name: str) -> Callable[..., Any]:
        call = getattr(self.store, name)
        if name not in ("push", "pull"):
            return call

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return call(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - started
                self.calls += 1

        return timed


def part(store: Timed, cfg: JobConfig, stop_after: str | None) -> float:
    """One worker's part of the job, as worker/tasks.py runs it; its wall time."""
    started = time.perf_counter()
    store.pull(DATASET)
    store.pull(JOB, missing_ok=True)
    files = DataFiles(**{s: store.local(f"{DATASET}/{s}.{e}") for s, e in
                         (("train", "conll"), ("dev", "conll"), ("test", "conll"), ("unlabeled", "txt"))},
                      unlabeled_format="text")
    with after_save(lambda _: store.push(JOB, last=(STATE,))):
        run_job(cfg, files, store.local(JOB), NullProgress(), stop_after)
    store.push(JOB, mirror=True, last=(STATE,))
    return time.perf_counter() - started


def run(mode: str, cfg: JobConfig, folder: Path, endpoint: str) -> dict[str, Any]:
    url = "" if mode == "local" else f"s3://tagdistill/{mode}-{int(time.time())}"
    caches = [ArtifactStore(folder / f"{mode}-{name}", url, endpoint_url=endpoint, **CREDENTIALS)
              for name in ("api", "worker-a", "worker-b")]
    api, first, second = (Timed(c) for c in caches)
    if mode == "local":  # one folder for all, as on one machine
        first = second = api
    shutil.copytree(SAMPLE, api.local(DATASET), ignore=shutil.ignore_patterns("*.md"))
    api.push(DATASET)  # the upload
    torch.manual_seed(cfg.seed)
    if mode == "s3-split":
        seconds = part(first, cfg, "labeling") + part(second, cfg, None)
    else:
        seconds = part(first, cfg, None)
    stores = {id(s): s for s in (api, first, second)}.values()
    stored = 0
    if mode != "local":
        stored = sum(info["size"] for info in caches[0].fs.find(url, detail=True).values())
    return {
        "mode": mode, "seconds": round(seconds, 2), "store_seconds": round(sum(s.seconds for s in stores), 2),
        "store_calls": sum(s.calls for s in stores),
        "bytes_in_store": stored,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher-epochs", type=int, default=1)
    parser.add_argument("--student-epochs", type=int, default=2)
    parser.add_argument("--modes", nargs="+", default=["local", "s3", "s3-split"])
    args = parser.parse_args()
    from moto.server import ThreadedMotoServer

    torch.set_num_threads(1)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    ArtifactStore(Path("."), "s3://tagdistill", endpoint_url=endpoint, **CREDENTIALS).fs.mkdir("tagdistill")
    cfg = JobConfig(
        dataset_id="ds_bench", device="cpu",
        teacher={"epochs": args.teacher_epochs, "min_steps": 0},
        distill={"epochs": args.student_epochs, "min_steps": 0, "baseline": True},
    )
    results = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for mode in args.modes:
                results.append(run(mode, cfg, Path(tmp), endpoint))
                print(json.dumps(results[-1]), flush=True)
    finally:
        server.stop()
    base = next((r["seconds"] for r in results if r["mode"] == "local"), None)
    print(f"{'mode':10} {'job s':>8} {'store s':>8} {'calls':>6} {'MB stored':>10} {'vs local':>9}")
    for r in results:
        versus = f"{100 * (r['seconds'] / base - 1):+.1f}%" if base else "-"
        print(f"{r['mode']:10} {r['seconds']:8.1f} {r['store_seconds']:8.2f} {r['store_calls']:6d} "
              f"{r['bytes_in_store'] / 1e6:10.1f} {versus:>9}")
    OUT.write_text(json.dumps({"config": cfg.model_dump(mode="json"), "torch_threads": 1,
                               "results": results}, indent=1) + "\n")
    print(f"written to {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
