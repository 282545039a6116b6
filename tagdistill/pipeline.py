"""A whole job: teacher, labeling, baseline, student, evaluation. Shared by the CLI and the worker.

Folder layout of a job (``work_dir``)::

    teacher/                    the fine-tuned teacher (absent when an existing one is reused)
    teachers/<i>/               with teacher.ensemble: member i when it is fine-tuned here
    teacher_logits.safetensors  the teacher's word-level logits on train and unlabeled, computed once,
                                keyed by a hash of the teacher's weights and of the sentences (an
                                ensemble's: its members' averaged log-probabilities, tagdistill.ensemble)
    checkpoints/                the last dev check of teacher/ and student training (tagdistill.checkpoint),
                                so a job run again in the same folder resumes; removed when the job ends
    baseline/                   the same student trained alone with the same budget, for comparison;
                                trained first, it may teach beside the teacher (``co_teach``)
    distilled/                  the student trained with the teacher (KD modes with the baseline on)
    student/                    the served student: the better of distilled/ and baseline/ on dev
                                (or the only student: mode "alone", or distill.baseline off), with
                                model.onnx and model.int8.onnx for ONNX Runtime (tagdistill.export)
    report.json                 metrics of every model, the distillation gain, which student is served
                                and why, the int8 student's F1, warnings, sizes, speeds, the config
                                (after a run stopped after labeling: only the stages' seconds so far)

A run may stop after labeling (``stop_after="labeling"``): the teacher and the cached logits are then
in the folder, and a later run there (on another machine, once the folder is copied) finds both,
reuses them and goes on with the student; its report adds the first run's stage times to its own.
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

from tagdistill.analysis import analyse
from tagdistill.checkpoint import fingerprint
from tagdistill.config import DataFiles, JobConfig
from tagdistill.data import Dataset, Sentence, load_dataset
from tagdistill.ensemble import (
    Ensemble,
    StudentTeacher,
    WordTeacher,
    average_log_probs,
    label_order,
    load_member,
)
from tagdistill.export import INT8_FILE, OnnxStudent, export_student
from tagdistill.finetune import train_teacher
from tagdistill.metrics import entity_scores
from tagdistill.progress import Progress
from tagdistill.pseudo import pseudo_labels
from tagdistill.report import gain, model_entry, scores, speeds, weak_types
from tagdistill.schemes import argmax_tags, label_index
from tagdistill.tagger import model_folder, student_predict
from tagdistill.teacher import Teacher
from tagdistill.train import Example, resolve_device, set_seed, train_student


def run_job(
    cfg: JobConfig, files: DataFiles, work_dir: Path, progress: Progress, stop_after: str | None = None
) -> dict[str, Any]:
    """Run a job end to end and return its report (also written to ``work_dir/report.json``); with
    ``stop_after="labeling"``, only the teacher and labeling stages (the report then has their seconds)."""
    started = time.perf_counter()
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.device)
    data = load_dataset(files)
    set_seed(cfg.seed)
    earlier = _stopped_run_seconds(work_dir)
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    teacher = obtain_teacher(cfg, data, work_dir, device, progress)
    timings["teacher"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    labeled, unlabeled = label_with_teacher(cfg, teacher, data, work_dir, progress)
    timings["labeling"] = time.perf_counter() - t0
    for stage in ("teacher", "labeling"):  # a run stopped after labeling did most of these stages' work
        timings[stage] += earlier.get(stage, 0.0)
    if stop_after == "labeling":
        timings["total"] = time.perf_counter() - started
        partial = {"stopped_after": "labeling", "seconds": timings}
        (work_dir / "report.json").write_text(json.dumps(partial, indent=1))
        return partial

    # With the baseline on, the same student alone (same budget) and the KD student are both trained: the
    # baseline first, so that it can teach beside the teacher.
    compare = cfg.distill.mode != "alone" and cfg.distill.baseline
    trained: dict[str, tuple[torch.nn.Module, Path]] = {}
    histories: dict[str, dict[str, Any]] = {}
    teaching: dict[str, Any] | None = None
    teacher_tags: dict[str, list[list[str]]] = {}  # by split, when co-teaching tagged dev and test already
    t0 = time.perf_counter()
    if compare:
        alone = cfg.distill.model_copy(update={"mode": "alone"})
        gold_only = [Example(e.tokens, e.tags) for e in labeled]
        model, histories["baseline"] = train_student(
            alone, cfg.student, data.labels, gold_only, [], data.dev, work_dir / "baseline", device,
            progress, cfg.seed, work_dir / "checkpoints" / "baseline", stage="baseline",
        )
        trained["baseline"] = (model, work_dir / "baseline")
        if cfg.distill.baseline_teaches:
            baseline = StudentTeacher(model, work_dir / "baseline")
            labeled, unlabeled, teaching = co_teach(
                cfg, teacher, baseline, data, labeled, unlabeled, progress, teacher_tags
            )
    else:
        progress.stage("baseline", 0)
        why = 'mode "alone"' if cfg.distill.mode == "alone" else "distill.baseline is off"
        progress.log(f"baseline: not trained ({why})")
    timings["baseline"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    name = "distilled" if compare else "student"
    model, histories[name] = train_student(
        cfg.distill, cfg.student, data.labels, labeled, unlabeled, data.dev,
        work_dir / name, device, progress, cfg.seed, work_dir / "checkpoints" / "student",
    )
    trained[name] = (model, work_dir / name)
    timings["student"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    folders = teacher_folders(cfg, work_dir)
    report, predicted = evaluate(teacher, folders, trained, data, progress, teacher_tags)
    if compare:
        report["distillation_gain"] = gain(report["distilled"], report["baseline"])
        if teaching is not None:
            report["teaching"] = teaching
        report["served"] = choose_served(report)
        served = report["served"]["student"]
        shutil.rmtree(work_dir / "student", ignore_errors=True)
        shutil.copytree(work_dir / served, work_dir / "student")
        report["student"] = dict(report[served])
        progress.log(f"serving the {served} student: {report['served']['reason']}")
    report["onnx"], int8 = export_served(work_dir / "student", data, progress)
    if int8 is not None:
        report["student_int8"] = {**int8, "f1_change": gain(int8, report["student"])}
    split = "test" if data.test else "dev"  # the error analysis: the served student as "student"
    served = report["served"]["student"] if compare else name
    on_split = {"student" if who == served else who: tags[split] for who, tags in predicted.items()}
    report["analysis"] = analyse(split, data.test or data.dev, on_split)
    report["warnings"] = weak_types(report["teacher"], report["student"])
    if "error" in report["onnx"]:
        report["warnings"].append(f"no ONNX export ({report['onnx']['error']}): the student runs on torch")
    for warning in report["warnings"]:
        progress.log(f"warning: {warning}")
    t, s = report["teacher"]["words_per_second"], report["student"]["words_per_second"]
    report["speedup"] = {k: s[k] / t[k] if t[k] else None for k in t}
    timings["evaluating"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - started + earlier.get("total", 0.0)
    report.update(
        student_training=histories,
        seconds=timings,
        device=str(device),
        machine=f"{platform.machine()}, {torch.get_num_threads()} threads",
        config=cfg.model_dump(mode="json"),
    )
    (work_dir / "report.json").write_text(json.dumps(report, indent=1))
    shutil.rmtree(work_dir / "checkpoints", ignore_errors=True)
    return report


def _stopped_run_seconds(work_dir: Path) -> dict[str, float]:
    """The stage times of a run that stopped after labeling in ``work_dir`` (none otherwise)."""
    try:
        report = json.loads((work_dir / "report.json").read_text())
    except (OSError, ValueError):
        return {}
    return report["seconds"] if report.get("stopped_after") == "labeling" else {}


def choose_served(report: dict[str, Any]) -> dict[str, str]:
    """The student to serve: the distilled one unless the baseline has the higher dev F1 (test is
    never looked at), with the reason in words."""
    dev = {name: report[name]["dev"]["f1"] for name in ("distilled", "baseline")}
    served = "distilled" if dev["distilled"] >= dev["baseline"] else "baseline"
    other = "baseline" if served == "distilled" else "distilled"
    return {
        "student": served,
        "reason": f"the {served} student has the higher dev F1 ({dev[served]:.4f} against "
                  f"{dev[other]:.4f} for the {other} one)" if dev[served] > dev[other] else
                  f"both students have dev F1 {dev[served]:.4f}: the distilled one is kept",
    }


def export_served(folder: Path, data: Dataset, progress: Progress) -> tuple[dict[str, Any], dict | None]:
    """The served student as ONNX, fp32 and int8, checked against torch on dev sentences, and the int8
    one's scores on dev and test (None when the export failed: the torch student still serves)."""
    try:
        info = export_student(folder, int8=True, sentences=[s.tokens for s in data.dev])
    except Exception as exc:  # an optional artifact: the job keeps its students and says why
        progress.log(f"ONNX export failed: {type(exc).__name__}: {exc}")
        return {"error": f"{type(exc).__name__}: {exc}"}, None
    progress.log(f"ONNX export: {info['fp32']['bytes']} bytes fp32, {info['int8']['bytes']} int8; "
                 f"largest difference from torch {info['fp32']['max_abs_diff']:.2g}")
    int8 = OnnxStudent(folder / INT8_FILE)
    splits = {"dev": data.dev, **({"test": data.test} if data.test else {})}
    entry = scores(lambda b: student_predict(int8, b, batch_size=32), splits)
    return info, {**entry, "bytes_on_disk": info["int8"]["bytes"]}


