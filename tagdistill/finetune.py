"""Fine-tuning the teacher: AdamW with warm-up, length-bucketed window batches, best dev epoch kept,
epoch checkpoints to resume from."""

from __future__ import annotations

import math
import random
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import get_linear_schedule_with_warmup

from tagdistill.alignment import make_windows
from tagdistill.batching import epoch_plan, length_batches
from tagdistill.checkpoint import fingerprint, load_checkpoint, save_checkpoint
from tagdistill.config import TeacherConfig
from tagdistill.data import Sentence
from tagdistill.meta import read_meta, write_meta
from tagdistill.metrics import entity_scores
from tagdistill.progress import Progress
from tagdistill.schemes import label_index
from tagdistill.teacher import Teacher


def train_teacher(
    cfg: TeacherConfig,
    train: Sequence[Sentence],
    dev: Sequence[Sentence],
    labels: list[str],
    out_dir: Path,
    device: torch.device,
    progress: Progress,
    seed: int,
    checkpoint_dir: Path | None = None,
) -> Teacher:
    """Fine-tune ``cfg.base_model`` on ``train`` (Sentences with IOB2 tags) and return the epoch with the
    best dev F1 (the earlier one on a tie), saved in ``out_dir``. ``cfg.path`` is not consulted here.

    AdamW (no weight decay on biases and LayerNorm weights, the 1-d tensors), linear warm-up then
    linear decay, gradient norm clipped at 1.0. Each step is a batch of ``cfg.batch_size`` windows of
    similar length, padded to the longest; batches come in a seeded random order each epoch.
    On a small dataset the epochs are raised until there are ``cfg.min_steps`` steps in all (dev F1
    is then checked every few epochs, ``cfg.epochs`` times in all, and after the last);
    ``epochs=0`` saves the pretrained encoder with its untrained head.

    With ``checkpoint_dir``, training can be resumed after the process is killed: every epoch ends
    with a checkpoint there (weights, AdamW and scheduler state, RNG states; ``tagdistill.checkpoint``)
    and a later call with the same arguments continues at the next epoch with the same batches. A
    teacher that finished (``finished`` in ``out_dir``'s ``tagdistill.json``, with the same config
    fingerprint) is loaded instead of trained; the checkpoint is deleted once the teacher is done.
    """
    if not dev:
        raise ValueError("the teacher needs dev sentences to choose its best epoch")
    signature = fingerprint(cfg.model_dump(mode="json"), seed, labels, len(train), len(dev))
    if checkpoint_dir is not None and _finished(out_dir, signature):
        progress.stage("teacher", 0)
        progress.log(f"teacher: already trained in {out_dir}, reused")
        return Teacher.load(out_dir, device)
    torch.manual_seed(seed)  # the new head and dropout
    rng = random.Random(seed)  # batch order
    teacher = Teacher.create(cfg.base_model, labels, device, max_length=cfg.max_length, stride=cfg.stride)
    tag_ids = _tag_ids(train, labels)
    windows = make_windows(teacher.tokenizer, [s.tokens for s in train], cfg.max_length, cfg.stride)
    if cfg.epochs and not windows:
        raise ValueError("the teacher has no training words")
    per_epoch = math.ceil(len(windows) / cfg.batch_size)
    epochs, eval_every = epoch_plan(cfg.epochs, cfg.min_steps, per_epoch)
    total = per_epoch * epochs
    model = teacher.model
    optimizer = torch.optim.AdamW(
        [
            {"params": [p for p in model.parameters() if p.ndim >= 2], "weight_decay": cfg.weight_decay},
            {"params": [p for p in model.parameters() if p.ndim < 2], "weight_decay": 0.0},
        ],
        lr=cfg.learning_rate,
    )
    scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * total), total)
    progress.stage("teacher", total)
    best: float | None = None
    if epochs > cfg.epochs:
        progress.log(f"teacher: {epochs} epochs instead of {cfg.epochs}, to reach min_steps={cfg.min_steps}; "
                     f"dev F1 every {eval_every} epochs")
    start = 1
    resumed = load_checkpoint(checkpoint_dir, signature, model, optimizer, rng) if checkpoint_dir else None
    if resumed is not None:
        scheduler.load_state_dict(resumed["scheduler"])
        best = teacher.dev_f1 = resumed["best"]
        start = resumed["epoch"] + 1
        progress.step(per_epoch * resumed["epoch"])
        progress.log(f"teacher: resumed at epoch {start} of {epochs} "
                     f"from the checkpoint of epoch {start - 1}")
    for epoch in range(start, epochs + 1):
        started = time.perf_counter()
        model.train()
        losses = []
        for batch in length_batches(windows, cfg.batch_size, rng, lambda w: len(w.input_ids), None):
            with teacher.autocast():
                loss = teacher.forward(batch, tag_ids).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.item())
            progress.step(1, loss=losses[-1])
        metrics: dict[str, float | None] = {"loss": sum(losses) / len(losses)}
        if epoch % eval_every == 0 or epoch == epochs:
            scores = _dev_scores(teacher, dev, cfg.eval_batch_size)
            if best is None or scores["f1"] > best:
                best = teacher.dev_f1 = scores["f1"]
                teacher.save(out_dir)
            metrics.update({f"dev_{k}": scores[k] for k in ("f1", "precision", "recall")})
        if checkpoint_dir is not None:  # before the epoch is reported: a reported epoch is never redone
            state = {"fingerprint": signature, "epoch": epoch, "best": best,
                     "scheduler": scheduler.state_dict()}
            save_checkpoint(checkpoint_dir, model, optimizer, rng, state)
        progress.epoch(epoch, {**metrics, "best_dev_f1": best, "seconds": time.perf_counter() - started})
    if best is None:  # epochs == 0
        teacher.dev_f1 = _dev_scores(teacher, dev, cfg.eval_batch_size)["f1"]
        teacher.save(out_dir)
    if checkpoint_dir is not None:
        meta = read_meta(out_dir, "teacher")
        write_meta(out_dir, "teacher", {**meta, "finished": True, "fingerprint": signature})
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
    return Teacher.load(out_dir, device)


def _finished(out_dir: Path, signature: str) -> bool:
    """True when ``out_dir`` holds a teacher that ``train_teacher`` finished with this config."""
    try:
        meta = read_meta(out_dir, "teacher")
    except (OSError, ValueError):
        return False
    return meta.get("finished") is True and meta.get("fingerprint") == signature


def _tag_ids(sentences: Sequence[Sentence], labels: list[str]) -> list[list[int]]:
    index = label_index(labels)
    ids = []
    for s in sentences:
        if s.tags is None:
            raise ValueError("the teacher trains on labeled sentences only")
        unknown = set(s.tags) - index.keys()
        if unknown:
            raise ValueError(f"tags {sorted(unknown)} are not among the labels {labels}")
        ids.append([index[t] for t in s.tags])
    return ids


def _dev_scores(teacher: Teacher, dev: Sequence[Sentence], batch_size: int) -> dict[str, Any]:
    gold = [s.tags for s in dev]
    if any(tags is None for tags in gold):
        raise ValueError("dev sentences need tags")
    return entity_scores(gold, teacher.predict([s.tokens for s in dev], batch_size))
