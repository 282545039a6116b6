"""The benchmark: teacher, students and a spaCy peer on CoNLL-2003, NCBI-disease and BTC (tweets).

    python bench/run.py                      # everything (hours on 2 CPU cores)
    python bench/run.py --quick              # a reduced run, under 10 minutes on 2 CPU cores
    python bench/run.py --only 'conll/full/*' --threads 1    # some units; run two such in parallel
    python bench/report.py                   # collect results -> docs/BENCHMARKS.md, JSON, plots

The work is a list of units (``conll/full/teacher``, ``conll/low/1500-s1/kd_pseudo-s2``,
``conll/full/spacy``, ``conll/speed``, ...). Each writes ``result.json`` in its folder under
``--out`` and is skipped when that file exists, so an interrupted run continues where it
stopped, and several processes can share the list (``--only`` takes shell patterns).
One teacher per setting; every student mode is trained with ``--student-seeds`` seeds
(``-s1``, ``-s2``, ...), all from the teacher's logits, computed once (``teacher_logits.safetensors``).
Every student uses the default recipe (``DistillConfig()``, ``StudentConfig()``): the same
budget whatever the mode, so alone and distilled differ only in what they learn from.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ modules beside this file

from peer import MAX_STEPS, spacy_available, spacy_model, train_spacy
from speed import measure_speeds
from subset import write_subset

from tagdistill.config import DataFiles, DistillConfig, JobConfig, StudentConfig, TeacherConfig
from tagdistill.data import Dataset, load_dataset
from tagdistill.ensemble import StudentTeacher
from tagdistill.finetune import train_teacher
from tagdistill.metrics import bytes_on_disk, count_parameters
from tagdistill.pipeline import co_teach, label_with_teacher
from tagdistill.progress import ConsoleProgress
from tagdistill.report import scores
from tagdistill.tagger import load_student, student_predict
from tagdistill.teacher import Teacher
from tagdistill.train import set_seed, train_student

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SIZES = (150, 300, 750, 1500, 3000)


@dataclass
class Setting:
    """One teacher and its students on one dataset."""

    name: str  # "conll/full", "conll/low/1500-s1", "ncbi/full"
    files: DataFiles
    teacher: TeacherConfig
    students: dict[str, tuple[DistillConfig, StudentConfig]]  # unit name -> how that student learns
    spacy: bool = False  # train the spaCy peer on the same labeled data
    prepare: Callable[[], None] | None = None  # writes the setting's files first (subsets)
    unlabeled_cap: int | None = None  # use only the first N unlabeled sentences (--quick)
    notes: dict[str, Any] = field(default_factory=dict)


def modes(*names: str, **distill: Any) -> dict[str, tuple[DistillConfig, StudentConfig]]:
    """Student units of the default recipe (with ``distill`` overrides, the same for all), one per mode."""
    return {name: (DistillConfig(mode=name, **distill), StudentConfig()) for name in names}


def low_resource(args: argparse.Namespace, corpus: str, train: Path, dev: Path, test: Path, n: int,
                 seed: int) -> Setting:
    """``n`` labeled train sentences (chosen by ``seed``), the rest of train as unlabeled text."""
    quick = args.quick
    folder = args.out / corpus / "low" / f"{n}-s{seed}" / "data"
    return Setting(
        f"{corpus}/low/{n}-s{seed}",
        DataFiles(train=folder / "train.conll", dev=dev, test=test,
                  unlabeled=folder / "unlabeled.conll", unlabeled_format="conll"),
        TeacherConfig(epochs=2 if quick else 4, learning_rate=2e-4, min_steps=0 if quick else 200),
        modes("alone", "kd_pseudo", **({"epochs": 10} if quick else {})),  # quick: 10 passes, not 40
        spacy=quick,  # the quick run's peer
        prepare=lambda: write_subset(train, n, seed, folder),
        unlabeled_cap=2000 if quick else None,
        notes={"labeled": n, "subset_seed": seed},
    )


def full(name: str, train: Path, dev: Path, test: Path, spacy: bool = False) -> Setting:
    """The whole training set, the default job's teacher (``TeacherConfig()``), no unlabeled text."""
    return Setting(name, DataFiles(train=train, dev=dev, test=test), TeacherConfig(),
                   modes("alone", "kd"), spacy=spacy)


