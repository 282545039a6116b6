"""Measurements reported for every model: entity F1 (seqeval, strict IOB2), size and speed."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from seqeval.metrics import classification_report
from seqeval.scheme import IOB2


def entity_scores(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> dict[str, Any]:
    """Entity-level precision, recall and F1, micro-averaged and per type (strict IOB2 matching)."""
    if len(gold) != len(pred) or any(len(g) != len(p) for g, p in zip(gold, pred, strict=True)):
        raise ValueError("gold and predicted tag sequences differ in shape")
    report = classification_report(
        [list(g) for g in gold], [list(p) for p in pred], mode="strict", scheme=IOB2,
        output_dict=True, zero_division=0,
    )
    micro = report.get("micro avg", {"precision": 0.0, "recall": 0.0, "f1-score": 0.0, "support": 0})
    per_type = {
        name: _scores(row) for name, row in report.items() if not name.endswith(" avg")
    }
    return {**_scores(micro), "per_type": per_type}


def _scores(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "precision": float(row["precision"]),
        "recall": float(row["recall"]),
        "f1": float(row["f1-score"]),
        "support": int(row["support"]),
    }


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def bytes_on_disk(path: Path) -> int:
    """Total size of a file or of every file below a folder."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def words_per_second(
    predict: Callable[[list[list[str]]], object],
    sentences: Sequence[Sequence[str]],
    batch_size: int,
    repeats: int = 3,
    max_words: int = 20000,
    sort_by_length: bool = False,
) -> float:
    """Median words/s of ``predict`` over ``repeats`` passes, ``batch_size`` sentences per call.

    The timed sentences are the first ones in the given order up to ``max_words`` words (pass
    them in file order, so they are a fair sample); with ``sort_by_length`` those are then
    batched by length, as a server batching requests would. One warm-up call runs first.
    """
    chosen: list[list[str]] = []
    words = 0
    for s in sentences:
        if words >= max_words:
            break
        chosen.append(list(s))
        words += len(s)
    if not chosen:
        return 0.0
    if sort_by_length:
        chosen.sort(key=len)
    batches = [chosen[i : i + batch_size] for i in range(0, len(chosen), batch_size)]
    predict(batches[0])
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for b in batches:
            predict(b)
        rates.append(words / (time.perf_counter() - start))
    return statistics.median(rates)
