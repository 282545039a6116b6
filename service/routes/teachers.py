"""Teachers fine-tuned elsewhere: an uploaded Hugging Face token-classification folder, for jobs to distil."""

from __future__ import annotations

import json
import secrets
import shutil
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, File, Form, Response, UploadFile
from pydantic import BaseModel

from jobstore.layout import DataDir
from jobstore.records import utcnow
from jobstore.store import Conflict, Store
from jobstore.teachers import ArchiveError, TeacherRecord, Teachers, folder_size, unpack
from service.auth import CallerDep
from service.deps import DataDirDep, PageDep, SettingsDep, StoreDep
from service.errors import invalid

router = APIRouter(prefix="/teachers", tags=["teachers"])


class TeacherList(BaseModel):
    items: list[TeacherRecord]
    next_cursor: str | None


@router.post("", status_code=201, response_model=TeacherRecord)
def upload_teacher(
    store: StoreDep,
    settings: SettingsDep,
    caller: CallerDep,
    data: DataDirDep,
    archive: Annotated[
        UploadFile, File(description="a .tar.gz, .tgz or .zip of a Hugging Face token-classification folder: "
                                     "config.json with id2label, safetensors weights, a fast tokenizer")
    ],
    name: Annotated[str | None, Form(max_length=200, description="free text to recognise it by")] = None,
) -> TeacherRecord:
    """Upload a teacher fine-tuned elsewhere; 201 with its id and labels. A job distils it with
    ``teacher.path`` set to the answer's ``path``; its labels are mapped onto the dataset's then.

    Refused with a 422 naming the file: a pickle-capable file anywhere in the archive (``*.bin``, ``*.pt``,
    ``*.pth``, ``*.ckpt``, ``*.pkl``, ``*.pickle``, ``*.joblib``, ``*.dill``, ``*.npy``, ``*.npz``, or any
    file that starts as a pickle or a zip), links, paths outside the folder, no config.json with id2label,
    no ``*.safetensors``, no fast tokenizer. The archive, and its files unpacked, are limited to
    ``TAGDISTILL_MAX_TEACHER_UPLOAD_MB`` each (413 for the archive).
    """
    store.count_upload(caller.owner, settings.max_uploads_per_hour)  # 429 past the hour's quota
    teachers = Teachers(store)
    teacher_id = teachers.new_id()
    staging = data.tmp() / secrets.token_hex(8)
    staging.mkdir()
    folder = data.teacher(teacher_id)
    try:
        with (staging / "archive").open("wb") as out:
            shutil.copyfileobj(archive.file, out, 1 << 20)
        root = unpack(staging / "archive", staging / "files", settings.max_teacher_upload_bytes)
        from tagdistill.teacher import check_teacher_folder  # transformers takes seconds to import: on use

        try:
            labels = check_teacher_folder(root)
        except (OSError, ValueError) as exc:  # config.json without id2label, no weights, no fast tokenizer
            raise ArchiveError(data.redact(str(exc).replace(str(root), "the archive"))) from None
        files, size = folder_size(root)
        record = TeacherRecord(
            id=teacher_id, name=name, owner=caller.owner, created_at=utcnow(), filename=archive.filename,
            path=data.relative(folder), labels=labels, model_type=_model_type(root / "config.json"),
            files=files, size_bytes=size,
        )
        folder.parent.mkdir(parents=True, exist_ok=True)
        root.rename(folder)
    except ArchiveError as exc:
        raise invalid(
            ["body", "archive"], str(exc), exc.code, file=exc.file, filename=archive.filename
        ) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    try:
        data.artifacts.push(record.path)  # an object store: where the workers and other API replicas find it
        teachers.add(record)
    except Exception:
        data.artifacts.delete(record.path)
        raise
    return record


def _model_type(config: Path) -> str | None:
    """config.json's model_type (the folder loaded, so the file is a JSON object)."""
    value = json.loads(config.read_text()).get("model_type")
    return value if isinstance(value, str) else None


@router.get("", response_model=TeacherList)
def list_teachers(store: StoreDep, caller: CallerDep, page: PageDep) -> TeacherList:
    """Uploaded teachers, newest first."""
    teachers = Teachers(store)
    items, next_cursor = page.fetch(lambda cursor, limit: teachers.list_teachers(cursor, limit, caller.only))
    return TeacherList(items=items, next_cursor=next_cursor)


@router.get("/{teacher_id}", response_model=TeacherRecord)
def get_teacher(teacher_id: str, store: StoreDep, caller: CallerDep) -> TeacherRecord:
    """One uploaded teacher: its labels, files and size."""
    return Teachers(store).get(teacher_id, caller.only)


@router.delete("/{teacher_id}", status_code=204)
def delete_teacher(teacher_id: str, store: StoreDep, data: DataDirDep, caller: CallerDep) -> Response:
    """Delete an uploaded teacher and its files; 409 while a queued or running job uses it. Models
    distilled from it keep their students (their teacher's download is gone)."""
    teachers = Teachers(store)
    record = teachers.get(teacher_id, caller.only)
    busy = _jobs_using(store, data, record.path)
    if busy:
        msg = f"teacher {teacher_id} is used by unfinished job(s) {', '.join(busy)}"
        raise Conflict(msg, "teacher_in_use")
    teachers.delete(teacher_id, caller.only)
    data.artifacts.delete(record.path)  # the store's files and the cached ones
    return Response(status_code=204)


def _jobs_using(store: Store, data: DataDir, path: str) -> list[str]:
    """Queued and running jobs whose teacher.path is ``path``. A job submitted while this runs is not
    seen: it then fails when its worker finds no teacher, as with any path deleted under a job."""
    folder, busy = data.resolve(path), []
    for status in ("queued", "running"):
        cursor: str | None = None
        while True:
            jobs, cursor = store.list_jobs(status, cursor, 500)
            busy += [j.id for j in jobs if _same(data, j.config.teacher.path, folder)]
            if cursor is None:
                break
    return busy


def _same(data: DataDir, path: str | Path | None, folder: Path) -> bool:
    if path is None:
        return False
    try:
        return data.resolve(path) == folder
    except ValueError:  # a path outside the data directory names no teacher of ours
        return False
