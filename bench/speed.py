"""Words/s of several models measured side by side, interleaved, on one test file.

    python bench/speed.py --test ../shared/data/conll2003/test.txt runs/bench/conll/full/{teacher,kd}/model
    python bench/speed.py --runtimes --f1 --test ../shared/data/conll2003/test.txt \
        --out docs/benchmarks/speed_runtimes.json runs/job/teacher runs/job/student

Each round times every model once at batch 32 (the first --words words of the file,
batched by length) and at batch 1 (file order); the medians over rounds are printed with
each model's ratio to the first one, and written as JSON to --out. This is done with 1 and
with 2 threads (--threads), every model under the same setting: torch's
(``torch.set_num_threads``) and ONNX Runtime's (intra-op threads of a session made for that
setting). A spaCy pipeline folder (bench/peer.py) is timed the same way.

``--runtimes``: every model in each runtime it has, as a model of its own: torch, ONNX Runtime
fp32 and, for a student, int8 (``tagdistill export`` files, made first when missing: the
student's with int8, the teacher's fp32). ``--f1`` adds each one's entity F1 on the test file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from tagdistill.data import read_file
from tagdistill.meta import read_meta
from tagdistill.metrics import entity_scores, words_per_second
from tagdistill.tagger import Tagger, model_folder

RUNTIMES = {"student": ("torch", "onnx", "onnx-int8"), "teacher": ("torch", "onnx")}


def _tagger(folder: Path, runtime: str, threads: int) -> tuple[str, Callable[..., list[list[str]]]]:
    if (folder / "meta.json").is_file() and (folder / "config.cfg").is_file():
        from peer import spacy_tagger

        return "spacy", spacy_tagger(folder)
    tagger = Tagger.load(folder, runtime=runtime, threads=threads)
    return tagger.kind, tagger.tag


def interleaved_rates(
    taggers: dict[str, Callable[[list[list[str]], int], object]], tokens: list[list[str]], rounds: int,
    words: int, words_batch1: int,
) -> dict[str, dict[str, list[float]]]:
    """Words/s of each ``tag(batch, batch_size)`` per round, at batch 32 (the first ``words`` words,
    batched by length) and at batch 1 (file order). Each round times every tagger once, so all see the
    same machine load."""
    rates: dict[str, dict[str, list[float]]] = {m: {"batch_32": [], "batch_1": []} for m in taggers}
    for _ in range(rounds):
        for name, tag in taggers.items():
            rates[name]["batch_32"].append(words_per_second(
                lambda b, t=tag: t(b, 32), tokens, 32, repeats=1, max_words=words, sort_by_length=True))
            rates[name]["batch_1"].append(words_per_second(
                lambda b, t=tag: t(b, 1), tokens, 1, repeats=1, max_words=words_batch1))
    return rates


def expand_runtimes(models: dict[str, Path]) -> dict[str, tuple[Path, str]]:
    """Each model folder once per runtime it has (``--runtimes``), its ONNX files exported first when
    missing; a spaCy folder as it is. Names: "<name> [<runtime>]"."""
    from tagdistill.export import INT8_FILE, ONNX_FILE, export_student, export_teacher

    out: dict[str, tuple[Path, str]] = {}
    for name, folder in models.items():
        if (folder / "config.cfg").is_file():  # spaCy
            out[name] = (folder, "auto")
            continue
        folder = model_folder(folder)
        kind = read_meta(folder)["kind"]
        if kind == "student" and not (folder / INT8_FILE).is_file():
            print(json.dumps(export_student(folder, int8=True)), flush=True)
        elif kind == "teacher" and not (folder / ONNX_FILE).is_file():
            print(json.dumps(export_teacher(folder)), flush=True)
        out |= {f"{name} [{rt}]": (folder, rt) for rt in RUNTIMES[kind]}
    return out


def measure_speeds(
    models: dict[str, Path], test: Path, rounds: int = 3, words: int = 5000, words_batch1: int = 1500,
    threads: tuple[int, ...] = (1, 2), runtimes: bool = False, f1: bool = False,
) -> dict[str, Any]:
    """Median words/s at batch 32 and 1 of each model, and its ratio to the first one, for each
    thread count in ``threads`` (all models run with the same count). ``runtimes``: each model in
    each of its runtimes (``expand_runtimes``); ``f1``: each one's test F1 as well."""
    sentences = read_file(test, "conll")
    tokens = [s.tokens for s in sentences]
    entries = expand_runtimes(models) if runtimes else {name: (Path(f), "auto") for name, f in models.items()}
    ref = next(iter(entries))
    result: dict[str, Any] = {"rounds": rounds, "test": str(test), "test_sentences": len(sentences),
                              "words": {"batch_32": words, "batch_1": words_batch1}, "threads": {}}
    for n in threads:
        torch.set_num_threads(n)
        taggers = {name: _tagger(folder, rt, n) for name, (folder, rt) in entries.items()}
        if f1 and "f1" not in result:  # the same tags at any thread count: scored once
            gold = [s.tags or [] for s in sentences]
            result["f1"] = {name: entity_scores(gold, tag(tokens, 32))["f1"]
                            for name, (_, tag) in taggers.items()}
        rates = interleaved_rates({name: tag for name, (_, tag) in taggers.items()}, tokens, rounds, words,
                                  words_batch1)
        models_out = result["threads"][str(n)] = {}
        for name, (kind, _) in taggers.items():
            med = {k: statistics.median(v) for k, v in rates[name].items()}
            ratio = {k: med[k] / statistics.median(rates[ref][k]) for k in med}
            models_out[name] = {"kind": kind, "folder": str(entries[name][0]), "runtime": entries[name][1],
                                "words_per_second": med, "ratio_to_first": ratio, "all": rates[name]}
            print(f"{n} thread(s) {name:36} {kind:8} b32 {med['batch_32']:8.0f} w/s "
                  f"(x{ratio['batch_32']:5.1f})   b1 {med['batch_1']:7.0f} w/s (x{ratio['batch_1']:5.1f})",
                  flush=True)
    return result


def conditions() -> dict[str, Any]:
    """Versions, machine and date, written beside the figures."""
    import onnxruntime

    cpuinfo = Path("/proc/cpuinfo")
    names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
             if line.startswith("model name")] if cpuinfo.is_file() else []
    return {
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "onnxruntime": onnxruntime.__version__},
        "machine": {"platform": platform.platform(), "processor": names[0] if names else platform.machine(),
                    "cpus": os.cpu_count(), "load_average": os.getloadavg()},
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("models", type=Path, nargs="+", help="model folders; the first is the reference")
    p.add_argument("--test", type=Path, required=True)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--words", type=int, default=5000, help="words timed per pass at batch 32")
    p.add_argument("--words-batch1", type=int, default=1500, help="words timed per pass at batch 1")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--runtimes", action="store_true", help="every model in each of its runtimes")
    p.add_argument("--f1", action="store_true", help="also each model's entity F1 on --test")
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    result = measure_speeds({str(m): m for m in args.models}, args.test, args.rounds, args.words,
                            args.words_batch1, tuple(args.threads), args.runtimes, args.f1)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({**result, **conditions()}, indent=1) + "\n")


if __name__ == "__main__":
    main()
