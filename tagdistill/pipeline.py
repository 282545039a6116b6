"""A whole job: teacher, labeling, student, evaluation. Shared by the CLI and the worker.

Folder layout of a job (``work_dir``)::

    teacher/                    the fine-tuned teacher (absent when an existing one is reused)
    teacher_logits.safetensors  the teacher's word-level logits on train and unlabeled, computed once
    checkpoints/                the last epoch of teacher/ and student/ training (tagdistill.checkpoint),
                                so a job run again in the same folder resumes; removed when the job ends
    student/                    the distilled student (model.safetensors + tagdistill.json)
    report.json                 metrics of both, sizes, speeds, the config
"""

from __future__ import annotations

import json
import platform
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from tagdistill.config import DataFiles, JobConfig
from tagdistill.data import Dataset, Sentence, load_dataset
from tagdistill.metrics import bytes_on_disk, count_parameters, entity_scores, words_per_second
from tagdistill.progress import Progress
from tagdistill.pseudo import pseudo_labels
from tagdistill.tagger import student_predict
from tagdistill.teacher import Teacher, train_teacher
from tagdistill.train import Example, resolve_device, set_seed, train_student

SPEED_WORDS = {1: 2000, 32: 10000}  # words timed per pass, by batch size (batch 1 is slow for the teacher)


def run_job(cfg: JobConfig, files: DataFiles, work_dir: Path, progress: Progress) -> dict[str, Any]:
    """Run a job end to end and return its report (also written to ``work_dir/report.json``)."""
    started = time.perf_counter()
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.device)
    data = load_dataset(files)
    set_seed(cfg.seed)
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    teacher_dir = Path(cfg.teacher.path or work_dir / "teacher")
    teacher = obtain_teacher(cfg, data, work_dir, device, progress)
    timings["teacher"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    labeled, unlabeled = label_with_teacher(cfg, teacher, teacher_dir, data, work_dir, progress)
    timings["labeling"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    student, history = train_student(
        cfg.distill, cfg.student, data.labels, labeled, unlabeled, data.dev,
        work_dir / "student", device, progress, cfg.seed, work_dir / "checkpoints" / "student",
    )
    timings["student"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    progress.stage("evaluating", 0)
    report = evaluate_pair(teacher, student, data, {"teacher": teacher_dir, "student": work_dir / "student"})
    timings["evaluating"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - started
    report.update(
        student_training=history,
        seconds=timings,
        device=str(device),
        machine=f"{platform.machine()}, {torch.get_num_threads()} threads",
        config=cfg.model_dump(mode="json"),
    )
    (work_dir / "report.json").write_text(json.dumps(report, indent=1))
    shutil.rmtree(work_dir / "checkpoints", ignore_errors=True)
    return report


def obtain_teacher(
    cfg: JobConfig, data: Dataset, work_dir: Path, device: torch.device, progress: Progress
) -> Teacher:
    """Reuse ``cfg.teacher.path`` when given (its labels must match), else fine-tune one."""
    if cfg.teacher.path is not None:
        teacher = Teacher.load(cfg.teacher.path, device)
        if teacher.labels != data.labels:
            raise ValueError(
                f"teacher {cfg.teacher.path} was trained on labels {teacher.labels}, "
                f"this dataset has {data.labels}"
            )
        progress.stage("teacher", 0)
        progress.log(f"teacher: reusing {cfg.teacher.path}")
        return teacher
    return train_teacher(
        cfg.teacher, data.train, data.dev, data.labels, work_dir / "teacher", device, progress, cfg.seed,
        work_dir / "checkpoints" / "teacher",
    )


def label_with_teacher(
    cfg: JobConfig, teacher: Teacher, teacher_dir: Path, data: Dataset, work_dir: Path, progress: Progress
) -> tuple[list[Example], list[Example]]:
    """The student's examples: gold tags plus the teacher's cached logits (and pseudo-labels)."""
    label_id = {label: i for i, label in enumerate(data.labels)}
    unlabeled = data.unlabeled if cfg.distill.mode != "alone" else []
    logits: list[torch.Tensor | None] = [None] * (len(data.train) + len(unlabeled))
    if cfg.distill.mode != "alone":
        sentences = data.train + unlabeled
        logits = list(cached_logits(teacher, teacher_dir, sentences, cfg, work_dir, progress))
    labeled = [
        Example(s.tokens, [label_id[t] for t in s.tags], t)
        for s, t in zip(data.train, logits[: len(data.train)], strict=True)
    ]
    rest = logits[len(data.train) :]
    hard: list[list[int] | None] = [None] * len(unlabeled)
    if cfg.distill.mode == "kd_pseudo":
        hard = pseudo_labels(rest, cfg.distill.pseudo_threshold, cfg.distill.pseudo_filter)
    return labeled, [Example(s.tokens, h, t) for s, h, t in zip(unlabeled, hard, rest, strict=True)]


def cached_logits(
    teacher: Teacher,
    teacher_dir: Path,
    sentences: list[Sentence],
    cfg: JobConfig,
    work_dir: Path,
    progress: Progress,
) -> list[torch.Tensor]:
    """The teacher's word-level logits, computed once and kept in ``teacher_logits.safetensors``.

    A stored file is used when it came from the same teacher folder and sentence lengths.
    """
    path = work_dir / "teacher_logits.safetensors"
    lengths = [len(s.tokens) for s in sentences]
    source = {"teacher": str(teacher_dir.resolve())}
    if path.is_file():
        with safe_open(str(path), "pt") as f:
            if f.metadata() == source and f.get_tensor("lengths").tolist() == lengths:
                progress.stage("labeling", 0)
                return list(torch.split(f.get_tensor("logits"), lengths))
    progress.stage("labeling", -(-len(sentences) // cfg.teacher.eval_batch_size))
    logits = teacher.word_logits([s.tokens for s in sentences], cfg.teacher.eval_batch_size, progress)
    save_file(
        {"logits": torch.cat(logits).contiguous(), "lengths": torch.tensor(lengths)}, str(path), source
    )
    return logits


def evaluate_pair(
    teacher: Teacher, student: torch.nn.Module, data: Dataset, folders: dict[str, Path]
) -> dict[str, Any]:
    """F1 (dev and test), size and words/s of teacher and student, measured side by side."""
    splits = {"dev": data.dev, **({"test": data.test} if data.test else {})}
    timed = data.test or data.dev
    in_order = [s.tokens for s in timed]
    predictors = {
        "teacher": lambda b: teacher.predict(b, batch_size=32),
        "student": lambda b: student_predict(student, b, batch_size=32),
    }
    report: dict[str, Any] = {}
    for name, predict in predictors.items():
        model = teacher.model if name == "teacher" else student
        report[name] = {
            **{split: entity_scores([s.tags for s in sents], predict([s.tokens for s in sents]))
               for split, sents in splits.items()},
            "parameters": count_parameters(model),
            "bytes_on_disk": bytes_on_disk(folders[name]),
            "words_per_second": {
                "batch_32": words_per_second(
                    predict, in_order, 32, max_words=SPEED_WORDS[32], sort_by_length=True
                ),
                "batch_1": words_per_second(predict, in_order, 1, max_words=SPEED_WORDS[1]),
            },
        }
    t, s = report["teacher"]["words_per_second"], report["student"]["words_per_second"]
    report["speedup"] = {k: s[k] / t[k] if t[k] else None for k in t}
    return report