def plan(args: argparse.Namespace) -> list[Setting]:
    """The settings of a full run, or of a --quick one (one low-resource setting and the peer)."""
    conll, ncbi, btc = args.data / "conll2003", args.data / "ncbi_disease", args.data / "btc"
    conll_files = (conll / "train.txt", conll / "valid.txt", conll / "test.txt")
    if args.quick:
        return [low_resource(args, "conll", *conll_files, 1500, 1)]
    btc_files = (btc / "train.conll", btc / "dev.conll", btc / "test.conll")
    return [
        full("conll/full", *conll_files, spacy=True),
        *(low_resource(args, "conll", *conll_files, n, 1) for n in args.sizes),
        full("ncbi/full", ncbi / "train.tsv", ncbi / "devel.tsv", ncbi / "test.tsv"),
        full("btc/full", *btc_files),
        low_resource(args, "btc", *btc_files, 500, 1),
    ]


def run_setting(s: Setting, args: argparse.Namespace, wanted: Callable[[str], bool]) -> None:
    folder = args.out / s.name
    seeds = range(1, (1 if args.quick else args.student_seeds) + 1)
    students = {f"{m}-s{k}": (m, k) for m in s.students for k in seeds}
    units = [f"{s.name}/teacher", *(f"{s.name}/{u}" for u in students)]
    if s.spacy:
        units.append(f"{s.name}/spacy")
    todo = [u for u in units if wanted(u) and not (args.out / u / "result.json").is_file()]
    if not todo:
        return
    if s.prepare is not None and not s.files.train.is_file():  # written once: a rerun keeps its split
        s.prepare()
    data = load_dataset(s.files)
    if s.unlabeled_cap is not None:
        data.unlabeled = data.unlabeled[: s.unlabeled_cap]
    progress = ConsoleProgress()
    device = torch.device("cpu")
    job = JobConfig(data=s.files, teacher=s.teacher, seed=args.seed)

    if f"{s.name}/spacy" in todo:
        started = time.perf_counter()
        tag, info = spacy_model(train_spacy(data, folder / "spacy", quick=args.quick))
        _write(folder / "spacy", {
            **info, **_scores(tag, data), "seconds": time.perf_counter() - started,
            "max_steps": MAX_STEPS[args.quick],
            "train_sentences": len(data.train),
        })
    if not any(u != f"{s.name}/spacy" for u in todo):
        return

    # the students alone never read the teacher: a process running only those (--only '*/alone-*' beside
    # another that trains the teacher) neither trains nor loads one
    needs_teacher = any(u != f"{s.name}/spacy" and "/alone-" not in u for u in todo)
    teacher_dir = folder / "teacher" / "model"
    started = time.perf_counter()
    teacher: Teacher | None = None
    if needs_teacher and (folder / "teacher" / "result.json").is_file():
        teacher = Teacher.load(teacher_dir, device)
    elif needs_teacher:
        set_seed(args.seed)
        teacher = train_teacher(s.teacher, data.train, data.dev, data.labels, teacher_dir, device, progress,
                                args.seed, folder / "teacher" / "checkpoints")
        seconds = time.perf_counter() - started
        _write(folder / "teacher", {
            "kind": "teacher", "base_model": s.teacher.base_model,
            "train_sentences": len(data.train), "seconds": seconds,
            **_scores(lambda b: teacher.predict(b, batch_size=64), data),
            "parameters": count_parameters(teacher.model), "bytes_on_disk": bytes_on_disk(teacher_dir),
            "config": s.teacher.model_dump(mode="json"), **s.notes,
        })

    examples: dict[str, tuple[list, list]] = {}  # by mode: every seed learns from the same examples
    for name, (mode, seed) in students.items():
        unit = folder / name
        if not wanted(f"{s.name}/{name}") or (unit / "result.json").is_file():
            continue
        started = time.perf_counter()
        distill, student_cfg = s.students[mode]
        cfg = job.model_copy(update={"distill": distill, "student": student_cfg, "seed": seed})
        if mode not in examples:
            examples[mode] = label_with_teacher(cfg, teacher, data, folder / "teacher", progress)
        labeled, unlabeled = examples[mode]
        teaching = None
        # as in a job, the same seed's student alone may teach too; without that unit (--only 'kd-*' on a
        # fresh folder) the teacher teaches alone, and the result has no "teaching"
        baseline = folder / f"alone-s{seed}" / "model"
        if mode != "alone" and distill.baseline_teaches and baseline.is_dir():
            member = StudentTeacher(load_student(baseline, device), baseline)
            labeled, unlabeled, teaching = co_teach(cfg, teacher, member, data, labeled, unlabeled, progress)
        model, history = train_student(
            distill, cfg.student, data.labels, labeled, unlabeled, data.dev, unit / "model", device,
            progress, seed,
        )
        _write(unit, {
            "kind": "student", "mode": mode, "seed": seed, "seconds": time.perf_counter() - started,
            "train_sentences": len(data.train), "unlabeled_sentences": len(unlabeled),
            **_scores(lambda b, m=model: student_predict(m, b, batch_size=64), data),
            "parameters": count_parameters(model), "bytes_on_disk": bytes_on_disk(unit / "model"),
            "epochs": history["epochs"], **({"teaching": teaching} if teaching else {}),
            "config": cfg.model_dump(mode="json", include={"student", "distill"}),
            **s.notes,
        })


