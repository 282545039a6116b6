"""The ``tagdistill`` command: train-teacher, distill, evaluate, predict, export, up.

Every training option can also come from a JSON config file (``--config``), the same
``JobConfig`` schema that ``POST /jobs`` accepts; flags given on the command line win.
"""

from __future__ import annotations

import argparse
import json
import sys
import types
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic.fields import FieldInfo

# Every training flag is a JobConfig field: its name with dashes, with the section's name in front for the
# teacher's and the student's fields (--teacher-epochs, --student-hidden) and nothing for the data's, the
# distillation's and the job's (--train, --epochs, --seed). In train-teacher the teacher's fields go bare
# (--epochs, --min-steps). Type, choices and help come from the schema; ALIASES keeps the short names
# people use.
SECTIONS = {"data": "data", "teacher": "teacher", "student": "student", "distill": "distillation"}
ALIASES = {
    "teacher.base_model": "--base-model",
    "teacher.path": "--teacher",
    "teacher.learning_rate": "--teacher-lr",
    "teacher.max_length": "--max-length",
    "distill.learning_rate": "--lr",
    "student.crf": "--crf",
    "student.embeddings": "--embeddings",
    "student.char_encoder": "--char-encoder",
    "student.encoder": "--encoder",
}
METAVARS = {int: "N", float: "X", str: "TEXT", Path: "PATH"}


def _add_config_flags(
    parser: argparse.ArgumentParser, sections: tuple[str, ...], bare: tuple[str, ...]
) -> None:
    """One flag per field of JobConfig's ``sections`` (and seed, device); ``bare`` sections get no prefix."""
    from tagdistill.config import JobConfig

    fields: list[str] = []
    for section in sections:
        group = parser.add_argument_group(SECTIONS[section])
        schema = JobConfig.model_fields[section].annotation
        for name, info in _without_none(schema).model_fields.items():
            prefix = "" if section in bare else f"{section}-"
            _add_field(group, f"{section}.{name}", f"--{prefix}{name}".replace("_", "-"), info)
            fields.append(f"{section}.{name}")
    group = parser.add_argument_group("job")
    for name in ("seed", "device"):
        _add_field(group, name, f"--{name}", JobConfig.model_fields[name])
        fields.append(name)
    parser.set_defaults(fields=fields)


def _json(text: str) -> Any:
    """A flag's JSON value; argparse names the flag and shows this error when it is not JSON."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not JSON ({exc}): {text!r}") from None


def _add_field(group: argparse._ArgumentGroup, field: str, flag: str, info: FieldInfo) -> None:
    kind = _without_none(info.annotation)
    flags = [flag] + ([ALIASES[field]] if ALIASES.get(field, flag) != flag else [])
    default = "" if info.is_required() or info.default is None else f" (default: {info.default})"
    help_text = f"{info.description}{default}".replace("%", "%%")
    kwargs: dict[str, Any] = {"dest": field, "default": None, "help": help_text}
    if kind is bool:
        kwargs["action"] = argparse.BooleanOptionalAction
    elif typing.get_origin(kind) is typing.Literal:
        kwargs["choices"] = typing.get_args(kind)
    elif typing.get_origin(kind) is list:  # a list of objects (teacher.ensemble) is given as JSON
        kwargs |= {"type": _json, "metavar": "JSON"}
    else:
        kwargs |= {"type": kind, "metavar": METAVARS[kind]}
    group.add_argument(*flags, **kwargs)


def _without_none(annotation: Any) -> Any:
    """``X`` for ``X | None``, ``annotation`` otherwise."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    union = typing.get_origin(annotation) in (types.UnionType, typing.Union)
    return args[0] if union and len(args) == 1 else annotation