def obtain_teacher(
    cfg: JobConfig, data: Dataset, work_dir: Path, device: torch.device, progress: Progress
) -> Teacher | Ensemble:
    """Reuse ``cfg.teacher.path`` when given (its labels must match), else fine-tune one; with
    ``cfg.teacher.ensemble``, each member (``obtain_ensemble``)."""
    if cfg.teacher.ensemble:
        return obtain_ensemble(cfg, data, work_dir, device, progress)
    if cfg.teacher.path is not None:
        teacher = Teacher.load(cfg.teacher.path, device, labels=data.labels)
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


def obtain_ensemble(
    cfg: JobConfig, data: Dataset, work_dir: Path, device: torch.device, progress: Progress
) -> Ensemble:
    """The members of ``cfg.teacher.ensemble``: existing folders loaded first (a member with other labels
    fails before any training, naming it; its label order may differ), then the others fine-tuned in turn into
    ``teachers/<i>/``, each with the teacher's settings, its base model and its seed."""
    members: dict[int, WordTeacher] = {}
    specs = cfg.teacher.members(cfg.seed)
    names = [f"teacher.ensemble[{i}]" + (f" ({m.path})" if m.path else "") for i, m in enumerate(specs)]
    for i, spec in enumerate(specs):
        if spec.path is not None:
            try:
                members[i] = load_member(spec.path, device, data.labels)
            except ValueError as exc:  # a folder that does not load, or a teacher with other labels
                raise ValueError(f"{names[i]}: {exc}") from exc
            label_order(members[i].labels, data.labels, names[i])
    folders = teacher_folders(cfg, work_dir)
    for i, spec in enumerate(specs):
        if spec.path is not None:
            progress.stage("teacher", 0)
            progress.log(f"teacher {i + 1} of {len(specs)}: reusing {spec.path}")
            continue
        progress.log(f"teacher {i + 1} of {len(specs)}: fine-tuning {spec.base_model} with seed {spec.seed}")
        settings = cfg.teacher.model_copy(update={"base_model": spec.base_model, "ensemble": []})
        members[i] = train_teacher(
            settings, data.train, data.dev, data.labels, folders[i], device, progress, spec.seed,
            work_dir / "checkpoints" / f"teacher_{i}",
        )
    return Ensemble([members[i] for i in range(len(specs))], data.labels, names)


