"""The ``tagdistill`` command: train-teacher, distill, evaluate, predict, up.

Every training option can also come from a JSON config file (``--config``), the same
``JobConfig`` schema that ``POST /jobs`` accepts; flags given on the command line win.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

# flag -> (dotted JobConfig field, argparse kwargs); None defaults mean "not given"
TEACHER_FLAGS: dict[str, tuple[str, dict[str, Any]]] = {
    "--base-model": ("teacher.base_model", {"help": "HF model name, local folder, or 'minilm' (default)"}),
    "--teacher-epochs": ("teacher.epochs", {"type": int}),
    "--teacher-lr": ("teacher.learning_rate", {"type": float}),
    "--teacher-batch-size": ("teacher.batch_size", {"type": int}),
    "--max-length": ("teacher.max_length", {"type": int, "help": "sub-tokens per window"}),
}
STUDENT_FLAGS: dict[str, tuple[str, dict[str, Any]]] = {
    "--mode": ("distill.mode", {"choices": ["alone", "kd", "kd_pseudo"]}),
    "--loss": ("distill.loss", {"choices": ["kl", "mse", "soft_ce"]}),
    "--temperature": ("distill.temperature", {"type": float}),
    "--student-weight": ("distill.student_weight", {"type": float}),
    "--distill-weight": ("distill.distill_weight", {"type": float}),
    "--pseudo-threshold": ("distill.pseudo_threshold", {"type": float}),
    "--epochs": ("distill.epochs", {"type": int, "help": "student passes over the labeled sentences"}),
    "--min-steps": ("distill.min_steps", {"type": int, "help": "at least this many student steps"}),
    "--unlabeled-ratio": ("distill.unlabeled_ratio", {"type": float,
                                                      "help": "unlabeled batches per labeled batch"}),
    "--no-baseline": ("distill.baseline", {"action": "store_const", "const": False,
                                           "help": "do not train the student alone for comparison"}),
    "--batch-size": ("distill.batch_size", {"type": int}),
    "--lr": ("distill.learning_rate", {"type": float}),
    "--embeddings": ("student.embeddings", {"help": '"glove-6b-50d" or a GloVe-format text file'}),
    "--char-encoder": ("student.char_encoder", {"choices": ["cnn", "lstm"]}),
    "--encoder": ("student.encoder", {"choices": ["bilstm", "idcnn"]}),
    "--crf": ("student.crf", {"action": "store_const", "const": True}),
}
DATA_FLAGS: dict[str, tuple[str, dict[str, Any]]] = {
    "--train": ("data.train", {"type": Path}),
    "--dev": ("data.dev", {"type": Path}),
    "--test": ("data.test", {"type": Path}),
    "--unlabeled": ("data.unlabeled", {"type": Path, "help": "raw text, one sentence per line"}),
    "--format": ("data.format", {"choices": ["conll", "jsonl"]}),
    "--unlabeled-format": ("data.unlabeled_format", {"choices": ["text", "conll", "jsonl"]}),
    "--tag-column": ("data.tag_column", {"type": int, "help": "CoNLL tag column (default -1: last)"}),
    "--seed": ("seed", {"type": int}),
    "--device": ("device", {"choices": ["auto", "cpu", "cuda"]}),
}

REUSE_FLAG: dict[str, tuple[str, dict[str, Any]]] = {
    "--teacher": ("teacher.path", {"type": Path, "help": "an existing teacher folder to reuse"}),
}
DISTILL_FLAGS = DATA_FLAGS | TEACHER_FLAGS | STUDENT_FLAGS | REUSE_FLAG


def _add(parser: argparse.ArgumentParser, flags: dict[str, tuple[str, dict[str, Any]]]) -> None:
    for flag, (field, kwargs) in flags.items():
        parser.add_argument(flag, dest=field, default=None, **kwargs)


def build_config(args: argparse.Namespace, flags: dict[str, tuple[str, dict[str, Any]]]):  # -> JobConfig
    """The config file's values, overridden by the flags that were given."""
    from tagdistill.config import JobConfig

    raw: dict[str, Any] = json.loads(Path(args.config).read_text()) if args.config else {}
    for field, _ in flags.values():
        value = getattr(args, field)
        if value is None:
            continue
        node = raw
        *parents, leaf = field.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = str(value) if isinstance(value, Path) else value
    return JobConfig.model_validate(raw)


def cmd_train_teacher(args: argparse.Namespace) -> None:
    from tagdistill.data import load_dataset
    from tagdistill.finetune import train_teacher
    from tagdistill.progress import ConsoleProgress
    from tagdistill.train import resolve_device

    cfg = build_config(args, DATA_FLAGS | TEACHER_FLAGS)
    data = load_dataset(_files(cfg))
    teacher = train_teacher(
        cfg.teacher, data.train, data.dev, data.labels, args.out, resolve_device(cfg.device),
        ConsoleProgress(), cfg.seed,
    )
    print(json.dumps({"out": str(args.out), "labels": teacher.labels}, indent=1))


def cmd_distill(args: argparse.Namespace) -> None:
    from tagdistill.pipeline import run_job
    from tagdistill.progress import ConsoleProgress

    cfg = build_config(args, DISTILL_FLAGS)
    report = run_job(cfg, _files(cfg), args.out, ConsoleProgress())
    print(json.dumps(_summary(report), indent=1))


