"""Trained models: their scores, sizes and speeds, the student's and the teacher's files, their names
and tags, and the aliases (``production``) their owners move onto them."""

from __future__ import annotations

import gzip
import json
import os
import tarfile
import tempfile
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response
from fastapi.responses import FileResponse

from jobstore.records import Alias, Model, alias_problem
from jobstore.store import NotFound
from service.auth import CallerDep
from service.bodies import AliasList, AliasTarget, Analysis, ModelList, Relabel
from service.deps import DataDirDep, PageDep, StoreDep
from service.errors import invalid
from service.filters import MatchDep

# No prefix: the aliases (/aliases) are this module's too, as they are only ever about models.
router = APIRouter(tags=["models"])


@router.get("/models", response_model=ModelList)
def list_models(store: StoreDep, caller: CallerDep, page: PageDep, match: MatchDep) -> ModelList:
    """Models, newest first; ``tag`` and ``q`` filter them by tag and name."""
    items, next_cursor = page.fetch(
        lambda cursor, limit: store.list_models(cursor, limit, caller.only, match)
    )
    return ModelList(items=items, next_cursor=next_cursor)


@router.get("/models/{model_id}", response_model=Model)
def get_model(model_id: str, store: StoreDep, caller: CallerDep) -> Model:
    """Teacher and student F1 (overall and per type), sizes, words/s, speedup and the job config."""
    return store.get_model(model_id, caller.only)


@router.patch("/models/{model_id}", response_model=Model)
def relabel_model(model_id: str, body: Relabel, store: StoreDep, caller: CallerDep) -> Model:
    """Change a model's name or tags."""
    return store.relabel("model", model_id, caller.only, **body.changes())


@router.delete("/models/{model_id}", status_code=204)
def delete_model(model_id: str, store: StoreDep, caller: CallerDep) -> Response:
    """Forget a model (its files stay in its job's folder); 409 while an alias points to it."""
    store.delete_model(model_id, caller.only)
    return Response(status_code=204)


@router.get("/models/{model_id}/analysis", response_model=Analysis)
def model_analysis(
    model_id: str, store: StoreDep, data: DataDirDep, caller: CallerDep,
    type: Annotated[str | None, Query(max_length=100, description="only sentences disagreeing on it")] = None,
    limit: Annotated[int, Query(ge=1, le=200, description="at most this many sentences")] = 50,
) -> Analysis:
    """Where the student and the teacher disagree on the report's split (with gold beside them), and
    which entity types each model confuses; 404 for a model trained before the analysis existed."""
    model = store.get_model(model_id, caller.only)
    report = data.fetch(data.job(model.job_id) / "report.json")  # from the artifact store, if need be
    analysis = json.loads(report.read_text()).get("analysis") if report.is_file() else None
    if analysis is None:
        raise NotFound(f"model {model.id} has no error analysis (its job ran before there was one)")
    rows = [r for r in analysis["disagreements"] if type is None or type in r["types"]]
    return Analysis(**{**analysis, "disagreements": rows[:limit], "total_disagreements": len(rows)})


@router.get("/models/{model_id}/download", response_class=FileResponse)
def download_model(
    model_id: str, store: StoreDep, data: DataDirDep, caller: CallerDep,
    which: Annotated[Literal["student", "teacher"], Query(description="student or teacher")] = "student",
) -> FileResponse:
    """The student's folder (or the teacher's) as a .tar.gz: tagdistill.tagger.Tagger.load loads either."""
    model = store.get_model(model_id, caller.only)
    path = model.student_path if which == "student" else model.teacher_path
    folder = data.fetch(path)  # from the artifact store, if need be
    if not folder.is_dir():
        raise NotFound(f"the files of model {model.id} are not in this data directory ({path})")
    # kept in the model's job folder (a reused teacher lies in another job's, under another model's name)
    archive = data.job(model.job_id) / f"{which}.tar.gz"
    name = model.id if which == "student" else f"{model.id}-teacher"
    if not archive.is_file():
        _build_archive(folder, archive, name)
    return FileResponse(archive, media_type="application/gzip", filename=f"{name}.tar.gz")


def _build_archive(folder: Path, archive: Path, name: str) -> None:
    """Write ``folder`` as ``name/`` into the .tar.gz ``archive``, kept for later downloads.

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
            tar.add(folder, arcname=name)
        os.replace(partial, archive)
    except BaseException:
        os.unlink(partial)
        raise


# Aliases are the caller's own (each API key owner has their own "production"); they point to models
# the caller may see. POST /predict without a model uses "production".


def _alias_name(alias: str) -> str:
    problem = alias_problem(alias)
    if problem is not None:
        raise invalid(["path", "alias"], problem)
    return alias


@router.get("/aliases", response_model=AliasList, tags=["aliases"])
def list_aliases(store: StoreDep, caller: CallerDep) -> AliasList:
    """Your aliases and the models they point to, by name."""
    return AliasList(items=store.list_aliases(caller.owner))


@router.get("/aliases/{alias}", response_model=Alias, tags=["aliases"])
def get_alias(alias: str, store: StoreDep, caller: CallerDep) -> Alias:
    """The model an alias points to."""
    return store.get_alias(_alias_name(alias), caller.owner)


@router.put("/aliases/{alias}", response_model=Alias, tags=["aliases"])
def set_alias(alias: str, body: AliasTarget, store: StoreDep, caller: CallerDep) -> Alias:
    """Point an alias at one of your models, making or moving it (``previous_model_id``: where it was)."""
    try:
        return store.set_alias(_alias_name(alias), body.model_id, caller.owner, caller.only)
    except NotFound as exc:
        raise invalid(["body", "model_id"], str(exc)) from None


@router.delete("/aliases/{alias}", status_code=204, tags=["aliases"])
def delete_alias(alias: str, store: StoreDep, caller: CallerDep) -> Response:
    """Remove an alias (its model stays)."""
    store.delete_alias(_alias_name(alias), caller.owner)
    return Response(status_code=204)
