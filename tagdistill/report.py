"""What a job's report says about each model (F1 per split and type, size, speed) and how two compare.

One builder for the pipeline, the CLI's ``evaluate`` and the benchmark, so their figures mean the same.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from tagdistill.data import Sentence
from tagdistill.metrics import bytes_on_disk, count_parameters, entity_scores, words_per_second

Predict = Callable[[list[list[str]]], list[list[str]]]
SPEED_WORDS = {1: 2000, 32: 10000}  # words timed per pass, by batch size (batch 1 is slow for the teacher)
WEAK_TYPE_RATIO = 0.5  # a type whose student F1 is below this share of the teacher's is flagged


def scores(
    predict: Predict, splits: dict[str, Sequence[Sentence]], predicted: dict[str, Any] | None = None,
    known: dict[str, list[list[str]]] | None = None,
) -> dict[str, dict[str, Any]]:
    """Entity scores (overall and per type) of ``predict`` on each labeled split; with ``predicted``, the
    predicted tags of each split are kept there too (for the error analysis); a split in ``known`` is
    scored on the tags given there (the same model's, tagged earlier), not tagged again."""
    out = {}
    for name, sents in splits.items():
        tags = known[name] if known and name in known else predict([s.tokens for s in sents])
        if predicted is not None:
            predicted[name] = tags
        out[name] = entity_scores([s.tags or [] for s in sents], tags)
    return out


def speeds(
    predicts: dict[str, Predict], timed: Sequence[Sequence[str]], rounds: int = 3,
    on_round: Callable[[], None] | None = None,
) -> dict[str, dict[str, float]]:
    """Words per second of each model at batch 32 (length-sorted batches, as a server would) and one
    sentence per call, medians over ``rounds``. Interleaved: each round times every model once, so all
    of them see the same machine load and a busy moment cannot flip their ratio. ``on_round`` follows
    each round (progress, and a chance to stop)."""
    rates: dict[str, dict[str, list[float]]] = {name: {"batch_32": [], "batch_1": []} for name in predicts}
    for _ in range(rounds):
        for name, predict in predicts.items():
            rates[name]["batch_32"].append(words_per_second(
                predict, timed, 32, repeats=1, max_words=SPEED_WORDS[32], sort_by_length=True))
            rates[name]["batch_1"].append(
                words_per_second(predict, timed, 1, repeats=1, max_words=SPEED_WORDS[1]))
        if on_round is not None:
            on_round()
    return {name: {k: statistics.median(v) for k, v in r.items()} for name, r in rates.items()}


def model_entry(
    predict: Predict,
    model: torch.nn.Module,
    folder: Path | list[Path],
    splits: dict[str, Sequence[Sentence]],
    predicted: dict[str, list[list[str]]] | None = None,
    known: dict[str, list[list[str]]] | None = None,
) -> dict[str, Any]:
    """One model's part of a report but its speeds (``speeds``, measured beside the others): scores per
    split, parameters and bytes on disk (of a teacher ensemble: its members' folders together);
    ``predicted`` and ``known`` as for ``scores``."""
    folders = folder if isinstance(folder, list) else [folder]
    return {
        **scores(predict, splits, predicted, known),
        "parameters": count_parameters(model),
        "bytes_on_disk": sum(bytes_on_disk(f) for f in folders),
    }


def gain(student: dict[str, Any], baseline: dict[str, Any]) -> dict[str, Any]:
    """F1 of ``student`` minus F1 of ``baseline``, overall and per type, on every split both have."""
    out: dict[str, Any] = {}
    for split in ("dev", "test"):
        if split in student and split in baseline:
            s, b = student[split], baseline[split]
            out[split] = {
                "f1": s["f1"] - b["f1"],
                "per_type": {t: s["per_type"][t]["f1"] - b["per_type"].get(t, {"f1": 0.0})["f1"]
                             for t in s["per_type"]},
            }
    return out


def weak_types(teacher: dict[str, Any], student: dict[str, Any]) -> list[str]:
    """Warnings (on test, else dev) for each entity type whose student F1 is below half the teacher's or
    zero, and for a teacher below its student (an undertrained teacher teaches little)."""
    split = "test" if "test" in student and "test" in teacher else "dev"
    warnings = []
    for kind, row in teacher[split]["per_type"].items():
        mine = student[split]["per_type"].get(kind, {"f1": 0.0})["f1"]
        theirs, entities = row["f1"], f"({row['support']} {kind} entities in {split})"
        if mine < WEAK_TYPE_RATIO * theirs:
            warnings.append(f"{kind}: student {split} F1 {mine:.3f} is below half the teacher's {theirs:.3f} "
                            f"{entities}")
        elif mine == 0.0:
            warnings.append(f"{kind}: neither model finds any {kind} entity on {split} {entities}")
    ours, theirs = student[split]["f1"], teacher[split]["f1"]
    if theirs < ours:
        warnings.append(f"the teacher's {split} F1 {theirs:.3f} is below the student's {ours:.3f}: "
                        "it may be undertrained (teacher.epochs, teacher.min_steps)")
    return warnings
