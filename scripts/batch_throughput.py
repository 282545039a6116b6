"""Batch tagging across workers: words/s with 1, then 2 worker processes; output checked against one process.

1. A student is made (default sizes, no word vectors, vocabulary of CoNLL-2003's training split, untrained:
   it tags as fast as a trained one) and exported to ONNX, as the pipeline does for the served student;
   a model record is added for it. ``--model DIR`` takes a trained student folder instead.
2. The input: ``--sentences`` (100,000) CoNLL-2003 sentences (train, dev, test, repeated), as raw text.
3. It is tagged once in this process (``Tagger.predict``, one thread): the reference, and a figure.
4. For each count in ``--workers`` (1, 2): that many Celery worker processes (one thread each, pool
   processes that keep the model across chunks) and one API; ``POST /batch-jobs``, wait, download the
   output and compare it with the reference (``same_tagging``: tokens, tags and spans exactly, scores
   within 2e-4). words/s is the input's words over the time
   from the POST to the end of the merge (upload, checks and the chunks' queueing included).

Everything runs on this machine: its own Redis key prefix and queues (in the Redis at ``--redis-url``, or
an embedded one when none answers) and a temporary data directory. ``OMP_NUM_THREADS=1`` is set for every
process. With ``--s3`` no folder is shared: files go through an S3 endpoint (moto's server, started in
this process) and the API and each worker have a cache of their own. Results go to ``--out``::

    OMP_NUM_THREADS=1 .venv/bin/python scripts/batch_throughput.py    # docs/benchmarks/batch_throughput.json
    OMP_NUM_THREADS=1 .venv/bin/python scripts/batch_throughput.py --s3 --workers 2 \
        --out docs/benchmarks/batch_throughput_s3.json

Exit status 0 when every run's output agreed with the reference.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
CONLL = Path("/work/shared/data/conll2003")


def conll_sentences(folder: Path) -> list[list[str]]:
    from tagdistill.data import read_file

    return [s.tokens for split in ("train.txt", "valid.txt", "test.txt")
            for s in read_file(folder / split, "conll")]


def make_model(store: Any, data_dir: Path, sentences: list[list[str]]) -> tuple[str, Path]:
    """An untrained default student, exported to ONNX, with a model record; (model id, its folder)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from builders import untrained_model

    from tagdistill.config import StudentConfig
    from tagdistill.export import export_student
    from tagdistill.student import NeuralTagger
    from tagdistill.vocab import Vocab

    cfg = StudentConfig(embeddings=None)
    labels = ["O"] + [f"{p}-{t}" for t in ("LOC", "MISC", "ORG", "PER") for p in "BI"]
    student = NeuralTagger(cfg, Vocab.build(sentences, labels, cfg)).eval()
    job_dir = data_dir / "jobs" / f"job_{secrets.token_hex(6)}"
    record = untrained_model(store, job_dir, student, "ds_bench")
    export_student(job_dir / "student", int8=False, sentences=sentences[:200])
    return record.id, job_dir / "student"


