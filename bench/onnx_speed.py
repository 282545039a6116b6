"""Words/s of one student on torch, ONNX Runtime fp32 and ONNX Runtime int8, side by side.

    python bench/onnx_speed.py                      # trains a student on a CoNLL-2003 slice first
    python bench/onnx_speed.py --model runs/job     # or takes a student (or job) folder

Every runtime gets 1 thread (torch.set_num_threads(1), ONNX Runtime intra_op_num_threads=1). Each
round times torch, then fp32, then int8, at batch 32 (the first --words words of the test file,
batched by length) and at batch 1 (file order); the medians over --rounds rounds are printed with
their ratio to torch and written as JSON to --out, with the test F1 of each runtime and the
conditions (versions, machine). The test file is CoNLL-2003's (../shared/data/conll2003/test.txt),
or the bundled sample's when that is absent.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import onnx
import onnxruntime
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ modules beside this file

from speed import interleaved_rates

from tagdistill.config import DistillConfig, StudentConfig
from tagdistill.data import read_file
from tagdistill.export import INT8_FILE, ONNX_FILE, OnnxStudent, export_student, weights_digest
from tagdistill.metrics import count_parameters, entity_scores
from tagdistill.progress import ConsoleProgress
from tagdistill.schemes import label_index
from tagdistill.tagger import WEIGHTS_FILE, Tagger, model_folder
from tagdistill.train import Example, train_student

ROOT = Path(__file__).resolve().parents[1]
CONLL = ROOT.parent / "shared" / "data" / "conll2003"
SAMPLE = ROOT / "tagdistill" / "sample"
RUNTIMES = ("torch", "onnx", "onnx-int8")  # the first is the reference


def quick_student(out: Path, train_sentences: int, epochs: int) -> Path:
    """The default student (GloVe 50d, char CNN, BiLSTM 100, softmax) trained alone on the first
    ``train_sentences`` of CoNLL-2003 train, dev F1 checked on the first 1,000 of valid."""
    train = read_file(CONLL / "train.txt", "conll")[:train_sentences]
    dev = read_file(CONLL / "valid.txt", "conll")[:1000]
    labels = sorted({t for s in train for t in s.tags}, key=lambda t: (t != "O", t))
    label_id = label_index(labels)
    examples = [Example(s.tokens, [label_id[t] for t in s.tags]) for s in train]
    train_student(DistillConfig(mode="alone", epochs=epochs, min_steps=0), StudentConfig(), labels, examples,
                  [], dev, out, torch.device("cpu"), ConsoleProgress(), 13)
    return out


def exported(folder: Path) -> bool:
    """Whether both ONNX files are there and made from the folder's weights."""
    if not all((folder / f).is_file() for f in (ONNX_FILE, INT8_FILE)):
        return False
    digest = weights_digest(folder)
    return all(OnnxStudent(folder / f, threads=1).weights_sha256 == digest for f in (ONNX_FILE, INT8_FILE))


def measure(
    folder: Path, test: Path, dev: Path, rounds: int, words: int, words_batch1: int
) -> dict[str, Any]:
    torch.set_num_threads(1)
    sentences = read_file(test, "conll")
    tokens = [s.tokens for s in sentences]
    taggers = {rt: Tagger.load(folder, runtime=rt, threads=1) for rt in RUNTIMES}
    splits = {"test": sentences, "dev": read_file(dev, "conll")}
    f1 = {rt: {name: entity_scores([s.tags or [] for s in sents], t.tag([s.tokens for s in sents], 32))["f1"]
               for name, sents in splits.items()} for rt, t in taggers.items()}
    rates = interleaved_rates({rt: t.tag for rt, t in taggers.items()}, tokens, rounds, words, words_batch1)
    results = {}
    for rt in RUNTIMES:
        med = {k: statistics.median(v) for k, v in rates[rt].items()}
        ref = {k: statistics.median(v) for k, v in rates[RUNTIMES[0]].items()}
        file = {"torch": WEIGHTS_FILE, "onnx": ONNX_FILE, "onnx-int8": INT8_FILE}[rt]
        results[rt] = {"words_per_second": med, "ratio_to_torch": {k: med[k] / ref[k] for k in med},
                       "all": rates[rt], "f1": f1[rt], "file": file,
                       "bytes": (folder / file).stat().st_size}
    return {
        "model": _relative(folder), "test": _relative(test), "dev": _relative(dev),
        "test_sentences": len(sentences),
        "parameters": count_parameters(taggers["torch"].model),
        "config": taggers["torch"].meta["config"],
        "rounds": rounds, "words": {"batch_32": words, "batch_1": words_batch1}, "threads": 1,
        "runtimes": results,
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "onnxruntime": onnxruntime.__version__, "onnx": onnx.__version__},
        "machine": {"platform": platform.platform(), "processor": _cpu(), "cpus": os.cpu_count()},
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def _relative(path: Path) -> str:
    return os.path.relpath(path, ROOT)


def _cpu() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
             if line.startswith("model name")] if cpuinfo.is_file() else []
    return names[0] if names else platform.machine()


def table(result: dict[str, Any]) -> str:
    lines = ["| runtime | file | MB | dev F1 | test F1 | words/s, batch 32 | vs torch | words/s, batch 1 "
             "| vs torch |", "|---|---|---|---|---|---|---|---|---|"]
    for rt, r in result["runtimes"].items():
        w, x = r["words_per_second"], r["ratio_to_torch"]
        lines.append(f"| {rt} | `{r['file']}` | {r['bytes'] / 1e6:.1f} | "
                     f"{r['f1']['dev']:.4f} | {r['f1']['test']:.4f} | "
                     f"{w['batch_32']:,.0f} | {x['batch_32']:.2f}x | "
                     f"{w['batch_1']:,.0f} | {x['batch_1']:.2f}x |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, help="a student or job folder (default: train one on a CoNLL slice)")
    p.add_argument("--work", type=Path, default=ROOT / "runs" / "bench" / "onnx", help="where to train it")
    p.add_argument("--train-sentences", type=int, default=3000)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--test", type=Path, help="CoNLL file timed and scored (default: CoNLL-2003 test, "
                   "else the sample's)")
    p.add_argument("--dev", type=Path, help="CoNLL file scored only (default: CoNLL-2003 valid, "
                   "else the sample's)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--words", type=int, default=50000, help="words timed per pass at batch 32 (default: all)")
    p.add_argument("--words-batch1", type=int, default=10000, help="words timed per pass at batch 1")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks" / "onnx_speed.json")
    args = p.parse_args()
    conll = (CONLL / "test.txt").is_file()
    test = args.test or (CONLL / "test.txt" if conll else SAMPLE / "test.conll")
    dev = args.dev or (CONLL / "valid.txt" if conll else SAMPLE / "dev.conll")
    if args.model is not None:
        folder = model_folder(args.model)
    elif (CONLL / "train.txt").is_file():
        folder = args.work / "student"
        if not (folder / WEIGHTS_FILE).is_file():
            quick_student(folder, args.train_sentences, args.epochs)
    else:
        sys.exit("no --model and no CoNLL-2003 in ../shared/data to train one on")
    if not exported(folder):
        print(json.dumps(export_student(folder, int8=True)), flush=True)
    result = measure(folder, test, dev, args.rounds, args.words, args.words_batch1)
    if args.model is None:  # (a student already in --work is reused: delete it after changing these)
        result["trained"] = {"recipe": "StudentConfig(), mode alone, dev = first 1,000 of valid.txt",
                             "train_sentences": args.train_sentences, "epochs": args.epochs}
    print(table(result))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
