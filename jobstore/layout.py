"""Where files lie in the data directory shared by the API and the workers.

Records in Redis keep paths relative to this directory, so machines that mount it at
different places (see the README) agree on them::

    datasets/<dataset id>/train.conll ...   uploaded files, under names the service chooses
    jobs/<job id>/                          a job's work_dir (teacher/, student/, report.json)
    tmp/                                    uploads being validated
    shared/                                 files an operator puts there for every API key
                                            (word vectors, teachers); the service never writes it
"""

from __future__ import annotations

import os
from pathlib import Path

from jobstore.records import Dataset
from tagdistill.config import GLOVE_6B_50D, DataFiles, JobConfig


class PathError(ValueError):
    """A path in a job config that the service will not use; ``field`` names it (``teacher.path``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class DataDir:
    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()

    def dataset(self, dataset_id: str) -> Path:
        return self.root / "datasets" / dataset_id

    def job(self, job_id: str) -> Path:
        return self.root / "jobs" / job_id

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

    def record_of(self, path: Path) -> tuple[str, str] | None:
        """Which record's folder holds ``path`` (absolute, inside the directory): ("job", id),
        ("dataset", id), ("shared", "") for ``shared/``, or None for anywhere else."""
        parts = path.relative_to(self.root).parts
        if len(parts) >= 2 and parts[0] in ("jobs", "datasets"):
            return ("job" if parts[0] == "jobs" else "dataset"), parts[1]
        if parts and parts[0] == "shared":
            return "shared", ""
        return None

    def dataset_files(self, ds: Dataset) -> DataFiles:
        folder = self.dataset(ds.id)
        return DataFiles(
            **{split: folder / name for split, name in ds.files.items()},
            format=ds.format, unlabeled_format=ds.unlabeled_format, tag_column=ds.tag_column,
        )

    def resolve_config(self, cfg: JobConfig) -> JobConfig:
        """``cfg`` with its file paths (teacher.path, student.embeddings) made absolute in this directory.

        PathError names the field whose path is outside the directory or missing.
        """
        teacher, student = cfg.teacher, cfg.student
        for field, value in (("teacher.path", teacher.path), ("student.embeddings", student.embeddings)):
            if value is None or (field == "student.embeddings" and value == GLOVE_6B_50D):
                continue
            try:
                path = self.resolve(value)
            except ValueError as exc:
                raise PathError(field, f"{exc}; give a path relative to it") from None
            if not os.path.exists(path):  # False (not an error) for names too long or otherwise odd
                raise PathError(field, f"{value} does not exist in the data directory")
            if field == "teacher.path":
                teacher = teacher.model_copy(update={"path": path})
            else:
                student = student.model_copy(update={"embeddings": str(path)})
        return cfg.model_copy(update={"teacher": teacher, "student": student})
