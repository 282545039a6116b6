"""Where files lie in the data directory shared by the API and the workers.

Records in Redis keep paths relative to this directory, so machines that mount it at
different places (see docs/DEPLOY.md, "Several machines") agree on them::

    datasets/<dataset id>/train.conll ...   uploaded files, under names the service chooses
    jobs/<job id>/                          a job's work_dir (teacher/, student/, report.json)
    teachers/<teacher id>/                  an uploaded teacher folder (POST /teachers, jobstore/teachers.py)
    tmp/                                    uploads being validated
    shared/                                 files an operator puts there for every API key
                                            (word vectors, teachers); the service never writes it
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path

from jobstore.artifacts import ArtifactStore
from jobstore.records import Dataset
from tagdistill.config import DEFAULT_TEACHER, GLOVE_6B_50D, DataFiles, JobConfig, TeacherMember

# "bert-base-cased", "org/model-v1.2": a Hugging Face model name (fetched when the job runs)
HUB_NAME = re.compile(r"[A-Za-z0-9][\w.-]{0,95}(/[A-Za-z0-9][\w.-]{0,95})?")


# ("job" | "dataset" | "teacher", id) -> whether the caller may use its files
MayUse = Callable[[tuple[str, str]], bool]


class PathError(ValueError):
    """A path in a job config that the service will not use; ``field`` names it (``teacher.path``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class DataDir:
    def __init__(
        self, root: Path, model_roots: Iterable[Path] = (), artifacts: ArtifactStore | None = None
    ) -> None:
        self.root = Path(root).resolve()
        self.model_roots = [Path(r).resolve() for r in model_roots]  # where absolute base models may lie
        self.artifacts = artifacts or ArtifactStore(self.root)  # the default: this folder is the store

    def exists(self, path: Path) -> bool:
        """Whether ``path`` (absolute, inside the directory) exists here or in the artifact store."""
        if os.path.exists(path):  # False (not an error) for names too long or odd
            return True
        try:
            return self.artifacts.remote and self.artifacts.exists(self.relative(path))
        except (OSError, ValueError):  # a key the store refuses (too long, say) names nothing there
            return False

    def fetch(self, relative: str | Path) -> Path:
        """``relative`` as an absolute path (as ``resolve``), its files first brought from the artifact
        store into this directory when they live in an object store (missing ones stay missing: the
        caller's existence check answers), and the local cache trimmed around it."""
        path = self.resolve(relative)
        if self.artifacts.remote:
            self.artifacts.pull(self.relative(path), missing_ok=True)
            self.artifacts.trim(keep=[self.relative(path)])
        return path

    def dataset(self, dataset_id: str) -> Path:
        return self.root / "datasets" / dataset_id

    def job(self, job_id: str) -> Path:
        return self.root / "jobs" / job_id

    def teacher(self, teacher_id: str) -> Path:
        return self.root / "teachers" / teacher_id

    def tmp(self) -> Path:
        path = self.root / "tmp"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def relative(self, path: Path) -> str:
        return Path(path).resolve().relative_to(self.root).as_posix()

    def resolve(self, relative: str | Path) -> Path:
        """``relative`` (a path inside the data directory) as an absolute path; ValueError outside it."""
        try:
            path = (self.root / relative).resolve()
        except (OSError, ValueError) as exc:  # a NUL byte, a loop of links
            raise ValueError(f"{relative!r} is not a usable path ({exc})") from None
        if not path.is_relative_to(self.root):
            raise ValueError(f"{relative} is outside the data directory")
        return path

    def redact(self, text: str) -> str:
        """``text`` with paths in this directory made relative to it: events and errors that users read
        name their jobs' and datasets' files, never where the server keeps them."""
        return text.replace(f"{self.root}/", "").replace(str(self.root), ".")

    def record_of(self, path: Path) -> tuple[str, str] | None:
        """Which record's folder holds ``path`` (absolute, inside the directory): ("job", id),
        ("dataset", id), ("teacher", id), ("shared", "") for ``shared/``, or None for anywhere else."""
        parts = path.relative_to(self.root).parts
        kinds = {"jobs": "job", "datasets": "dataset", "teachers": "teacher"}
        if len(parts) >= 2 and parts[0] in kinds:
            return kinds[parts[0]], parts[1]
        if parts and parts[0] == "shared":
            return "shared", ""
        return None

    def dataset_files(self, ds: Dataset) -> DataFiles:
        folder = self.dataset(ds.id)
        return DataFiles(
            **{split: folder / name for split, name in ds.files.items()},
            format=ds.format, unlabeled_format=ds.unlabeled_format, tag_column=ds.tag_column,
        )

    def resolve_paths(self, cfg: JobConfig, may_use: MayUse | None = None) -> JobConfig:
        """``cfg`` with every path it names made absolute here; the API and the workers both call it.

        - ``data``: refused; a job runs on an uploaded dataset, named by ``dataset_id``.
        - ``teacher.path``, ``student.embeddings``: a path in the data directory (relative to it).
        - ``teacher.base_model``: "minilm"; a folder in the data directory; an absolute folder under one of
          ``model_roots`` (set by an admin); or else a Hugging Face model name, loaded when the job runs.
        - ``teacher.ensemble``: each member's ``path`` and ``base_model``, as the teacher's own.

        With ``may_use`` (a caller's API key), a path in the data directory must lie in ``shared/`` or in a
        job, dataset or uploaded teacher for whose ("job" | "dataset" | "teacher", id) ``may_use`` is True.
        A path that is missing and one that is someone else's get the same answer, so no one learns another
        owner's ids; messages repeat what the user gave, never a server path. PathError names the field.
        """
        if cfg.data is not None:
            msg = "the service runs on uploaded datasets: POST /datasets, then give dataset_id"
            raise PathError("data", msg)
        teacher, student = cfg.teacher, cfg.student
        if teacher.path is not None:
            teacher = teacher.model_copy(update={"path": self._usable("teacher.path", teacher.path, may_use)})
        if student.embeddings not in (None, GLOVE_6B_50D):
            path = self._usable("student.embeddings", student.embeddings, may_use)
            student = student.model_copy(update={"embeddings": str(path)})
        if teacher.base_model != DEFAULT_TEACHER:
            teacher = teacher.model_copy(update={"base_model": self._base_model(teacher.base_model, may_use)})
        if teacher.ensemble:
            members = enumerate(teacher.ensemble)
            teacher = teacher.model_copy(
                update={"ensemble": [self._member(f"teacher.ensemble.{i}", m, may_use) for i, m in members]}
            )
        return cfg.model_copy(update={"teacher": teacher, "student": student})

    def _member(self, field: str, member: TeacherMember, may_use: MayUse | None) -> TeacherMember:
        if member.path is not None:
            return member.model_copy(update={"path": self._usable(f"{field}.path", member.path, may_use)})
        if member.base_model not in (None, DEFAULT_TEACHER):
            base = self._base_model(member.base_model, may_use, f"{field}.base_model")
            return member.model_copy(update={"base_model": base})
        return member

    def _usable(self, field: str, value: str | Path, may_use: MayUse | None) -> Path:
        try:
            path = self.resolve(value)
        except ValueError as exc:
            raise PathError(field, f"{exc}; give a path relative to it") from None
        record = self.record_of(path)
        mine = may_use is None or (record is not None and (record[0] == "shared" or may_use(record)))
        if not (mine and self.exists(path)):
            raise PathError(field, f"{value} does not exist in your jobs, your datasets or shared/")
        return path

    def _base_model(self, base: str, may_use: MayUse | None, field: str = "teacher.base_model") -> str:
        if os.path.isabs(base) and not self.inside(base):
            real = os.path.realpath(base)
            if any(Path(real).is_relative_to(root) for root in self.model_roots) and os.path.isdir(real):
                return real
            raise PathError(
                field, f"{base} is not a folder the service may load models from: put it in "
                "shared/ of the data directory, or ask an admin to add its folder to TAGDISTILL_MODEL_ROOTS",
            )
        try:
            return str(self._usable(field, base, may_use))
        except PathError:
            # never read a name in the service's own folders as a Hugging Face name (the worker would find it)
            top = Path(base).parts[0] if Path(base).parts else ""
            ours = self.inside(base) or top in ("jobs", "datasets", "teachers", "shared", "tmp")
            if ours or not HUB_NAME.fullmatch(base) or ".." in base:
                raise PathError(
                    field,
                    f'{base!r} is not "minilm", a Hugging Face model name, or a folder in your jobs, your '
                    "datasets or shared/",
                ) from None
        return base  # a Hugging Face name; loaded (or refused) when the job runs

    def inside(self, path: str) -> bool:
        """Whether an absolute ``path`` points into the data directory."""
        try:
            return os.path.isabs(path) and Path(os.path.realpath(path)).is_relative_to(self.root)
        except (OSError, ValueError):  # a NUL byte
            return False
