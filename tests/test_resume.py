"""Epoch checkpoints: a teacher or student run stopped after an epoch and run again in the same
folders continues at the next epoch and ends with the same weights as a run never stopped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_teacher import LABELS, Recorder, one_thread, synthetic, tiny_model  # noqa: F401 (fixtures)

from tagdistill.config import DistillConfig, StudentConfig, TeacherConfig
from tagdistill.finetune import train_teacher
from tagdistill.meta import META_FILE
from tagdistill.train import Example, train_student

CPU = torch.device("cpu")


class Killed(Exception):
    pass


class StopAfter(Recorder):
    """A Progress that raises once epoch ``n`` is reported (that epoch's checkpoint is written)."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n, self.messages = n, []

    def epoch(self, epoch: int, metrics: dict) -> None:
        super().epoch(epoch, metrics)
        if epoch == self.n:
            raise Killed

    def log(self, message: str) -> None:
        self.messages.append(message)


def test_a_teacher_resumes_at_the_next_epoch_and_ends_the_same(tiny_model: Path, tmp_path: Path) -> None:
    train, dev = synthetic(64, seed=1), synthetic(16, seed=2)
    cfg = TeacherConfig(base_model=str(tiny_model), epochs=4, min_steps=0, batch_size=16, learning_rate=5e-3,
                        max_length=32, stride=8)

    def run(folder: Path, progress: Recorder) -> None:
        train_teacher(cfg, train, dev, LABELS, folder / "teacher", CPU, progress, 0, folder / "ckpt")

    run(tmp_path / "whole", Recorder())
    with pytest.raises(Killed):
        run(tmp_path / "cut", StopAfter(2))  # a reported epoch is checkpointed
    assert json.loads((tmp_path / "cut" / "ckpt" / "state.json").read_text())["epoch"] == 2
    again = StopAfter(0)
    run(tmp_path / "cut", again)
    assert [e for e, _ in again.epochs] == [3, 4]
    assert "teacher: resumed at epoch 3 of 4 from the checkpoint of epoch 2" in again.messages
    assert len(again.steps) == 4 * 4  # the steps of the finished epochs are counted at once
    whole, cut = (load_file(str(tmp_path / d / "teacher" / "model.safetensors")) for d in ("whole", "cut"))
    assert whole.keys() == cut.keys() and all(torch.equal(whole[k], cut[k]) for k in whole)
    assert json.loads((tmp_path / "cut" / "teacher" / META_FILE).read_text())["finished"] is True
    assert not (tmp_path / "cut" / "ckpt").exists()  # deleted once the teacher is done

    done = StopAfter(0)
    run(tmp_path / "cut", done)  # a finished teacher is loaded, not trained again
    assert done.epochs == [] and done.stages == [("teacher", 0)] and "already trained" in done.messages[0]

    changed = cfg.model_copy(update={"learning_rate": 1e-3})  # another config is trained afresh
    again = StopAfter(0)
    train_teacher(changed, train, dev, LABELS, tmp_path / "cut" / "teacher", CPU, again, 0, tmp_path / "c2")
    assert [e for e, _ in again.epochs] == [1, 2, 3, 4]


def test_a_student_resumes_at_the_next_epoch_and_ends_the_same(tmp_path: Path) -> None:
    sentences = synthetic(48, seed=3)
    label_id = {label: i for i, label in enumerate(LABELS)}
    torch.manual_seed(1)
    labeled = [Example(s.tokens, [label_id[t] for t in s.tags], torch.randn(len(s.tokens), len(LABELS)))
               for s in sentences]  # fmt: skip
    unlabeled = [Example(s.tokens, None, torch.randn(len(s.tokens), len(LABELS))) for s in synthetic(24, 4)]
    dev = synthetic(16, seed=5)
    cfg = DistillConfig(mode="kd", epochs=4, min_steps=0, batch_size=8, learning_rate=5e-3, patience=10)
    student_cfg = StudentConfig(word_dim=16, char_dim=8, char_hidden=8, hidden=16)

    def run(folder: Path, progress: Recorder) -> dict:
        return train_student(cfg, student_cfg, LABELS, labeled, unlabeled, dev, folder / "student", CPU,
                             progress, 0, folder / "ckpt")[1]

    whole = run(tmp_path / "whole", Recorder())
    with pytest.raises(Killed):
        run(tmp_path / "cut", StopAfter(2))
    again = StopAfter(0)
    history = run(tmp_path / "cut", again)
    assert [e for e, _ in again.epochs] == [3, 4]
    assert "student: resumed at epoch 3 of 4 from the checkpoint of epoch 2" in again.messages
    drop = {"seconds"}
    assert [{k: v for k, v in r.items() if k not in drop} for r in history["epochs"]] == [
        {k: v for k, v in r.items() if k not in drop} for r in whole["epochs"]
    ]
    a, b = (load_file(str(tmp_path / d / "student" / "model.safetensors")) for d in ("whole", "cut"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    ended = StopAfter(0)
    assert run(tmp_path / "cut", ended)["epochs"] == history["epochs"] and ended.epochs == []