def cmd_evaluate(args: argparse.Namespace) -> None:
    from tagdistill.data import read_file
    from tagdistill.report import model_entry
    from tagdistill.tagger import Tagger

    tagger = Tagger.load(args.model, args.device)
    sents = read_file(args.test, args.format, tag_column=args.tag_column)
    model = tagger.model.model if tagger.kind == "teacher" else tagger.model
    entry = model_entry(lambda b: tagger.tag(b, 32), model, tagger.path, {"test": sents},
                        [s.tokens for s in sents])
    print(json.dumps({"model": str(tagger.path), "kind": tagger.kind, **entry}, indent=1))


def cmd_predict(args: argparse.Namespace) -> None:
    from tagdistill.tagger import Tagger

    tagger = Tagger.load(args.model, args.device)
    source = open(args.input, encoding="utf-8") if args.input else sys.stdin  # noqa: SIM115
    lines = [line.rstrip("\n") for line in source if line.strip()]
    for result in tagger.predict(lines):
        if args.output == "json":
            print(json.dumps(result, ensure_ascii=False))
        else:
            pairs = zip(result["tokens"], result["tags"], strict=True)
            print("\n".join(f"{tok}\t{tag}" for tok, tag in pairs))
            print()


# What `tagdistill up` runs on: the service extra's packages and the service itself
SERVICE_MODULES = (
    "fastapi", "uvicorn", "pydantic_settings", "celery", "redis", "sse_starlette", "service.run",
)


def cmd_up(args: argparse.Namespace) -> None:
    """Start the service, which is not part of the core: it is loaded by name, only here."""
    import importlib

    missing = [name for name in SERVICE_MODULES if _find(name) is None]
    if missing:
        raise SystemExit(
            f"tagdistill up needs the service ({', '.join(missing)} not installed): "
            "pip install 'tagdistill[service]'"
        )
    importlib.import_module("service.run").up(port=args.port, data_dir=args.data_dir)


def _find(name: str):  # -> ModuleSpec | None
    import importlib.util

    try:
        return importlib.util.find_spec(name)
    except ModuleNotFoundError:  # "service.run" without "service"
        return None


def _files(cfg):  # -> DataFiles
    if cfg.data is None:
        raise SystemExit("tagdistill: give --train and --dev (or a config file with 'data')")
    return cfg.data


def _summary(report: dict[str, Any]) -> dict[str, Any]:
    split = "test" if "test" in report["student"] else "dev"
    return {
        f"{name}_{split}_f1": report[name][split]["f1"] for name in ("teacher", "student")
    } | {
        **({"baseline_" + split + "_f1": report["baseline"][split]["f1"],
            "distillation_gain": report["distillation_gain"][split]["f1"],
            "served": report["served"]} if "served" in report else {}),
        "warnings": report["warnings"],
        "student_parameters": report["student"]["parameters"],
        "teacher_parameters": report["teacher"]["parameters"],
        "speedup": report["speedup"],
        "seconds": report["seconds"],
    }


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tagdistill", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train-teacher", help="fine-tune a transformer teacher")
    t.add_argument("--out", type=Path, required=True)
    t.add_argument("--config", type=Path, help="JSON job config (flags override it)")
    _add(t, DATA_FLAGS)
    t.add_argument("--epochs", dest="teacher.epochs", type=int, default=None, help="teacher epochs")
    _add(t, {k: v for k, v in TEACHER_FLAGS.items() if k != "--teacher-epochs"})
    t.set_defaults(func=cmd_train_teacher)

    d = sub.add_parser("distill", help="train a student (and a teacher, unless --teacher is given)")
    d.add_argument("--out", type=Path, required=True, help="job folder: student/, report.json, ...")
    d.add_argument("--config", type=Path, help="JSON job config (flags override it)")
    d.add_argument("--pseudo-labels", dest="distill.mode", action="store_const", const="kd_pseudo",
                   help="same as --mode kd_pseudo")
    _add(d, DISTILL_FLAGS)
    d.set_defaults(func=cmd_distill)

    e = sub.add_parser("evaluate", help="JSON report: F1 overall and per type, size, words/s")
    e.add_argument("--model", type=Path, required=True)
    e.add_argument("--test", type=Path, required=True)
    e.add_argument("--format", choices=["conll", "jsonl"], default="conll")
    e.add_argument("--tag-column", type=int, default=-1)
    e.add_argument("--device", default="cpu")
    e.set_defaults(func=cmd_evaluate)

    r = sub.add_parser("predict", help="tag raw text, one sentence per line")
    r.add_argument("--model", type=Path, required=True)
    r.add_argument("--input", type=Path, help="a text file (default: stdin)")
    r.add_argument("--output", choices=["tsv", "json"], default="tsv")
    r.add_argument("--device", default="cpu")
    r.set_defaults(func=cmd_predict)

    u = sub.add_parser("up", help="run API, worker and Redis in the foreground")
    u.add_argument("--port", type=int, default=8000)
    u.add_argument("--data-dir", type=Path, default=None)
    u.set_defaults(func=cmd_up)
    return p


def main(argv: list[str] | None = None) -> None:
    from pydantic import ValidationError

    from tagdistill.data import DataError

    args = parser().parse_args(argv)
    try:
        args.func(args)
    except (DataError, ValidationError, FileNotFoundError) as exc:
        raise SystemExit(f"tagdistill: {exc}") from None


if __name__ == "__main__":
    main()
