"""Trained models: their scores, sizes and speeds, and the student's files."""

from __future__ import annotations

import gzip
import json
import os
import tarfile
import tempfile
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse

from jobstore.records import Model
from jobstore.store import NotFound
from service.auth import CallerDep
from service.bodies import Analysis, ModelList
from service.deps import DataDirDep, PageDep, StoreDep

router = APIRouter(prefix="/models", tags=["models"])


@router.get("", response_model=ModelList)
def list_models(store: StoreDep, caller: CallerDep, page: PageDep) -> ModelList:
    """Models, newest first."""
    items, next_cursor = page.fetch(lambda cursor, limit: store.list_models(cursor, limit, caller.only))
    return ModelList(items=items, next_cursor=next_cursor)


@router.get("/{model_id}", response_model=Model)
def get_model(model_id: str, store: StoreDep, caller: CallerDep) -> Model:
    """Teacher and student F1 (overall and per type), sizes, words/s, speedup and the job config."""
    return store.get_model(model_id, caller.only)


@router.get("/{model_id}/analysis", response_model=Analysis)
def model_analysis(
    model_id: str, store: StoreDep, data: DataDirDep, caller: CallerDep,
    type: Annotated[str | None, Query(max_length=100, description="only sentences disagreeing on it")] = None,
    limit: Annotated[int, Query(ge=1, le=200, description="at most this many sentences")] = 50,
) -> Analysis:
    """Where the student and the teacher disagree on the report's split (with gold beside them), and
    which entity types each model confuses; 404 for a model trained before the analysis existed."""
    model = store.get_model(model_id, caller.only)
    report = data.job(model.job_id) / "report.json"
    analysis = json.loads(report.read_text()).get("analysis") if report.is_file() else None
    if analysis is None:
        raise NotFound(f"model {model.id} has no error analysis (its job ran before there was one)")
    rows = [r for r in analysis["disagreements"] if type is None or type in r["types"]]
    return Analysis(**{**analysis, "disagreements": rows[:limit], "total_disagreements": len(rows)})


@router.get("/{model_id}/download", response_class=FileResponse)
def download_model(model_id: str, store: StoreDep, data: DataDirDep, caller: CallerDep) -> FileResponse:
    """The student's folder as a .tar.gz (load it with tagdistill.tagger.Tagger.load)."""
    model = store.get_model(model_id, caller.only)
    student = data.resolve(model.student_path)
    if not student.is_dir():
        raise NotFound(f"the files of model {model.id} are not in this data directory ({model.student_path})")
    archive = student.parent / "student.tar.gz"
    if not archive.is_file():
        _build_archive(student, archive, model.id)
    return FileResponse(archive, media_type="application/gzip", filename=f"{model.id}.tar.gz")


def _build_archive(student: Path, archive: Path, name: str) -> None:
    """Write the folder ``student`` as ``name/`` into the .tar.gz ``archive``, kept for later downloads.

    Built under a name of its own, then renamed: a reader never sees half a file, and first
    downloads at the same time each build one without clashing. The gzip header holds no time
    and no file name, so every build has the same bytes, whichever rename comes last.
    """
    fd, partial = tempfile.mkstemp(dir=archive.parent, prefix=f".{archive.name}.")
    try:
        with (
            open(fd, "wb") as out,
            gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0) as gz,
            tarfile.open(fileobj=gz, mode="w") as tar,
        ):
            tar.add(student, arcname=name)
        os.replace(partial, archive)
    except BaseException:
        os.unlink(partial)
        raise
