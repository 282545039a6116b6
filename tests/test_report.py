"""The report's scores and speeds: speeds measured side by side, round by round."""

from __future__ import annotations

from tagdistill.data import Sentence
from tagdistill.report import scores, speeds


def test_a_split_whose_tags_are_known_is_scored_on_them_and_not_tagged_again() -> None:
    tagged: list[list[list[str]]] = []
    def predict(batch: list[list[str]]) -> list[list[str]]:
        tagged.append(batch)
        return [["O"] * len(s) for s in batch]

    splits = {"dev": [Sentence(["Paris"], ["B-LOC"])], "test": [Sentence(["Rome", "wins"], ["B-LOC", "O"])]}
    kept: dict[str, list[list[str]]] = {}
    found = scores(predict, splits, kept, known={"dev": [["B-LOC"]]})
    assert tagged == [[["Rome", "wins"]]]  # only test was tagged
    assert found["dev"]["f1"] == 1.0 and found["test"]["f1"] == 0.0
    assert kept == {"dev": [["B-LOC"]], "test": [["O", "O"]]}


def test_speeds_time_every_model_once_per_round_and_report_medians() -> None:
    calls: list[str] = []
    def tagger(name: str):  # -> Predict
        return lambda batch: calls.append(name) or [["O"] * len(s) for s in batch]

    predicts = {"t": tagger("t"), "s": tagger("s")}
    rounds: list[int] = []
    measured = speeds(predicts, [["a", "b"]] * 4, rounds=3, on_round=lambda: rounds.append(len(calls)))
    # each round: t at batch 32 (warm-up + 1 call), t at batch 1 (warm-up + 4 calls), then s the same
    per_model = 2 + 5
    assert rounds == [2 * per_model, 4 * per_model, 6 * per_model]
    assert calls[:per_model] == ["t"] * per_model and calls[per_model : 2 * per_model] == ["s"] * per_model
    assert set(measured) == {"t", "s"}
    assert all(v["batch_32"] > 0 and v["batch_1"] > 0 for v in measured.values())