def teacher_folders(cfg: JobConfig, work_dir: Path) -> list[Path]:
    """The folder of the job's teacher, or of each member of its ensemble (the first is the one that
    ``/predict`` loads as the job's teacher)."""
    if not cfg.teacher.ensemble:
        return [Path(cfg.teacher.path or work_dir / "teacher")]
    return [
        model_folder(m.path) if m.path is not None else work_dir / "teachers" / str(i)
        for i, m in enumerate(cfg.teacher.ensemble)
    ]


def label_with_teacher(
    cfg: JobConfig, teacher: WordTeacher | None, data: Dataset, work_dir: Path, progress: Progress
) -> tuple[list[Example], list[Example]]:
    """The student's examples: gold tags plus the teacher's cached logits (and pseudo-labels); in mode
    "alone" the gold tags only, and the teacher may be None."""
    label_id = label_index(data.labels)
    unlabeled = data.unlabeled if cfg.distill.mode != "alone" else []
    logits: list[torch.Tensor | None] = [None] * (len(data.train) + len(unlabeled))
    if cfg.distill.mode != "alone":
        if teacher is None:
            raise ValueError(f'distill.mode "{cfg.distill.mode}" needs a teacher')
        sentences = data.train + unlabeled
        logits = list(cached_logits(teacher, sentences, cfg, work_dir, progress))
    labeled = [
        Example(s.tokens, [label_id[t] for t in s.tags], t)
        for s, t in zip(data.train, logits[: len(data.train)], strict=True)
    ]
    rest = logits[len(data.train) :]
    hard: list[list[int] | None] = [None] * len(unlabeled)
    if cfg.distill.mode == "kd_pseudo":
        hard = pseudo_labels(rest, cfg.distill.pseudo_threshold, cfg.distill.pseudo_filter)
    return labeled, [Example(s.tokens, h, t) for s, h, t in zip(unlabeled, hard, rest, strict=True)]


