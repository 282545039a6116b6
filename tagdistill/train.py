"""The student's training loop: gold labels, the teacher's cached logits and pseudo-labels.

One loop serves the three modes of ``DistillConfig.mode``:
- ``alone``: cross-entropy (or CRF likelihood) on gold labels only, the baseline;
- ``kd``: plus ``w_d * D(student, teacher)`` on every labeled and unlabeled word;
- ``kd_pseudo``: plus the teacher's argmax tags on unlabeled sentences as hard labels.
Labeled and unlabeled batches alternate, the shorter stream cycling, so neither is starved;
an epoch is one pass over the longer stream. The best dev-F1 student is kept.
"""

from __future__ import annotations

import copy
import itertools
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from tagdistill.checkpoint import fingerprint, load_checkpoint, save_checkpoint
from tagdistill.config import DistillConfig, StudentConfig
from tagdistill.data import Sentence
from tagdistill.losses import distill_loss
from tagdistill.metrics import entity_scores
from tagdistill.progress import Progress
from tagdistill.student import NeuralTagger
from tagdistill.tagger import WEIGHTS_FILE, save_student, student_predict
from tagdistill.vectors import match_vectors, read_vectors
from tagdistill.vocab import IGNORE, Vocab


@dataclass
class Example:
    """A sentence as the student learns from it."""

    tokens: list[str]
    tags: list[int] | None = None  # gold or pseudo label ids (IGNORE = none); None = no hard labels
    teacher: torch.Tensor | None = None  # (n, L) teacher logits, or None


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def length_batches(items: list, size: int, rng: random.Random, key=len) -> list[list]:
    """Batches of similar length in random order: shuffle, sort within pools of 20 batches, split."""
    items = list(items)
    rng.shuffle(items)
    pool = size * 20
    batches = []
    for start in range(0, len(items), pool):
        chunk = sorted(items[start : start + pool], key=key)
        batches.extend(chunk[i : i + size] for i in range(0, len(chunk), size))
    rng.shuffle(batches)
    return batches


def _batch_loss(model: NeuralTagger, batch: list[Example], cfg: DistillConfig) -> torch.Tensor:
    device = next(model.parameters()).device
    words, cases, chars, mask = model.vocab.encode([e.tokens for e in batch], device)
    emissions = model(words, cases, chars, mask)  # (B, T, L)
    B, T, L = emissions.shape
    loss = emissions.new_zeros(())
    if batch[0].tags is not None and cfg.student_weight > 0:
        tags = torch.full((B, T), IGNORE, dtype=torch.long)
        for i, e in enumerate(batch):
            tags[i, : len(e.tags)] = torch.tensor(e.tags, dtype=torch.long)
        tags = tags.to(device)
        if (tags != IGNORE).any():
            loss = loss + cfg.student_weight * model.gold_loss(emissions, tags, mask)
    if cfg.mode != "alone" and cfg.distill_weight > 0 and batch[0].teacher is not None:
        teacher = torch.zeros(B, T, L)
        for i, e in enumerate(batch):
            teacher[i, : len(e.tokens)] = e.teacher
        teacher = teacher.to(device)
        loss = loss + cfg.distill_weight * distill_loss(
            emissions[mask], teacher[mask], cfg.loss, cfg.temperature
        )
    return loss


def evaluate_student(model: NeuralTagger, sentences: list[Sentence]) -> dict:
    pred = student_predict(model.eval(), [s.tokens for s in sentences])
    return entity_scores([s.tags for s in sentences], pred)


