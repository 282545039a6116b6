"""The student's training loop: equal budgets across modes, batch mixing, scoring of decoded tags,
and checkpoints that never mix teachers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_teacher import LABELS, Recorder, one_thread, synthetic  # noqa: F401 (fixture)

from tagdistill.config import DistillConfig, StudentConfig
from tagdistill.data import Sentence
from tagdistill.student import NeuralTagger
from tagdistill.tagger import student_predict
from tagdistill.train import Example, UnlabeledStream, evaluate_student, train_student
from tagdistill.vocab import Vocab

CPU = torch.device("cpu")
SMALL = StudentConfig(word_dim=16, char_dim=8, char_hidden=8, hidden=16, embeddings=None)
LABEL_ID = {label: i for i, label in enumerate(LABELS)}


def _examples(n: int, seed: int, logits_seed: int | None = 1, tags: bool = True) -> list[Example]:
    g = torch.Generator().manual_seed(logits_seed or 0)
    return [
        Example(s.tokens, [LABEL_ID[t] for t in s.tags] if tags else None,
                torch.randn(len(s.tokens), len(LABELS), generator=g) if logits_seed is not None else None)
        for s in synthetic(n, seed)
    ]


def _train(cfg: DistillConfig, labeled: list[Example], unlabeled: list[Example], folder: Path,
           progress: Recorder | None = None, checkpoint: Path | None = None) -> tuple[NeuralTagger, dict]:
    return train_student(cfg, SMALL, LABELS, labeled, unlabeled, synthetic(8, 9), folder, CPU,
                         progress or Recorder(), 0, checkpoint)


def test_unlabeled_stream_gives_ratio_batches_per_step_and_covers_each_pass() -> None:
    examples = _examples(40, seed=1, tags=False)  # 5 batches of 8 per pass
    for ratio, steps, expected in ((1.0, 10, 10), (0.5, 10, 5), (2.0, 10, 20), (0.3, 10, 3)):
        stream = UnlabeledStream(examples, 8, ratio, seed=0)
        assert sum(len(stream.batches(i)) for i in range(steps)) == expected
    stream = UnlabeledStream(examples, 8, 1.0, seed=0)
    first_pass = [b for i in range(5) for b in stream.batches(i)]
    second_pass = [b for i in range(5, 10) for b in stream.batches(i)]
    for one_pass in (first_pass, second_pass):
        assert sorted(id(e) for b in one_pass for e in b) == sorted(id(e) for e in examples)
    assert [[id(e) for e in b] for b in first_pass] != [[id(e) for e in b] for b in second_pass]
    again = UnlabeledStream(examples, 8, 1.0, seed=0)  # stateless: a resumed run draws the same batches
    assert [[id(e) for e in b] for b in again.batches(7)] == [[id(e) for e in b] for b in stream.batches(7)]


def test_distilled_student_gets_the_steps_and_labeled_passes_of_the_student_alone(tmp_path: Path) -> None:
    labeled = _examples(40, seed=1)  # 5 labeled batches of 8
    unlabeled = _examples(200, seed=2, tags=False)  # 25 unlabeled batches: a longer stream
    runs = {}
    for mode in ("alone", "kd", "kd_pseudo"):
        cfg = DistillConfig(mode=mode, epochs=3, min_steps=0, batch_size=8, patience=10)
        progress = Recorder()
        _train(cfg, labeled, unlabeled if mode != "alone" else [], tmp_path / mode, progress)
        runs[mode] = progress
    for progress in runs.values():
        assert progress.stages == [("student", 15)]  # 3 passes over 5 labeled batches
        assert len(progress.steps) == 15
        assert [e for e, _ in progress.epochs] == [1, 2, 3]


def test_min_steps_raises_epochs_and_dev_is_checked_epochs_times(tmp_path: Path) -> None:
    cfg = DistillConfig(mode="alone", epochs=2, min_steps=30, batch_size=8, patience=10)
    progress = Recorder()
    _, history = _train(cfg, _examples(40, seed=1), [], tmp_path / "s", progress)
    assert progress.stages == [("student", 30)]  # 6 epochs of 5 steps
    assert [e["epoch"] for e in history["epochs"]] == [3, 6]
    assert [e["steps"] for e in history["epochs"]] == [15, 30]


def test_softmax_student_tags_are_repaired_before_scoring() -> None:
    # A student whose every word scores I-PER highest: today's argmax is I-PER I-PER, which strict
    # IOB2 scoring would drop; repaired, it is the B-PER I-PER entity that /predict shows.
    vocab = Vocab.build([["anna", "berg"]], LABELS, SMALL)
    model = NeuralTagger(SMALL, vocab).eval()
    with torch.no_grad():
        model.out.weight.zero_()
        model.out.bias.copy_(torch.tensor([0.0, 0.0, 0.0, 0.0, 5.0]))  # I-PER
    assert student_predict(model, [["anna", "berg"]]) == [["B-PER", "I-PER"]]
    scores = evaluate_student(model, [Sentence(["anna", "berg"], ["B-PER", "I-PER"])])
    assert scores["f1"] == 1.0


def test_student_checkpoint_is_not_resumed_with_another_teachers_logits(tmp_path: Path) -> None:
    labeled = _examples(24, seed=1, logits_seed=1)
    unlabeled = _examples(24, seed=2, logits_seed=1, tags=False)
    cfg = DistillConfig(mode="kd", epochs=2, min_steps=0, batch_size=8, patience=10)
    _train(cfg, labeled, unlabeled, tmp_path / "a", checkpoint=tmp_path / "ckpt")
    resumed = Recorder()
    _train(cfg, labeled, unlabeled, tmp_path / "a", resumed, checkpoint=tmp_path / "ckpt")
    assert resumed.epochs == []  # same teacher, same data: the ended run is not redone
    other_teacher = _examples(24, seed=1, logits_seed=2), _examples(24, seed=2, logits_seed=2, tags=False)
    fresh = Recorder()
    _train(cfg, *other_teacher, tmp_path / "a", fresh, checkpoint=tmp_path / "ckpt")
    assert [e for e, _ in fresh.epochs] == [1, 2]  # another teacher's logits: trained afresh


@pytest.mark.parametrize("mode", ["kd", "kd_pseudo"])
def test_no_unlabeled_batches_with_ratio_zero(tmp_path: Path, mode: str) -> None:
    cfg = DistillConfig(mode=mode, epochs=1, min_steps=0, batch_size=8, unlabeled_ratio=0.0)
    progress = Recorder()
    _train(cfg, _examples(16, seed=1), _examples(16, seed=2, tags=False), tmp_path / "s", progress)
    assert len(progress.steps) == 2


def test_batch_loss_is_gold_cross_entropy_plus_weighted_distillation_by_hand() -> None:
    from torch.nn.functional import cross_entropy

    from tagdistill.losses import distill_loss
    from tagdistill.train import _batch_loss

    torch.manual_seed(0)
    batch = _examples(3, seed=4)  # sentences of different lengths: padding must teach nothing
    vocab = Vocab.build([e.tokens for e in batch], LABELS, SMALL)
    model = NeuralTagger(SMALL, vocab).eval()  # no dropout: the two passes see the same scores
    cfg = DistillConfig(mode="kd", student_weight=0.7, distill_weight=0.3, temperature=2.0)
    emissions = model(*vocab.encode([e.tokens for e in batch]))
    words = torch.cat([emissions[i, : len(e.tokens)] for i, e in enumerate(batch)])  # (N, L) real words
    gold = torch.tensor([t for e in batch for t in e.tags])
    teacher = torch.cat([e.teacher for e in batch])
    expected = 0.7 * cross_entropy(words, gold) + 0.3 * distill_loss(words, teacher, "kl", 2.0)
    assert _batch_loss(model, batch, cfg).item() == pytest.approx(expected.item(), rel=1e-5)
    alone = cfg.model_copy(update={"mode": "alone"})  # the baseline ignores the teacher
    gold_only = 0.7 * cross_entropy(words, gold).item()
    assert _batch_loss(model, batch, alone).item() == pytest.approx(gold_only, rel=1e-5)