def co_teach(
    cfg: JobConfig, teacher: WordTeacher, baseline: WordTeacher, data: Dataset,
    labeled: list[Example], unlabeled: list[Example], progress: Progress,
    teacher_tags: dict[str, list[list[str]]] | None = None,
) -> tuple[list[Example], list[Example], dict[str, Any]]:
    """The baseline student as a second teacher: the distilled student's examples with the teacher's and the
    baseline's word log-probabilities averaged (``average_log_probs``, as an ensemble's members are), and
    pseudo-labels from that average, when the two together tag dev better than the teacher alone; else the
    examples unchanged. Also the report's ``teaching`` entry: who taught, why, and both F1s on dev (which
    decides) and test (reported only).

    Why: a word-level BiLSTM that reads characters and case and an uncased subword transformer make
    different errors. On CoNLL-2003 with 3,000 labels the teacher scored 0.818 test F1, the student alone
    0.829 and the two averaged 0.867 (docs/BENCHMARKS.md, "The baseline teaches too"). A teacher far
    stronger than the student gains nothing from the average on dev, and keeps teaching alone.

    ``teacher_tags``: where the teacher's own tags on dev and test are kept (by split), for the report.
    """
    batch = cfg.teacher.eval_batch_size
    splits = {"dev": data.dev, **({"test": data.test} if data.test else {})}
    f1: dict[str, dict[str, float]] = {}
    for split, sentences in splits.items():
        tokens = [s.tokens for s in sentences]
        alone = teacher.word_logits(tokens, batch)
        joint = average_log_probs([alone, baseline.word_logits(tokens, batch)])
        gold = [s.tags for s in sentences]
        tags = {who: [argmax_tags(x, data.labels) for x in logits]
                for who, logits in (("teacher", alone), ("teacher_and_baseline", joint))}
        f1[split] = {who: entity_scores(gold, tagged)["f1"] for who, tagged in tags.items()}
        if teacher_tags is not None:
            teacher_tags[split] = tags["teacher"]
    both, teacher_only = f1["dev"]["teacher_and_baseline"], f1["dev"]["teacher"]
    joins = both > teacher_only
    by = "teacher_and_baseline" if joins else "teacher"
    reason = f"dev F1 {both:.4f} together against {teacher_only:.4f} for the teacher alone"
    who = "the teacher and the baseline" if joins else "the teacher"
    progress.log(f"teaching the distilled student: {who} ({reason})")
    entry = {"by": by, "reason": reason, "f1": f1}
    if not joins:
        return labeled, unlabeled, entry
    examples = labeled + unlabeled
    theirs = baseline.word_logits([e.tokens for e in examples], batch)
    joint = average_log_probs([[e.teacher for e in examples], theirs])
    rest = joint[len(labeled) :]
    hard: list[list[int] | None] = [e.tags for e in unlabeled]  # None unless pseudo-labels
    if cfg.distill.mode == "kd_pseudo":
        hard = pseudo_labels(rest, cfg.distill.pseudo_threshold, cfg.distill.pseudo_filter)
    return (
        [Example(e.tokens, e.tags, t) for e, t in zip(labeled, joint[: len(labeled)], strict=True)],
        [Example(e.tokens, h, t) for e, h, t in zip(unlabeled, hard, rest, strict=True)],
        entry,
    )