def register(store: Any, data_dir: Path, folder: Path) -> str:
    """A model record for the trained student ``folder`` (copied into the data directory)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from builders import untrained_model

    from tagdistill.tagger import load_student

    job_dir = data_dir / "jobs" / f"job_{secrets.token_hex(6)}"
    record = untrained_model(store, job_dir, load_student(folder), "ds_bench")
    shutil.copytree(folder, job_dir / "student", dirs_exist_ok=True)  # with its ONNX files
    return record.id


def start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("ab") as out:
        return subprocess.Popen(command, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def wait(check: Any, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (result := check()):
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.5)
    return result


def run_batch(url: str, model_id: str, body: bytes) -> tuple[dict[str, Any], list[dict[str, Any]], float]:
    """POST the input, wait for the end, download; (the batch job, the output, seconds to the end)."""
    with httpx.Client(base_url=url, timeout=600) as client:
        started = time.perf_counter()
        form = {"model_id": model_id}
        response = client.post("/batch-jobs", files={"file": ("input.txt", body)}, data=form)
        response.raise_for_status()
        batch_id = response.json()["id"]

        def ended() -> dict[str, Any] | None:
            batch = client.get(f"/batch-jobs/{batch_id}").json()
            return batch if batch["status"] in ("succeeded", "failed", "cancelled") else None

        batch = wait(ended, 3600, f"batch job {batch_id}")
        seconds = time.perf_counter() - started
        if batch["status"] != "succeeded":
            raise SystemExit(f"batch job {batch_id} {batch['status']}: {batch['error']}")
        lines = client.get(f"/batch-jobs/{batch_id}/output").text.splitlines()
        return batch, [json.loads(line) for line in lines], seconds


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sentences", type=int, default=100_000)
    p.add_argument("--workers", default="1,2", help="worker counts to run, in order")
    p.add_argument("--chunk-size", type=int, default=5000, help="sentences a chunk")
    p.add_argument("--conll", type=Path, default=CONLL, help="folder of CoNLL-2003's train/valid/test.txt")
    p.add_argument("--model", type=Path, help="a trained student folder (default: an untrained one)")
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    p.add_argument("--s3", action="store_true", help="no shared folder: an S3 endpoint and a cache each")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks" / "batch_throughput.json")
    args = p.parse_args(argv)

    import redis
    import torch

    from jobstore.store import Store
    from service.run import answers, free_port, start_embedded_redis
    from tagdistill.tagger import Tagger, same_tagging

    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="tagdistill-batch-bench-"))
    procs: list[subprocess.Popen] = []
    redis_url = args.redis_url
    if not answers(redis_url):
        redis_url, proc = start_embedded_redis(work / "redis")
        procs.append(proc)
    tag = secrets.token_hex(4)
    env = {
        **os.environ, "PYTHONPATH": str(ROOT), "TAGDISTILL_REDIS_URL": redis_url,
        "TAGDISTILL_DATA_DIR": str(work / "data"), "TAGDISTILL_KEY_PREFIX": f"tdbench-{tag}:",
        "TAGDISTILL_QUEUE": f"tdbench-{tag}", "TAGDISTILL_TORCH_THREADS": "1", "OMP_NUM_THREADS": "1",
        "TAGDISTILL_BATCH_CHUNK_SIZE": str(args.chunk_size), "TAGDISTILL_MAX_TASKS_PER_CHILD": "1000",
        "TAGDISTILL_MAX_ACTIVE_BATCHES": "100", "HF_HUB_OFFLINE": "1",
    }
    store = Store.from_url(redis_url, env["TAGDISTILL_KEY_PREFIX"])
    operator = s3_store(env, work, tag) if args.s3 else None  # the model is put in the store through it
    try:
        sentences = conll_sentences(args.conll)
        models = operator.root if operator else work / "data"
        if args.model is None:
            model_id, folder = make_model(store, models, sentences)
        else:
            model_id, folder = register(store, models, args.model), args.model
        if operator is not None:
            operator.push(store.get_model(model_id).student_path)
        lines = [" ".join(sentences[i % len(sentences)]) for i in range(args.sentences)]
        body = ("\n".join(lines) + "\n").encode()
        tagger = Tagger.load(folder)
        size = f"{len(lines):,} sentences ({len(body) / 1e6:.1f} MB)"
        print(f"{size}: tagged in one process ({tagger.runtime})", flush=True)
        started = time.perf_counter()
        expected = tagger.predict(lines)
        alone_s = time.perf_counter() - started
        words = sum(len(r["tokens"]) for r in expected)
        print(f"  {words:,} words in {alone_s:.1f} s: {words / alone_s:,.0f} words/s", flush=True)
        api = start([sys.executable, "-m", "uvicorn", "service.app:app", "--port", str(port := free_port()),
                     "--no-access-log"], env, work / "api.log")
        procs.append(api)
        url = f"http://127.0.0.1:{port}"
        wait(lambda: answers_http(url), 120, "the API")
        runs = []
        for count in [int(n) for n in args.workers.split(",")]:
            workers = []
            names = [f"w{i + 1}-of-{count}@{env['TAGDISTILL_QUEUE']}" for i in range(count)]
            for name in names:
                command = [sys.executable, "-m", "celery", "-A", "worker.app", "worker", "--queues",
                           env["TAGDISTILL_QUEUE"], "--concurrency", "1", "--hostname", name,
                           "--without-gossip", "--without-mingle", "--loglevel", "WARNING"]
                short = name.split("@")[0]
                own = {"TAGDISTILL_DATA_DIR": str(work / f"cache-{short}")} if args.s3 else {}
                workers.append(start(command, {**env, **own}, work / f"worker-{short}.log"))
            procs.extend(workers)
            up = lambda names=names: set(names) <= {w.name for w in store.live_workers(60)}  # noqa: E731
            wait(up, 180, "the workers")
            print(f"{count} worker(s)...", flush=True)
            batch, output, seconds = run_batch(url, model_id, body)
            identical = same_tagging(output, expected)
            runs.append({
                "workers": count, "seconds": round(seconds, 1), "words_per_second": round(words / seconds),
                "tagging_words_per_second": batch["words_per_second"], "chunks": batch["chunks"],
                "chunks_per_worker": batch["workers"], "identical_to_one_process": identical,
            })
            print(f"  {seconds:.1f} s: {words / seconds:,.0f} words/s (chunks {batch['workers']}); "
                  f"output identical to one process: {identical}", flush=True)
            for proc in workers:
                stop(proc)
        result = {
            "what": "POST /batch-jobs of CoNLL-2003 sentences (raw text, repeated) through the API and N "
                    "Celery worker processes (1 thread each), output compared with one process (tokens, tags "
                    "and spans exactly, scores within 2e-4)",
            "machine": f"{platform.machine()}, {os.cpu_count()} cores shared with other developers' work",
            "sentences": len(lines), "words": words, "chunk_size": args.chunk_size,
            "model": str(args.model) if args.model else "untrained default student (no word vectors), ONNX",
            "storage": "S3 endpoint (moto's server on this machine), a cache per process" if args.s3
            else "the local data directory, shared by every process",
            "runtime": tagger.runtime,
            "one_process": {"seconds": round(alone_s, 1), "words_per_second": round(words / alone_s)},
            "runs": runs,
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {args.out}")
        return 0 if all(r["identical_to_one_process"] for r in runs) else 1
    finally:
        for proc in reversed(procs):
            stop(proc)
        client = redis.Redis.from_url(redis_url) if answers(redis_url) else None
        if client is not None:
            keys = list(client.scan_iter(match=env["TAGDISTILL_KEY_PREFIX"] + "*", count=1000))
            if keys:
                client.delete(*keys)
        shutil.rmtree(work, ignore_errors=True)


def s3_store(env: dict[str, str], work: Path, tag: str) -> Any:
    """Start moto's S3 server here and point ``env`` at a prefix of it, with the API's own cache; an
    operator's ArtifactStore on that prefix."""
    from moto.server import ThreadedMotoServer

    from jobstore.artifacts import ArtifactStore

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()  # a daemon thread: it ends with this process
    host, port = server.get_host_and_port()
    endpoint, credentials, url = f"http://{host}:{port}", {"key": "bench", "secret": "bench"}, f"s3://bench/{tag}"
    env.update({
        "TAGDISTILL_STORAGE_URL": url, "TAGDISTILL_STORAGE_ENDPOINT_URL": endpoint,
        "TAGDISTILL_STORAGE_KEY": credentials["key"], "TAGDISTILL_STORAGE_SECRET": credentials["secret"],
        "TAGDISTILL_DATA_DIR": str(work / "cache-api"),
    })
    operator = ArtifactStore(work / "operator", url, endpoint_url=endpoint, **credentials)
    operator.fs.mkdir("bench")
    return operator


def answers_http(url: str) -> bool:
    try:
        return httpx.get(url + "/health", timeout=2).status_code in (200, 503)
    except httpx.TransportError:
        return False


if __name__ == "__main__":
    sys.exit(main())
