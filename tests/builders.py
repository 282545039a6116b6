"""Builders of test data for the service tests: a tiny random BERT teacher, the sample files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

SAMPLE = Path(__file__).resolve().parents[1] / "tagdistill" / "sample"
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def tiny_bert(folder: Path, words: list[str]) -> Path:
    """A randomly initialised 1-layer BERT with a WordPiece vocabulary of ``words`` and characters.

    Built locally (no download), so teacher fine-tuning in tests takes seconds.
    """
    from transformers import BertConfig, BertModel, BertTokenizerFast

    chars = sorted({c for w in words for c in w})
    vocab = SPECIALS + sorted({w.lower() for w in words}) + chars + [f"##{c}" for c in chars]
    vocab = list(dict.fromkeys(vocab))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    config = BertConfig(
        vocab_size=len(vocab), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=256,
    )
    BertModel(config).save_pretrained(folder)
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True).save_pretrained(folder)
    return folder


def sample_words() -> list[str]:
    words = []
    for line in (SAMPLE / "train.conll").read_text().splitlines():
        if line.strip():
            words.append(line.split()[0])
    return words


def untrained_model(
    store: Any, job_dir: Path, student: Any, dataset_id: str, owner: str | None = None, **fields: Any
) -> Any:
    """``student`` (a NeuralTagger, untrained: no training needed) saved in ``job_dir/student``, a job folder
    of the data directory, and a model record for it added to ``store``; the record (a Model), with
    ``fields`` (name, tags, a report's ``teacher``, ``config``, ...) set over the defaults."""
    from jobstore.records import Model, utcnow
    from tagdistill.config import JobConfig
    from tagdistill.tagger import save_student

    save_student(student, job_dir / "student")
    blank = {"teacher": {}, "student": {}, "speedup": {}, "seconds": {},
             "config": JobConfig(dataset_id=dataset_id)}
    model = Model(
        id=store.new_id("mdl"), job_id=job_dir.name, dataset_id=dataset_id, owner=owner, created_at=utcnow(),
        labels=student.vocab.labels, student_path=f"jobs/{job_dir.name}/student",
        teacher_path=f"jobs/{job_dir.name}/teacher", device="cpu", **{**blank, **fields},
    )
    store.add_model(model)
    return model


def remove_model(store: Any, model: Any) -> None:
    """The record of ``untrained_model`` gone again, so later tests that list models never see it
    (refused while an alias points to it)."""
    store.delete_model(model.id)


def fixed_student(words: list[str], labels: list[str], always: str) -> Any:
    """A small untrained student (a NeuralTagger) whose output layer tags every word ``always``: known
    answers without training."""
    import torch

    from tagdistill.config import StudentConfig
    from tagdistill.student import NeuralTagger
    from tagdistill.vocab import Vocab

    cfg = StudentConfig(hidden=8, word_dim=8, char_dim=4, char_hidden=4)
    student = NeuralTagger(cfg, Vocab.build([words], labels, cfg))
    with torch.no_grad():
        student.out.weight.zero_()
        student.out.bias.copy_(_favouring(labels, always))
    return student


def fixed_teacher(folder: Path, base_model: Path, labels: list[str], always: str) -> Path:
    """A teacher folder (``Teacher.save``) on ``base_model`` (a tiny BERT) whose head tags every word
    ``always``, like ``fixed_student``."""
    import torch

    from tagdistill.teacher import Teacher

    teacher = Teacher.create(str(base_model), labels, torch.device("cpu"))
    with torch.no_grad():
        teacher.model.classifier.weight.zero_()
        teacher.model.classifier.bias.copy_(_favouring(labels, always))
    teacher.save(folder)
    return folder


def _favouring(labels: list[str], always: str) -> Any:
    """Output biases that make ``always`` win whatever the input (the weights being zero)."""
    import torch

    return torch.tensor([10.0 if label == always else 0.0 for label in labels])
