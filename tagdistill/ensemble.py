"""Teacher ensembles: several teachers' word-level log-probabilities averaged (Hinton et al. 2015).

An ``Ensemble`` answers what the pipeline asks of one ``Teacher`` (``labels``, ``word_logits``, ``predict``,
``digest``, ``model``), so the logit cache, the distillation loss and the pseudo-labels take it unchanged.
Its "logits" are the mean over members of each member's log-probabilities (log_softmax of its word
scores, in the dataset's label order): softmax of them is the members' renormalised geometric mean
(at T = 1), and log_softmax of them gives them back, so KD with any temperature reads them as logits.

A member is a teacher folder (``Teacher``: tagdistill's, or a Hugging Face one fine-tuned elsewhere) or a
student folder (``StudentTeacher``: an earlier job's student teaching, its probabilities being the softmax
of its scores or a CRF's marginals). Fine-tuning members and building the ensemble is the pipeline's
(``tagdistill.pipeline.obtain_ensemble``).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from tagdistill.checkpoint import fingerprint
from tagdistill.meta import META_FILE, read_meta
from tagdistill.progress import Progress
from tagdistill.schemes import argmax_tags
from tagdistill.student import NeuralTagger
from tagdistill.tagger import WEIGHTS_FILE, load_student, model_folder, student_predict

# A CRF's marginal is exactly 0 for a label its IOB2 constraints forbid; its log would be -inf, and the
# KL term 0 * (-inf) NaN. Probabilities are floored here instead (log 1e-12 = -27.6: still never chosen).
PROB_FLOOR = 1e-12


class WordTeacher(Protocol):
    """What the pipeline uses of a teacher: ``Teacher``, ``StudentTeacher`` and ``Ensemble`` have it."""

    labels: list[str]
    model: torch.nn.Module

    def word_logits(
        self, sentences: Sequence[Sequence[str]], batch_size: int = 64, progress: Progress | None = None
    ) -> list[Tensor]: ...

    def predict(self, sentences: Sequence[Sequence[str]], batch_size: int = 64) -> list[list[str]]: ...

    def digest(self) -> str: ...


class StudentTeacher:
    """A student folder as an ensemble member: its word "logits" are the log of its label probabilities."""

    def __init__(self, model: NeuralTagger, folder: Path) -> None:
        self.model = model
        self.folder = folder
        self.labels = list(model.vocab.labels)

    def word_logits(
        self, sentences: Sequence[Sequence[str]], batch_size: int = 64, progress: Progress | None = None
    ) -> list[Tensor]:
        """One (n_words, L) tensor of log-probabilities per sentence, in the given order; one
        ``progress.step`` per batch, as ``Teacher.word_logits``."""
        out = [torch.zeros(len(s), len(self.labels)) for s in sentences]
        order = sorted(range(len(sentences)), key=lambda i: len(sentences[i]))  # less padding
        for start in range(0, len(order), batch_size):
            chosen = [i for i in order[start : start + batch_size] if sentences[i]]
            if chosen:
                _, probs = self.model.tag_ids([list(sentences[i]) for i in chosen], probabilities=True)
                for row, i in enumerate(chosen):
                    out[i] = torch.from_numpy(probs[row, : len(sentences[i])]).clamp_min(PROB_FLOOR).log()
            if progress is not None:
                progress.step(1)
        return out

    def predict(self, sentences: Sequence[Sequence[str]], batch_size: int = 64) -> list[list[str]]:
        """Its own tags (a CRF student's Viterbi path), as it would serve them."""
        return student_predict(self.model, [list(s) for s in sentences], batch_size)

    def digest(self) -> str:
        """A hash of its labels and weights file (what its probabilities depend on besides the words)."""
        weights = hashlib.sha256((self.folder / WEIGHTS_FILE).read_bytes()).hexdigest()
        return fingerprint("student", self.labels, weights)


def load_member(path: Path, device: torch.device, labels: list[str]) -> WordTeacher:
    """A student folder, a job folder (its served student) or a teacher folder (tagdistill's, or a Hugging
    Face one fine-tuned elsewhere: ``Teacher.load`` gives its logits in the order of ``labels``, the
    dataset's) as an ensemble member."""
    folder = model_folder(path)
    if (folder / META_FILE).is_file() and read_meta(folder).get("kind") == "student":
        return StudentTeacher(load_student(folder, device), folder)
    from tagdistill.teacher import Teacher  # transformers is slow to import: only when needed

    return Teacher.load(folder, device, labels=labels)


def label_order(member: list[str], labels: list[str], name: str) -> list[int]:
    """The column of ``member``'s scores for each of ``labels`` (the dataset's order); ValueError naming
    the member when its labels are not the dataset's."""
    if sorted(member) != sorted(labels) or len(set(member)) != len(member):
        raise ValueError(f"{name} was trained on labels {member}, this dataset has {labels}")
    return [member.index(label) for label in labels]


def average_log_probs(members: Sequence[Sequence[Tensor]]) -> list[Tensor]:
    """Per sentence, the mean over members of log_softmax of their (n_words, L) word scores."""
    return [
        torch.stack([F.log_softmax(scores.float(), dim=-1) for scores in per_member]).mean(dim=0)
        for per_member in zip(*members, strict=True)
    ]


class Ensemble:
    """Teachers that teach as one: their word log-probabilities averaged, in the dataset's label order."""

    def __init__(self, members: Sequence[WordTeacher], labels: list[str], names: Sequence[str]) -> None:
        self.members = list(members)
        self.names = list(names)  # how errors and logs name each member
        self.labels = list(labels)
        self.orders = [label_order(m.labels, self.labels, n) for m, n in zip(members, names, strict=True)]
        self.model = torch.nn.ModuleList(m.model for m in members)  # its parameters are all the members'

    def word_logits(
        self, sentences: Sequence[Sequence[str]], batch_size: int = 64, progress: Progress | None = None
    ) -> list[Tensor]:
        """The averaged log-probabilities (n_words, L) per sentence. Each member takes its own pass:
        ``passes(len(sentences), batch_size)`` progress steps in all."""
        per_member = [
            [scores[:, order] for scores in member.word_logits(sentences, batch_size, progress)]
            for member, order in zip(self.members, self.orders, strict=True)
        ]
        return average_log_probs(per_member)

    def passes(self, n_sentences: int, batch_size: int) -> int:
        """The progress steps of ``word_logits`` on ``n_sentences``."""
        return len(self.members) * math.ceil(n_sentences / batch_size)

    def predict(self, sentences: Sequence[Sequence[str]], batch_size: int = 64) -> list[list[str]]:
        """IOB2 tags by argmax over the averaged log-probabilities, made valid by ``repair_iob2``."""
        return [
            argmax_tags(scores, self.labels)
            for scores in self.word_logits(sentences, batch_size)
        ]

    def digest(self) -> str:
        """A hash of the members' digests and the label order: the cached logits' key."""
        return fingerprint("ensemble", self.labels, [m.digest() for m in self.members])
