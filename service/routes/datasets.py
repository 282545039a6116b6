"""Datasets: uploaded files, checked with the engine's readers before anything is kept."""

from __future__ import annotations

import secrets
import shutil
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, File, Form, Response, UploadFile

from jobstore.records import Dataset, utcnow
from service.auth import CallerDep
from service.bodies import DatasetList
from service.deps import DataDirDep, PageDep, SettingsDep, StoreDep
from service.errors import invalid
from tagdistill.config import DataFiles, DataFormat
from tagdistill.data import DataError, dataset_stats, load_dataset

router = APIRouter(prefix="/datasets", tags=["datasets"])

EXTENSIONS = {"conll": "conll", "jsonl": "jsonl", "text": "txt"}


@router.post("", status_code=201, response_model=Dataset)
def upload_dataset(
    store: StoreDep,
    settings: SettingsDep,
    caller: CallerDep,
    data: DataDirDep,
    train: Annotated[UploadFile, File(description="labeled training sentences")],
    dev: Annotated[UploadFile, File(description="labeled sentences for model selection")],
    test: Annotated[UploadFile | None, File(description="labeled sentences for the final report")] = None,
    unlabeled: Annotated[UploadFile | None, File(description="raw text, one sentence per line")] = None,
    format: Annotated[DataFormat, Form(description="format of train, dev and test")] = "conll",
    unlabeled_format: Annotated[DataFormat, Form(description="format of the unlabeled file")] = "text",
    tag_column: Annotated[int, Form(description="CoNLL column of the tag; -1 = last")] = -1,
    name: Annotated[str | None, Form(max_length=200, description="free text to recognise it by")] = None,
) -> Dataset:
    """Upload and check a dataset; 201 with its id and statistics."""
    store.count_upload(caller.owner, settings.max_uploads_per_hour)  # 429 past the hour's quota
    uploads = {"train": train, "dev": dev, "test": test, "unlabeled": unlabeled}
    uploads = {split: f for split, f in uploads.items() if f is not None}
    staging = data.tmp() / secrets.token_hex(8)
    staging.mkdir()
    try:
        files: dict[str, str] = {}
        for split, upload in uploads.items():
            # Our own file names: what the client called a file never reaches a path.
            kind = unlabeled_format if split == "unlabeled" else format
            files[split] = f"{split}.{EXTENSIONS[kind]}"
            with (staging / files[split]).open("wb") as out:
                shutil.copyfileobj(upload.file, out, 1 << 20)
        stats = _check(staging, files, uploads, format, unlabeled_format, tag_column)
        if len(stats["entity_types"]) > settings.max_entity_types:  # bounds the record and every job's labels
            msg = (f"{len(stats['entity_types'])} entity types; at most {settings.max_entity_types} "
                   "(TAGDISTILL_MAX_ENTITY_TYPES)")
            raise invalid(["body", "train"], msg, "data_error", file=files["train"], filename=train.filename)
        ds = Dataset(
            id=store.new_id("ds"), name=name, owner=caller.owner, created_at=utcnow(), files=files,
            format=format,
            unlabeled_format=unlabeled_format, tag_column=tag_column,
            size_bytes=sum((staging / f).stat().st_size for f in files.values()), stats=stats,
        )
        folder = data.dataset(ds.id)
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging.rename(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    rel = data.relative(folder)
    try:
        data.artifacts.push(rel)  # an object store: where the workers (and other API replicas) find it
        store.add_dataset(ds)
    except Exception:
        data.artifacts.delete(rel)
        raise
    return ds


def _check(
    folder: Path, files: dict[str, str], uploads: dict[str, UploadFile], format: DataFormat,
    unlabeled_format: DataFormat, tag_column: int,
) -> dict:
    """Read the staged files as a job would; a DataError becomes a 422 naming the file and line."""
    try:
        ds = load_dataset(
            DataFiles(
                **{split: folder / name for split, name in files.items()},
                format=format, unlabeled_format=unlabeled_format, tag_column=tag_column,
            )
        )
    except DataError as exc:
        split = next((s for s, name in files.items() if name == exc.file), None)
        raise invalid(
            ["body", split or "files"], str(exc), "data_error",
            file=exc.file, line=exc.line, filename=uploads[split].filename if split else None,
        ) from None
    return dataset_stats(ds)


@router.get("", response_model=DatasetList)
def list_datasets(store: StoreDep, caller: CallerDep, page: PageDep) -> DatasetList:
    """Datasets, newest first."""
    items, next_cursor = page.fetch(lambda cursor, limit: store.list_datasets(cursor, limit, caller.only))
    return DatasetList(items=items, next_cursor=next_cursor)


@router.get("/{dataset_id}", response_model=Dataset)
def get_dataset(dataset_id: str, store: StoreDep, caller: CallerDep) -> Dataset:
    """One dataset with its statistics."""
    return store.get_dataset(dataset_id, caller.only)


@router.delete("/{dataset_id}", status_code=204)
def delete_dataset(dataset_id: str, store: StoreDep, data: DataDirDep, caller: CallerDep) -> Response:
    """Delete a dataset and its files; 409 while an unfinished job uses it."""
    store.delete_dataset(dataset_id, caller.only)
    data.artifacts.delete(data.relative(data.dataset(dataset_id)))  # the store's files and the cached ones
    return Response(status_code=204)
