"""Words/s of several models measured side by side, interleaved, on one test file.

    python bench/speed.py --test ../shared/data/conll2003/test.txt runs/bench/conll/full/{teacher,kd}/model

Each round times every model once at batch 32 (the first --words words of the file,
batched by length) and at batch 1 (file order); the medians over rounds are printed with
each model's ratio to the first one, and written as JSON to --out. This is done with 1 and
with 2 torch threads (--threads), every model under the same setting. A spaCy pipeline folder
(bench/peer.py) is timed the same way.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from tagdistill.data import read_file
from tagdistill.metrics import words_per_second
from tagdistill.tagger import Tagger


def _tagger(folder: Path) -> tuple[str, Callable[..., list[list[str]]]]:
    if (folder / "meta.json").is_file() and (folder / "config.cfg").is_file():
        from peer import spacy_tagger

        return "spacy", spacy_tagger(folder)
    tagger = Tagger.load(folder)
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


def measure_speeds(
    models: dict[str, Path], test: Path, rounds: int = 3, words: int = 5000, words_batch1: int = 1500,
    threads: tuple[int, ...] = (1, 2),
) -> dict[str, Any]:
    """Median words/s at batch 32 and 1 of each model, and its ratio to the first one, for each
    torch thread count in ``threads`` (all models run with the same count)."""
    tokens = [s.tokens for s in read_file(test, "conll")]
    taggers = {name: _tagger(Path(folder)) for name, folder in models.items()}
    ref = next(iter(taggers))
    result: dict[str, Any] = {"rounds": rounds, "test": str(test),
                              "words": {"batch_32": words, "batch_1": words_batch1}, "threads": {}}
    for n in threads:
        torch.set_num_threads(n)
        rates = interleaved_rates({name: tag for name, (_, tag) in taggers.items()}, tokens, rounds, words,
                                  words_batch1)
        models_out = result["threads"][str(n)] = {}
        for name, (kind, _) in taggers.items():
            med = {k: statistics.median(v) for k, v in rates[name].items()}
            ratio = {k: med[k] / statistics.median(rates[ref][k]) for k in med}
            models_out[name] = {"kind": kind, "folder": str(models[name]), "words_per_second": med,
                                "ratio_to_first": ratio, "all": rates[name]}
            print(f"{n} thread(s) {name:28} {kind:8} b32 {med['batch_32']:8.0f} w/s "
                  f"(x{ratio['batch_32']:5.1f})   b1 {med['batch_1']:7.0f} w/s (x{ratio['batch_1']:5.1f})",
                  flush=True)
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("models", type=Path, nargs="+", help="model folders; the first is the reference")
    p.add_argument("--test", type=Path, required=True)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--words", type=int, default=5000, help="words timed per pass at batch 32")
    p.add_argument("--words-batch1", type=int, default=1500, help="words timed per pass at batch 1")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    result = measure_speeds({str(m): m for m in args.models}, args.test, args.rounds, args.words,
                            args.words_batch1, tuple(args.threads))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
