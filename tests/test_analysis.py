"""Error analysis by hand: the confusion of entity types and the ranking of disagreements."""

from __future__ import annotations

from tagdistill.analysis import MISSED, SPURIOUS, analyse, confusion, disagreements
from tagdistill.data import Sentence
from tagdistill.metrics import entity_scores


def test_confusion_counts_types_misses_and_spurious_spans_by_boundaries() -> None:
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O", "O"]]
    pred = [["B-PER", "I-PER", "O", "B-ORG"], ["B-ORG", "I-ORG", "B-MISC"]]
    # PER right; LOC read as ORG; the gold ORG span (0, 1) is predicted as (0, 2): one miss and one spurious
    assert confusion(gold, pred) == {
        "LOC": {"ORG": 1},
        "ORG": {MISSED: 1},
        "PER": {"PER": 1},
        SPURIOUS: {"MISC": 1, "ORG": 1},
    }


def test_confusion_agrees_with_the_reports_strict_f1() -> None:
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O", "O"], ["B-LOC", "O", "B-PER"]]  # IOB2, as loaded
    pred = [["B-PER", "I-PER", "O", "B-ORG"], ["B-ORG", "I-ORG", "B-MISC"], ["B-LOC", "O", "O"]]
    matrix = confusion(gold, pred)
    right = sum(n for g, row in matrix.items() for p, n in row.items() if g == p)
    predicted = sum(n for g, row in matrix.items() for p, n in row.items() if p != MISSED)
    actual = sum(n for g, row in matrix.items() if g != SPURIOUS for n in row.values())
    scores = entity_scores(gold, pred)
    assert (scores["precision"], scores["recall"]) == (right / predicted, right / actual)


def test_disagreements_rank_the_most_differing_sentences_first_and_skip_agreements() -> None:
    sentences = [
        Sentence(["Anna", "met", "Bob"], ["B-PER", "O", "B-PER"]),
        Sentence(["in", "Rome"], ["O", "B-LOC"]),
        Sentence(["at", "ACME", "Rome"], ["O", "B-ORG", "B-LOC"]),
    ]
    teacher = [["B-PER", "O", "B-PER"], ["O", "B-LOC"], ["O", "B-ORG", "B-LOC"]]
    student = [["B-PER", "O", "B-PER"], ["O", "B-ORG"], ["B-MISC", "O", "O"]]
    rows = disagreements(sentences, teacher, student)
    assert [r["index"] for r in rows] == [2, 1]  # 3 spans differ in sentence 2, 2 in sentence 1, none in 0
    assert rows[0]["student"] == [("MISC", 0, 1)] and rows[0]["teacher"] == [("ORG", 1, 2), ("LOC", 2, 3)]
    assert rows[0]["types"] == ["LOC", "MISC", "ORG"] and rows[1]["types"] == ["LOC", "ORG"]
    assert disagreements(sentences, teacher, student, limit=1)[0]["index"] == 2


def test_analyse_gives_each_models_confusion_and_the_students_disagreements() -> None:
    sentences = [Sentence(["in", "Rome"], ["O", "B-LOC"])]
    out = analyse("test", sentences, {"teacher": [["O", "B-LOC"]], "student": [["O", "O"]]})
    assert out["confusion"]["teacher"] == {"LOC": {"LOC": 1}}
    assert out["confusion"]["student"] == {"LOC": {MISSED: 1}}
    assert out["split"] == "test" and [r["index"] for r in out["disagreements"]] == [0]


def test_warnings_name_weak_and_unfound_types_and_a_teacher_below_its_student() -> None:
    from tagdistill.report import weak_types

    per_type = {
        "PER": {"f1": 0.8, "support": 10}, "ORG": {"f1": 0.0, "support": 3}, "LOC": {"f1": 0.6, "support": 5},
    }
    teacher = {"test": {"f1": 0.5, "per_type": per_type}}
    student = {"test": {"f1": 0.6, "per_type": {"PER": {"f1": 0.3}, "LOC": {"f1": 0.5}}}}
    warnings = weak_types(teacher, student)
    assert warnings[0] == (
        "PER: student test F1 0.300 is below half the teacher's 0.800 (10 PER entities in test)"
    )
    assert warnings[1] == "ORG: neither model finds any ORG entity on test (3 ORG entities in test)"
    assert len(warnings) == 3 and "teacher's test F1 0.500 is below the student's 0.600" in warnings[2]
