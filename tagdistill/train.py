"""The student's training loop: gold labels, the teacher's cached logits and pseudo-labels.

One loop serves the three modes of ``DistillConfig.mode``:
- ``alone``: cross-entropy (or CRF likelihood) on gold labels only, the baseline;
- ``kd``: plus ``w_d * D(student, teacher)`` on every labeled and unlabeled word;
- ``kd_pseudo``: plus the teacher's argmax tags on unlabeled sentences as hard labels.

The budget is the same in every mode: an epoch is one pass over the labeled sentences, and each
optimizer step takes one labeled batch. In the KD modes the same step also takes
``unlabeled_ratio`` unlabeled batches on average, drawn from passes over the unlabeled sentences
that run on across epochs (each pass in a new order, fixed by the seed and the pass number, so a
resumed run draws the same batches). So a distilled student gets the optimizer steps and labeled
passes of the student alone, plus the unlabeled text. Small labeled sets get extra epochs, up to
``min_steps`` steps; dev F1 is then checked every few epochs, ``epochs`` times in all. The best
dev-F1 student is kept.
"""

from __future__ import annotations

import copy
import hashlib
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from torch.nn.utils.rnn import pad_sequence

from tagdistill.batching import epoch_plan, length_batches
from tagdistill.checkpoint import fingerprint, load_checkpoint, save_checkpoint
from tagdistill.config import DistillConfig, StudentConfig
from tagdistill.data import Sentence
from tagdistill.losses import distill_loss
from tagdistill.metrics import entity_scores
from tagdistill.progress import Progress
from tagdistill.schemes import IGNORE
from tagdistill.student import NeuralTagger
from tagdistill.tagger import WEIGHTS_FILE, save_student, student_predict
from tagdistill.vectors import match_vectors, read_vectors
from tagdistill.vocab import Vocab


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


def _batch_loss(model: NeuralTagger, batch: list[Example], cfg: DistillConfig) -> torch.Tensor:
    device = next(model.parameters()).device
    words, cases, chars, mask = model.vocab.encode([e.tokens for e in batch], device)
    emissions = model(words, cases, chars, mask)  # (B, T, L)
    loss = emissions.new_zeros(())
    if batch[0].tags is not None and cfg.student_weight > 0:
        tags = model.vocab.tag_tensor([e.tags for e in batch], device)
        if (tags != IGNORE).any():
            loss = loss + cfg.student_weight * model.gold_loss(emissions, tags, mask)
    if cfg.mode != "alone" and cfg.distill_weight > 0 and batch[0].teacher is not None:
        teacher = pad_sequence([e.teacher for e in batch], batch_first=True).to(device)  # (B, T, L)
        loss = loss + cfg.distill_weight * distill_loss(
            emissions[mask], teacher[mask], cfg.loss, cfg.temperature
        )
    return loss


def evaluate_student(model: NeuralTagger, sentences: list[Sentence]) -> dict:
    pred = student_predict(model.eval(), [s.tokens for s in sentences])
    return entity_scores([s.tags for s in sentences], pred)


def examples_digest(*groups: list[Example]) -> str:
    """A hash of what a student learns from: tokens, hard labels and teacher logits of every example.

    It goes into the student's checkpoint fingerprint, so a checkpoint made with another teacher's
    logits (or other data) is never resumed.
    """
    h = hashlib.sha256()
    for group in groups:
        h.update(b"|group|")
        for e in group:
            h.update("\x1f".join(e.tokens).encode() + b"\x1e")
            h.update(repr(e.tags).encode())
            if e.teacher is not None:
                h.update(e.teacher.detach().float().contiguous().numpy().tobytes())
    return h.hexdigest()[:24]