def _scores(predict: Callable[[list[list[str]]], list[list[str]]], data: Dataset) -> dict[str, Any]:
    found = scores(predict, {"test": data.test, "dev": data.dev})
    return {"test": found["test"], "dev_f1": found["dev"]["f1"]}


def _write(folder: Path, result: dict[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    result["machine"] = f"{platform.machine()}, {torch.get_num_threads()} torch threads"
    (folder / "result.json").write_text(json.dumps(result, indent=1))
    scores = f"test F1 {result['test']['f1']:.4f}" if isinstance(result.get("test"), dict) else "done"
    print(f"== {folder}: {scores}", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a reduced run (under 10 minutes on 2 cores)")
    p.add_argument("--out", type=Path, help="work folder (default runs/bench, or runs/bench-quick)")
    p.add_argument("--data", type=Path, default=DATA, help="folder holding conll2003/ and ncbi_disease/")
    p.add_argument("--only", nargs="+", default=["*"], help="unit patterns, e.g. 'conll/low/*'")
    p.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), help="low-resource labeled sizes")
    p.add_argument("--student-seeds", type=int, default=3, help="seeds of every student mode (--quick: 1)")
    p.add_argument("--seed", type=int, default=13, help="the teachers' training seed")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    p.add_argument("--no-speed", action="store_true", help="skip the side-by-side speed unit")
    args = p.parse_args()
    args.out = args.out or Path("runs/bench-quick" if args.quick else "runs/bench")
    if args.threads:
        torch.set_num_threads(args.threads)
    wanted = lambda unit: any(fnmatch.fnmatch(unit, pat) for pat in args.only)  # noqa: E731
    if not spacy_available():
        print("spaCy is not installed (pip install -e '.[bench]'): the spaCy peer is skipped", flush=True)
    started = time.perf_counter()
    for s in plan(args):
        if not spacy_available():
            s.spacy = False
        run_setting(s, args, wanted)
    speed_unit = args.out / "conll" / "speed"
    if not args.no_speed and wanted("conll/speed") and not (speed_unit / "result.json").is_file():
        timed = args.out / ("conll/low/1500-s1" if args.quick else "conll/full")
        names = ("teacher", "alone-s1", "kd-s1", "kd_pseudo-s1", "spacy")
        models = {name: timed / name / "model" for name in names}
        models = {k: v for k, v in models.items() if v.is_dir()}
        if "teacher" in models:
            result = measure_speeds(models, args.data / "conll2003" / "test.txt",
                                    rounds=3 if args.quick else 5, words=2000 if args.quick else 5000,
                                    words_batch1=500 if args.quick else 1500)
            _write(speed_unit, result)
    print(f"bench: {time.perf_counter() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()
