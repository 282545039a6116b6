"""Words/s of several models measured side by side, interleaved, on one test file.

    python bench/speed.py --test ../shared/data/conll2003/test.txt runs/l2000/teacher runs/l2000/kd ...

Each round times every model once at batch 32 (the first --words words of the file,
batched by length) and at batch 1 (file order); the medians over rounds are printed with
each model's ratio to the first one, and written as JSON to --out.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

from tagdistill.data import read_file
from tagdistill.metrics import words_per_second
from tagdistill.tagger import Tagger


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("models", type=Path, nargs="+", help="model folders; the first is the reference")
    p.add_argument("--test", type=Path, required=True)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--words", type=int, default=5000, help="words timed per pass at batch 32")
    p.add_argument("--words-batch1", type=int, default=1500, help="words timed per pass at batch 1")
    p.add_argument("--out", type=Path)
    args = p.parse_args()

    tokens = [s.tokens for s in read_file(args.test, "conll")]
    taggers = {str(m): Tagger.load(m) for m in args.models}
    rates: dict[str, dict[str, list[float]]] = {m: {"batch_32": [], "batch_1": []} for m in taggers}
    for _ in range(args.rounds):
        for name, tagger in taggers.items():
            rates[name]["batch_32"].append(words_per_second(
                lambda b, t=tagger: t.tag(b, 32), tokens, 32, repeats=1, max_words=args.words,
                sort_by_length=True))
            rates[name]["batch_1"].append(words_per_second(
                lambda b, t=tagger: t.tag(b, 1), tokens, 1, repeats=1, max_words=args.words_batch1))
    ref = str(args.models[0])
    result = {"threads": torch.get_num_threads(), "rounds": args.rounds, "models": {}}
    for name in taggers:
        med = {k: statistics.median(v) for k, v in rates[name].items()}
        ratio = {k: med[k] / statistics.median(rates[ref][k]) for k in med}
        kind = taggers[name].kind
        result["models"][name] = {"kind": kind, "words_per_second": med, "ratio_to_first": ratio}
        print(f"{name:32} {kind:8} b32 {med['batch_32']:8.0f} w/s (x{ratio['batch_32']:5.1f})"
              f"   b1 {med['batch_1']:7.0f} w/s (x{ratio['batch_1']:5.1f})")
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