def cached_logits(
    teacher: WordTeacher, sentences: list[Sentence], cfg: JobConfig, work_dir: Path, progress: Progress
) -> list[torch.Tensor]:
    """The teacher's word-level logits, computed once and kept in ``teacher_logits.safetensors``.

    A stored file is used only when it came from the same teacher (a hash of its weights, labels and
    window settings, ``Teacher.digest``) and the same sentences (a hash of their tokens): a teacher
    retrained into the same folder, or other data, computes them afresh. An ensemble's members each
    take a pass, in one stage.
    """
    path = work_dir / "teacher_logits.safetensors"
    lengths = [len(s.tokens) for s in sentences]
    source = {"teacher": teacher.digest(), "sentences": fingerprint([s.tokens for s in sentences])}
    if path.is_file():
        with safe_open(str(path), "pt") as f:
            if f.metadata() == source:
                progress.stage("labeling", 0)
                return list(torch.split(f.get_tensor("logits"), lengths))
    batch_size = cfg.teacher.eval_batch_size
    if isinstance(teacher, Ensemble):
        progress.stage("labeling", teacher.passes(len(sentences), batch_size))
    else:
        progress.stage("labeling", -(-len(sentences) // batch_size))
    logits = teacher.word_logits([s.tokens for s in sentences], batch_size, progress)
    save_file({"logits": torch.cat(logits).contiguous()}, str(path), source)
    return logits


def evaluate(
    teacher: WordTeacher,
    teacher_dirs: list[Path],
    students: dict[str, tuple[torch.nn.Module, Path]],
    data: Dataset,
    progress: Progress,
    teacher_tags: dict[str, list[list[str]]] | None = None,
) -> tuple[dict[str, Any], dict[str, dict[str, list[list[str]]]]]:
    """Every model's entry (``report.model_entry``): F1 on dev and test, size, and words/s measured side by
    side (``report.speeds``), and its predicted tags per split. An ensemble is the teacher (its size: its
    members'; its speed: all of them tagging in turn, what the student replaces), and the teacher's
    ``members`` list each member's scores, parameters and size. One progress step per model, member and
    round of speeds. ``teacher_tags``: the teacher's tags by split where they are known already
    (``co_teach``'s), so that it does not tag those splits again."""
    splits = {"dev": data.dev, **({"test": data.test} if data.test else {})}
    timed = [s.tokens for s in (data.test or data.dev)]  # file order: a fair sample
    rounds = 3
    members = teacher.members if isinstance(teacher, Ensemble) else []
    progress.stage("evaluating", 1 + len(students) + rounds + len(members))
    predicts = {"teacher": lambda b: teacher.predict(b, batch_size=32)} | {
        name: lambda b, m=model: student_predict(m, b, batch_size=32) for name, (model, _) in students.items()
    }
    predicted: dict[str, dict[str, list[list[str]]]] = {name: {} for name in predicts}
    models: dict[str, tuple[torch.nn.Module, Path | list[Path]]] = {
        "teacher": (teacher.model, teacher_dirs if members else teacher_dirs[0]), **students
    }
    report = {}
    for name, (model, folder) in models.items():
        known = teacher_tags if name == "teacher" else None
        report[name] = model_entry(predicts[name], model, folder, splits, predicted[name], known)
        progress.step(1)
    if members:
        report["teacher"]["members"] = []
        for i, (member, folder) in enumerate(zip(members, teacher_dirs, strict=True)):
            entry = model_entry(lambda b, m=member: m.predict(b, batch_size=32), member.model, folder, splits)
            report["teacher"]["members"].append({"member": i, **entry})
            progress.step(1)
        each = ", ".join(f"{m['dev']['f1']:.4f}" for m in report["teacher"]["members"])
        progress.log(f"teacher dev F1: ensemble {report['teacher']['dev']['f1']:.4f}, members {each}")
    for name, measured in speeds(predicts, timed, rounds, on_round=lambda: progress.step(1)).items():
        report[name]["words_per_second"] = measured
    return report, predicted
