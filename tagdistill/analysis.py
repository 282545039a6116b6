"""Error analysis of a job: which entity types each model confuses, and where student and teacher disagree.

Entities are matched by their boundaries (first and last token): a predicted span with the boundaries
of a gold one counts as that gold type read as the predicted type (the same type: correct); a gold span
that no prediction has the boundaries of is *missed*, a predicted one that no gold span has is
*spurious*. A span with wrong boundaries is therefore one miss and one spurious entity, as in strict
seqeval scoring, so the matrix adds up to the F1 figures of the report.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

from tagdistill.data import Sentence
from tagdistill.schemes import spans

MISSED = "(missed)"  # column of the gold spans no prediction matches
SPURIOUS = "(spurious)"  # row of the predicted spans no gold span matches
MAX_DISAGREEMENTS = 200  # sentences kept for the disagreement view (the report stays small)


def confusion(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> dict[str, dict[str, int]]:
    """counts[gold type][predicted type] over every sentence, with MISSED and SPURIOUS as above."""
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for g, p in zip(gold, pred, strict=True):
        gold_spans = {(a, b): kind for kind, a, b in spans(list(g))}
        pred_spans = {(a, b): kind for kind, a, b in spans(list(p))}
        for where, kind in gold_spans.items():
            counts[kind][pred_spans.get(where, MISSED)] += 1
        for where, kind in pred_spans.items():
            if where not in gold_spans:
                counts[SPURIOUS][kind] += 1
    return {row: dict(sorted(cols.items())) for row, cols in sorted(counts.items())}


def disagreements(
    sentences: Sequence[Sentence], teacher: Sequence[Sequence[str]], student: Sequence[Sequence[str]],
    limit: int = MAX_DISAGREEMENTS,
) -> list[dict[str, Any]]:
    """The sentences where the student's entities differ from the teacher's, most differences first (then
    those where the student is further from gold, then file order), at most ``limit``.

    Each: ``index`` in the split, ``tokens``, the ``gold``, ``teacher`` and ``student`` spans as
    [type, first token, last token + 1], and the ``types`` the two models disagree on.
    """
    ranked = []
    for i, (sentence, t, s) in enumerate(zip(sentences, teacher, student, strict=True)):
        by_teacher, by_student = set(spans(list(t))), set(spans(list(s)))
        if by_teacher == by_student:
            continue
        by_gold = set(spans(list(sentence.tags or [])))
        differing = by_teacher ^ by_student
        ranked.append((-len(differing), -len(by_student ^ by_gold), i, {
            "index": i,
            "tokens": sentence.tokens,
            "gold": sorted(by_gold, key=_order),
            "teacher": sorted(by_teacher, key=_order),
            "student": sorted(by_student, key=_order),
            "types": sorted({kind for kind, _, _ in differing}),
        }))
    ranked.sort(key=lambda row: row[:3])
    return [row[3] for row in ranked[:limit]]


def analyse(
    split: str, sentences: Sequence[Sentence], predicted: dict[str, list[list[str]]]
) -> dict[str, Any]:
    """The analysis stored with a report: per model (teacher, student, baseline, ...) its confusion
    matrix on ``split``, and the student's disagreements with the teacher there."""
    gold = [s.tags or [] for s in sentences]
    return {
        "split": split,
        "sentences": len(sentences),
        "confusion": {name: confusion(gold, tags) for name, tags in predicted.items()},
        "disagreements": disagreements(sentences, predicted["teacher"], predicted["student"]),
    }


def _order(span: tuple[str, int, int]) -> tuple[int, int, str]:
    kind, first, last = span
    return first, last, kind