def train_student(
    cfg: DistillConfig,
    student_cfg: StudentConfig,
    labels: list[str],
    labeled: list[Example],
    unlabeled: list[Example],
    dev: list[Sentence],
    out_dir: Path,
    device: torch.device,
    progress: Progress,
    seed: int,
    checkpoint_dir: Path | None = None,
) -> tuple[NeuralTagger, dict]:
    """Train a student; the best dev-F1 one is saved to ``out_dir`` and returned with its history.

    With ``checkpoint_dir``, every epoch ends with a checkpoint there (weights, Adam state, RNG
    states, best F1, patience count, history), and a later call with the same arguments continues
    at the next epoch, or returns at once when the loop had ended. The caller deletes the folder.
    """
    set_seed(seed)
    rng = random.Random(seed)
    words, matrix = read_vectors(student_cfg.embeddings) if student_cfg.embeddings else ([], None)
    vocab = Vocab.build([e.tokens for e in labeled + unlabeled], labels, student_cfg, pretrained=words)
    vectors = match_vectors(vocab, words, matrix) if matrix is not None else None
    model = NeuralTagger(student_cfg, vocab, vectors=vectors).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate)
    use_unlabeled = cfg.mode != "alone" and bool(unlabeled)
    n_lab = -(-len(labeled) // cfg.batch_size)
    n_unl = -(-len(unlabeled) // cfg.batch_size) if use_unlabeled else 0
    steps_per_epoch = max(n_lab, n_unl)
    progress.stage("student", steps_per_epoch * cfg.epochs)
    progress.log(f"student: {sum(p.numel() for p in model.parameters()):,} parameters, "
                 f"{len(labeled)} labeled + {len(unlabeled) if use_unlabeled else 0} unlabeled sentences")

    best_f1, best_state, bad_epochs, history = -1.0, None, 0, []
    signature = fingerprint(cfg.model_dump(mode="json"), student_cfg.model_dump(mode="json"), labels, seed,
                            len(labeled), len(unlabeled), len(dev))
    start, ended = 1, False
    resumed = load_checkpoint(checkpoint_dir, signature, model, optimizer, rng) if checkpoint_dir else None
    if resumed is not None:
        best_f1, bad_epochs, history = resumed["best_f1"], resumed["bad_epochs"], resumed["history"]
        start, ended = resumed["epoch"] + 1, resumed["ended"]
        if best_f1 >= 0:
            best_state = load_file(str(Path(out_dir) / WEIGHTS_FILE), device=str(device))
        progress.step(steps_per_epoch * resumed["epoch"])
        progress.log(f"student: resumed at epoch {start} of {cfg.epochs} "
                     f"from the checkpoint of epoch {start - 1}")
    for epoch in range(start, cfg.epochs + 1):
        if ended:
            break
        model.train()
        started = time.perf_counter()
        key = lambda e: len(e.tokens)  # noqa: E731
        lab = itertools.cycle(length_batches(labeled, cfg.batch_size, rng, key)) if labeled else None
        unl = itertools.cycle(length_batches(unlabeled, cfg.batch_size, rng, key)) if n_unl else None
        total = 0.0
        for _ in range(steps_per_epoch):
            loss = sum(_batch_loss(model, next(s), cfg) for s in (lab, unl) if s is not None)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            total += loss.item()
            progress.step(1, loss=loss.item())
        dev_scores = evaluate_student(model, dev)
        record = {
            "epoch": epoch,
            "loss": total / max(steps_per_epoch, 1),
            "dev_f1": dev_scores["f1"],
            "seconds": time.perf_counter() - started,
        }
        history.append(record)
        if dev_scores["f1"] > best_f1:
            best_f1, bad_epochs = dev_scores["f1"], 0
            best_state = copy.deepcopy(model.state_dict())
            save_student(model, out_dir, {"dev_f1": best_f1, "epoch": epoch})
        else:
            bad_epochs += 1
        ended = bad_epochs >= cfg.patience
        if checkpoint_dir is not None:  # before the epoch is reported: a reported epoch is never redone
            state = {"fingerprint": signature, "epoch": epoch, "best_f1": best_f1, "bad_epochs": bad_epochs,
                     "history": history, "ended": ended}
            save_checkpoint(checkpoint_dir, model, optimizer, rng, state)
        progress.epoch(epoch, record)
        if ended:
            progress.log(f"student: no better dev F1 for {bad_epochs} epochs, stopping")
    if best_state is None:  # zero epochs: keep the untrained student
        save_student(model, out_dir, {"dev_f1": None, "epoch": 0})
    else:
        model.load_state_dict(best_state)
    return model.eval(), {"best_dev_f1": best_f1, "epochs": history}