class UnlabeledStream:
    """Unlabeled batches for step ``i``: ``floor((i+1)*r) - floor(i*r)`` of them (r = the ratio), read
    from consecutive passes over the sentences; pass ``p`` is in the order ``length_batches`` gives
    with ``Random(f"{seed}:{p}")``. Stateless given the step, so a resumed run draws the same batches."""

    def __init__(self, examples: list[Example], batch_size: int, ratio: float, seed: int) -> None:
        self.examples, self.batch_size, self.ratio, self.seed = examples, batch_size, ratio, seed
        self.per_pass = math.ceil(len(examples) / batch_size)
        self._pass: tuple[int, list[list[Example]]] | None = None

    def batches(self, step: int) -> list[list[Example]]:
        if not self.per_pass:
            return []
        first, end = math.floor(step * self.ratio), math.floor((step + 1) * self.ratio)
        return [self._batch(k) for k in range(first, end)]

    def _batch(self, k: int) -> list[Example]:
        p, i = divmod(k, self.per_pass)
        if self._pass is None or self._pass[0] != p:
            rng = random.Random(f"{self.seed}:{p}")
            self._pass = (p, length_batches(self.examples, self.batch_size, rng, lambda e: len(e.tokens)))
        return self._pass[1][i]


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
    stage: str = "student",
) -> tuple[NeuralTagger, dict]:
    """Train a student; the best dev-F1 one is saved to ``out_dir`` and returned with its history.

    ``stage`` names the progress stage (``student``, or ``baseline`` for the comparison student).
    With ``checkpoint_dir``, every dev check ends with a checkpoint there (weights, Adam state, RNG
    states, best F1, patience count, history), and a later call with the same arguments continues
    after it, or returns at once when the loop had ended. The caller deletes the folder.
    """
    set_seed(seed)
    rng = random.Random(seed)
    words, matrix = read_vectors(student_cfg.embeddings) if student_cfg.embeddings else ([], None)
    use_unlabeled = cfg.mode != "alone" and bool(unlabeled) and cfg.unlabeled_ratio > 0
    unlabeled = unlabeled if use_unlabeled else []
    vocab = Vocab.build([e.tokens for e in labeled + unlabeled], labels, student_cfg, pretrained=words)
    vectors = match_vectors(vocab, words, matrix) if matrix is not None else None
    model = NeuralTagger(student_cfg, vocab, vectors=vectors).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate)
    stream = UnlabeledStream(unlabeled, cfg.batch_size, cfg.unlabeled_ratio, seed)
    per_epoch = math.ceil(len(labeled) / cfg.batch_size)
    epochs, check_every = epoch_plan(cfg.epochs, cfg.min_steps, per_epoch)
    progress.stage(stage, per_epoch * epochs)
    progress.log(f"{stage}: {sum(p.numel() for p in model.parameters()):,} parameters, "
                 f"{len(labeled)} labeled + {len(unlabeled)} unlabeled sentences, {epochs} epochs "
                 f"of {per_epoch} steps" + (f" (raised from {cfg.epochs} to reach min_steps={cfg.min_steps}; "
                                             f"dev F1 every {check_every})" if epochs > cfg.epochs else ""))

    best_f1, best_state, bad_checks, history = -1.0, None, 0, []
    signature = fingerprint(cfg.model_dump(mode="json"), student_cfg.model_dump(mode="json"), labels, seed,
                            examples_digest(labeled, unlabeled), len(dev))
    start, ended = 1, False
    resumed = load_checkpoint(checkpoint_dir, signature, model, optimizer, rng) if checkpoint_dir else None
    if resumed is not None:
        best_f1, bad_checks, history = resumed["best_f1"], resumed["bad_epochs"], resumed["history"]
        start, ended = resumed["epoch"] + 1, resumed["ended"]
        if best_f1 >= 0:
            best_state = load_file(str(Path(out_dir) / WEIGHTS_FILE), device=str(device))
        progress.step(per_epoch * resumed["epoch"])
        progress.log(f"{stage}: resumed at epoch {start} of {epochs} "
                     f"from the checkpoint of epoch {start - 1}")
    key = lambda e: len(e.tokens)  # noqa: E731
    started, total, steps = time.perf_counter(), 0.0, 0
    for epoch in range(start, epochs + 1):
        if ended:
            break
        model.train()
        for i, batch in enumerate(length_batches(labeled, cfg.batch_size, rng, key)):
            step = (epoch - 1) * per_epoch + i
            loss = _batch_loss(model, batch, cfg)
            for extra in stream.batches(step):
                loss = loss + _batch_loss(model, extra, cfg)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            total, steps = total + loss.item(), steps + 1
            progress.step(1, loss=loss.item())
        if epoch % check_every and epoch != epochs:
            continue
        dev_scores = evaluate_student(model, dev)
        record = {
            "epoch": epoch,
            "steps": epoch * per_epoch,
            "loss": total / max(steps, 1),
            "dev_f1": dev_scores["f1"],
            "seconds": time.perf_counter() - started,
        }
        started, total, steps = time.perf_counter(), 0.0, 0
        history.append(record)
        if dev_scores["f1"] > best_f1:
            best_f1, bad_checks = dev_scores["f1"], 0
            best_state = copy.deepcopy(model.state_dict())
            save_student(model, out_dir, {"dev_f1": best_f1, "epoch": epoch})
        else:
            bad_checks += 1
        ended = bad_checks >= cfg.patience
        if checkpoint_dir is not None:  # before the epoch is reported: a reported epoch is never redone
            state = {"fingerprint": signature, "epoch": epoch, "best_f1": best_f1, "bad_epochs": bad_checks,
                     "history": history, "ended": ended}
            save_checkpoint(checkpoint_dir, model, optimizer, rng, state)
        progress.epoch(epoch, record)
        if ended:
            progress.log(f"{stage}: no better dev F1 for {bad_checks} checks, stopping")
    if best_state is None:  # zero epochs: keep the untrained student
        save_student(model, out_dir, {"dev_f1": None, "epoch": 0})
    else:
        model.load_state_dict(best_state)
    return model.eval(), {"best_dev_f1": best_f1, "epochs": history}
