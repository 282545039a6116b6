"""The demo behind ``make demo``: start the stack, distil the bundled sample, tag a sentence, stop.

Everything goes through the REST API of a ``tagdistill up`` started here in the background:
upload the sample dataset, run a job with the packaged MiniLM teacher (epochs kept small so
it finishes in a few minutes on two CPU cores), follow its progress, print teacher vs student
F1 and speed, tag a sentence with ``POST /predict``, then stop the stack.

    python scripts/demo.py [--port 8000] [--data-dir data]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "tagdistill" / "sample"
SENTENCE = "Kenji Varga said the Turkish team would travel to Warsaw on Saturday with coach Anna Weber."
JOB = {  # everything else keeps its default (MiniLM teacher, BiLSTM student, KD + pseudo-labels)
    "teacher": {"epochs": 2, "learning_rate": 2e-4, "min_steps": 100},  # 2 epochs, raised to 100 steps (8)
    "distill": {"epochs": 10, "min_steps": 0},  # 10 passes over the 400 labeled sentences (130 steps)
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--data-dir", type=Path, default=ROOT / "data")
    args = parser.parse_args()
    url = f"http://127.0.0.1:{args.port}"
    with socket.socket() as s:
        if s.connect_ex(("127.0.0.1", args.port)) == 0:
            sys.exit(f"port {args.port} is taken; choose another: make demo PORT=8001")
    log_path = args.data_dir / "demo-stack.log"
    args.data_dir.mkdir(parents=True, exist_ok=True)
    up = ["up", "--port", str(args.port), "--data-dir", str(args.data_dir)]
    print(f"starting the stack: tagdistill {' '.join(up)} (log: {log_path})")
    with log_path.open("ab") as log:
        stack = subprocess.Popen(
            [sys.executable, "-m", "tagdistill.cli", *up],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        with httpx.Client(base_url=url, timeout=120) as client:
            run_demo(client, stack, log_path)
    finally:
        print("stopping the stack")
        stack.send_signal(signal.SIGTERM)  # what Ctrl-C does to `tagdistill up`
        try:
            stack.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(stack.pid, signal.SIGKILL)


def run_demo(client: httpx.Client, stack: subprocess.Popen, log_path: Path) -> None:
    started = time.monotonic()
    while True:
        if stack.poll() is not None:
            sys.exit(f"the stack exited with code {stack.returncode}; see {log_path}")
        try:
            health = client.get("/health").json()
            if health["workers"]:
                break
        except httpx.TransportError:
            pass
        if time.monotonic() - started > 120:
            sys.exit(f"the stack did not become healthy in 120 s; see {log_path}")
        time.sleep(1)
    print(f"healthy: version {health['version']}, worker {health['workers'][0]['name']}")

    names = ("train.conll", "dev.conll", "test.conll", "unlabeled.txt")
    files = {name.split(".")[0]: (name, (SAMPLE / name).read_bytes()) for name in names}
    dataset = must(client.post("/datasets", files=files, data={"name": "bundled sample"}), 201)
    splits = dataset["stats"]["splits"]
    print(
        f"uploaded dataset {dataset['id']}: "
        + ", ".join(f"{split} {s['sentences']} sentences" for split, s in splits.items())
        + f"; entity types {', '.join(dataset['stats']['entity_types'])}"
    )

    job = must(client.post("/jobs", json={"dataset_id": dataset["id"], **JOB}), 202)
    print(f"job {job['id']} queued (teacher: packaged MiniLM, at least 100 steps; "
          f"student: BiLSTM, at most {JOB['distill']['epochs']} epochs, with and without the teacher)")
    job = follow(client, job["id"])
    if job["status"] != "succeeded":
        sys.exit(f"job {job['status']}: {job['error']}")
    took = (parse(job["finished_at"]) - parse(job["started_at"]))
    print(f"job succeeded in {took:.0f} s")

    model = must(client.get(f"/models/{job['model_id']}"), 200)
    show_model(model)

    tagged = must(client.post("/predict", json={"model_id": model["id"], "texts": [SENTENCE]}), 200)
    print(f"\nPOST /predict ({tagged['elapsed_ms']:.1f} ms, student): {SENTENCE}")
    for e in tagged["results"][0]["entities"]:
        print(f"  {e['label']:<5} {e['text']!r} [{e['start']}:{e['end']}]")


def follow(client: httpx.Client, job_id: str) -> dict[str, Any]:
    """Poll the job; print a line when its stage or epoch changes, and every 15 s in between."""
    shown, printed = None, 0.0
    while True:
        job = must(client.get(f"/jobs/{job_id}"), 200)
        p = job["progress"]
        line = f"  {job['status']:<9} {p['stage'] or '-':<10} {100 * p['fraction']:5.1f}%"
        if p["total"]:
            line += f"  step {p['step']}/{p['total']}"
        if p["epoch"] is not None:
            line += f"  epoch {p['epoch']}"
        latest = job["metrics"].get(p["stage"] or "", {})
        if "dev_f1" in latest:
            line += f"  dev F1 {latest['dev_f1']:.3f}"
        if p["eta_s"]:
            line += f"  ETA {p['eta_s']:.0f} s"
        key = (job["status"], p["stage"], p["epoch"])
        if key != shown or time.monotonic() - printed > 15:
            print(line, flush=True)
            shown, printed = key, time.monotonic()
        if job["status"] in {"succeeded", "failed", "cancelled"}:
            return job
        time.sleep(2)


def show_model(model: dict[str, Any]) -> None:
    split = "test" if "test" in model["student"] else "dev"
    t, s = model["teacher"], model["student"]
    b = model.get("baseline")
    print(f"\n{'':<24}{'teacher':>12}{'student':>12}" + (f"{'alone':>12}" if b else ""))
    print(f"{split + ' F1':<24}{t[split]['f1']:>12.3f}{s[split]['f1']:>12.3f}"
          + (f"{b[split]['f1']:>12.3f}" if b else ""))
    for kind in sorted(s[split]["per_type"]):
        tf, sf = t[split]["per_type"][kind]["f1"], s[split]["per_type"][kind]["f1"]
        alone = f"{b[split]['per_type'][kind]['f1']:>12.3f}" if b else ""
        print(f"{'  ' + kind:<24}{tf:>12.3f}{sf:>12.3f}{alone}")
    print(f"{'parameters':<24}{t['parameters']:>12,}{s['parameters']:>12,}")
    print(f"{'MB on disk':<24}{t['bytes_on_disk'] / 1e6:>12.1f}{s['bytes_on_disk'] / 1e6:>12.1f}")
    for batch in ("batch_1", "batch_32"):
        tw, sw = t["words_per_second"][batch], s["words_per_second"][batch]
        print(f"{'words/s, ' + batch.replace('_', ' '):<24}{tw:>12,.0f}{sw:>12,.0f}"
              f"   speedup x{model['speedup'][batch]:.1f}")
    if model.get("distillation_gain"):
        print(f"distillation gain on {split}: {100 * model['distillation_gain'][split]['f1']:+.1f} F1 points "
              f"over the same student trained alone; served: {model['served']['reason']}")
    if model.get("teaching"):
        together = model["teaching"]["by"] == "teacher_and_baseline"
        who = "the teacher and the baseline together" if together else "the teacher alone"
        print(f"taught by {who}: {model['teaching']['reason']}")
    for warning in model.get("warnings", []):
        print(f"warning: {warning}")
    print(f"device: {model['device']}; seconds per stage: "
          + ", ".join(f"{k} {v:.0f}" for k, v in model["seconds"].items()))


def must(response: httpx.Response, status: int) -> dict[str, Any]:
    if response.status_code != status:
        request = response.request
        sys.exit(f"{request.method} {request.url.path}: {response.status_code} {response.text}")
    return response.json()


def parse(stamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(stamp).timestamp()


if __name__ == "__main__":
    main()