def build_config(args: argparse.Namespace):  # -> JobConfig
    """The config file's values, overridden by the flags that were given."""
    from tagdistill.config import JobConfig

    raw: dict[str, Any] = {}
    if args.config:
        try:
            raw = json.loads(Path(args.config).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise SystemExit(f"tagdistill: --config {args.config}: {exc}") from None
    for field in args.fields:
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

    cfg = build_config(args)
    if cfg.teacher.ensemble:
        raise SystemExit("tagdistill train-teacher: trains one teacher; give an ensemble to distill")
    data = load_dataset(_files(cfg))
    teacher = train_teacher(
        cfg.teacher, data.train, data.dev, data.labels, args.out, resolve_device(cfg.device),
        ConsoleProgress(), cfg.seed,
    )
    print(json.dumps({"out": str(args.out), "labels": teacher.labels}, indent=1))


def cmd_distill(args: argparse.Namespace) -> None:
    from tagdistill.pipeline import run_job
    from tagdistill.progress import ConsoleProgress

    cfg = build_config(args)
    report = run_job(cfg, _files(cfg), args.out, ConsoleProgress())
    print(json.dumps(_summary(report), indent=1))


def cmd_evaluate(args: argparse.Namespace) -> None:
    from tagdistill.data import read_file
    from tagdistill.report import model_entry, speeds
    from tagdistill.tagger import Tagger

    tagger = Tagger.load(args.model, args.device)
    sents = read_file(args.test, args.format, tag_column=args.tag_column)
    model = tagger.model.model if tagger.kind == "teacher" else tagger.model
    tag = lambda b: tagger.tag(b, 32)  # noqa: E731
    entry = model_entry(tag, model, tagger.path, {"test": sents})
    entry["words_per_second"] = speeds({"model": tag}, [s.tokens for s in sents])["model"]
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


def cmd_export(args: argparse.Namespace) -> None:
    from tagdistill.data import read_file
    from tagdistill.export import export_student, export_teacher
    from tagdistill.tagger import model_folder

    check = [s.tokens for s in read_file(args.check, "conll")] if args.check else None
    if args.teacher:  # a job folder's teacher/, or a teacher folder itself; fp32 only
        folder = args.model / "teacher" if (args.model / "teacher").is_dir() else args.model
        info = export_teacher(folder, sentences=check)
    else:
        folder = model_folder(args.model)
        info = export_student(folder, int8=args.int8, sentences=check)
    print(json.dumps({"model": str(folder), **info}, indent=1))


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
        **({"taught_by": report["teaching"]["by"],
            f"teacher_and_baseline_{split}_f1": report["teaching"]["f1"][split]["teacher_and_baseline"]}
           if "teaching" in report else {}),
        "warnings": report["warnings"],
        "student_parameters": report["student"]["parameters"],
        "teacher_parameters": report["teacher"]["parameters"],
        **({f"teacher_members_{split}_f1": [m[split]["f1"] for m in report["teacher"]["members"]]}
           if "members" in report["teacher"] else {}),
        "speedup": report["speedup"],
        "seconds": report["seconds"],
    }


def parser() -> argparse.ArgumentParser:
    about = "Fine-tune a transformer tagger, distil it into a small, fast one, serve it."
    p = argparse.ArgumentParser(prog="tagdistill", description=about)
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train-teacher", help="fine-tune a transformer teacher")
    t.add_argument("--out", type=Path, required=True)
    t.add_argument("--config", type=Path, help="JSON job config (flags override it)")
    _add_config_flags(t, ("data", "teacher"), bare=("data", "teacher"))
    t.set_defaults(func=cmd_train_teacher)

    d = sub.add_parser("distill", help="train a student (and a teacher, unless --teacher is given)")
    d.add_argument("--out", type=Path, required=True, help="job folder: student/, report.json, ...")
    d.add_argument("--config", type=Path, help="JSON job config (flags override it)")
    d.add_argument("--pseudo-labels", dest="distill.mode", action="store_const", const="kd_pseudo",
                   help="same as --mode kd_pseudo")
    _add_config_flags(d, ("data", "teacher", "student", "distill"), bare=("data", "distill"))
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

    x = sub.add_parser(
        "export", help="write the student (or --teacher) as ONNX (model.onnx, --int8: model.int8.onnx)"
    )
    x.add_argument("--model", type=Path, required=True, help="a student, teacher or job folder")
    x.add_argument("--int8", action="store_true", help="also int8 weights (students)")
    x.add_argument("--teacher", action="store_true", help="the teacher (fp32): a job's teacher/")
    x.add_argument("--check", type=Path, help="CoNLL sentences to check ONNX Runtime against torch on "
                   "(default: the bundled sample's test split)")
    x.set_defaults(func=cmd_export)

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
    except ValidationError as exc:  # one line per bad field, named as its flag or config key
        lines = [f"  {'.'.join(map(str, e['loc'])) or 'config'}: {e['msg']}" for e in exc.errors()]
        raise SystemExit("tagdistill: the job config is not valid:\n" + "\n".join(lines)) from None
    except (DataError, FileNotFoundError) as exc:
        raise SystemExit(f"tagdistill: {exc}") from None


if __name__ == "__main__":
    main()
