"""Uploaded teachers: Hugging Face token-classification folders fine-tuned elsewhere, for jobs to distil.

``POST /teachers`` takes an archive (.tar.gz, .tgz or .zip) of such a folder; ``unpack`` writes its
regular files, refusing anything that could run code when loaded (``unsafe``), and the folder lies in
the artifact store at ``teachers/<id>/`` (``DataDir.teacher``), where a job names it as
``teacher.path`` (the workers pull it as they pull any path of a job's config).

Records, under the Store's client and key prefix ``p`` (kept apart from ``jobstore/store.py``)::

    p teacher:<id>   hash   TeacherRecord (one JSON value per field, as the Store's records)
    p teachers       zset   id -> seq       p owner:<owner>:teachers    the owner's
"""

from __future__ import annotations

import stat
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import IO

from pydantic import BaseModel, Field

from jobstore.store import NotFound, Store, decode_fields, encode_fields
from tagdistill.foreign import PICKLE_WEIGHTS

# Files refused in an upload, whatever they hold: torch.save and pickle files (PICKLE_WEIGHTS), and the
# other formats that unpickle on load (joblib, dill, NumPy's .npy/.npz with allow_pickle). Safetensors,
# JSON and text (config, tokenizer) and SentencePiece models are all a teacher needs.
UNSAFE_SUFFIXES = (*PICKLE_WEIGHTS, ".joblib", ".dill", ".npy", ".npz")
# A file of another name is refused too when its first bytes are a pickle's (protocol 2 to 5) or a zip
# archive's (torch.save's format: a zip around a pickle).
PICKLE_MAGIC = tuple(bytes([0x80, protocol]) for protocol in range(2, 6))
ZIP_MAGIC = b"PK\x03\x04"
MAX_FILES = 1000  # files in one teacher folder (a model's has tens): bounds its record and the unpacking
# what reading a damaged or truncated archive raises
_DAMAGED = (OSError, EOFError, zlib.error, zipfile.BadZipFile, tarfile.TarError)


class TeacherRecord(BaseModel):
    id: str
    name: str | None = Field(None, description="free text given at upload")
    owner: str | None = Field(None, description="owner of the API key that uploaded it")
    created_at: datetime
    filename: str | None = Field(None, description="the archive's name, as the client gave it")
    path: str = Field(description="the folder, relative to the data directory: a job's teacher.path")
    labels: list[str] = Field(description="the model's labels (config.json id2label), in id order")
    model_type: str | None = Field(None, description="config.json's model_type (bert, roberta, ...)")
    files: list[str] = Field(description="the folder's files")
    size_bytes: int = Field(description="of the folder's files, unpacked")


class ArchiveError(ValueError):
    """An upload that is not a usable teacher archive; ``file`` names the member at fault, if one is."""

    def __init__(self, message: str, file: str | None = None, code: str = "archive_invalid") -> None:
        super().__init__(message)
        self.file, self.code = file, code


def unsafe(name: str, head: bytes) -> bool:
    """Whether a file (its name and first bytes) could run code when a library loads it."""
    if name.lower().endswith(UNSAFE_SUFFIXES):
        return True
    if name.lower().endswith(".safetensors"):  # a JSON header after its 8-byte length, never a pickle
        return len(head) < 9 or head[8:9] != b"{"
    return head.startswith(PICKLE_MAGIC) or head.startswith(ZIP_MAGIC)


def unpack(archive: Path, out: Path, max_bytes: int) -> Path:
    """Write the regular files of ``archive`` (tar, compressed or not, or zip) under ``out`` and return the
    model folder: ``out`` itself, or the archive's one top folder when config.json lies in it.

    Refused (ArchiveError naming the member): absolute names, ``..``, links, devices, a pickle-capable
    file (``unsafe``), more than ``max_bytes`` unpacked in all (counted as written, whatever the
    headers say) or ``MAX_FILES`` files. A folder without config.json is refused too.
    """
    total, count = 0, 0
    with _members(archive) as members:
        for name, kind, source in members:
            try:
                name.encode()
            except UnicodeEncodeError:  # a name in another encoding than UTF-8
                raise ArchiveError(f"{name!a}: a file name that is not UTF-8") from None
            parts = PurePosixPath(name).parts
            if name.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
                raise ArchiveError(f"{name}: a path outside the archive's folder", name)
            if kind == "dir" or not parts or parts[0] == "__MACOSX":  # macOS's zips add resource forks there
                continue
            if kind != "file":
                raise ArchiveError(f"{name}: a {kind}; only regular files and folders are taken", name)
            count += 1
            if count > MAX_FILES:
                raise ArchiveError(f"more than {MAX_FILES} files in the archive", None, "too_large")
            target = out.joinpath(*parts)
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                with source() as src, target.open("wb") as dst:
                    head = src.read(16)
                    if unsafe(name, head):
                        raise ArchiveError(
                            f"{name}: a pickle-capable file (loading one can run code), refused: upload the "
                            "weights as safetensors only, without training_args.bin, optimizer states and "
                            "the like", name, "unsafe_file",
                        )
                    dst.write(head)
                    total += len(head)
                    while chunk := src.read(1 << 20):
                        total += len(chunk)
                        if total > max_bytes:
                            msg = f"the archive unpacks to over {max_bytes} bytes"
                            raise ArchiveError(msg, None, "too_large")
                        dst.write(chunk)
            except _DAMAGED as exc:  # a damaged member, or one whose name is a folder's too
                raise ArchiveError(f"{name}: cannot be unpacked ({exc})", name) from None
    if (out / "config.json").is_file():
        return out
    tops = list(out.iterdir())
    if len(tops) == 1 and tops[0].is_dir() and (tops[0] / "config.json").is_file():
        return tops[0]
    raise ArchiveError("no config.json at the archive's top or in its one folder", "config.json")


Opener = Callable[[], IO[bytes]]


@contextmanager
def _members(archive: Path) -> Iterator[Iterator[tuple[str, str, Opener]]]:
    """(name, kind: "file" | "dir" | another kind, a function opening its bytes) of each member."""
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as z:
                yield ((i.filename, _zip_kind(i), lambda i=i: z.open(i)) for i in z.infolist())
        else:
            with tarfile.open(archive, "r:*") as tar:
                yield ((m.name, _tar_kind(m), lambda m=m: tar.extractfile(m)) for m in tar)
    except _DAMAGED as exc:
        raise ArchiveError(f"not a readable .tar.gz, .tgz or .zip archive ({exc})") from None


def _zip_kind(info: zipfile.ZipInfo) -> str:
    mode = info.external_attr >> 16  # the Unix mode, when the archive was made on Unix (else 0)
    if info.is_dir():
        return "dir"
    if stat.S_ISLNK(mode):
        return "link"
    # no file type at all (made elsewhere, or by Python's writestr: permissions only) is a plain file
    return "file" if stat.S_IFMT(mode) in (0, stat.S_IFREG) else "special file"


def _tar_kind(member: tarfile.TarInfo) -> str:
    if member.isdir():
        return "dir"
    if member.issym() or member.islnk():
        return "link"
    return "file" if member.isreg() else "special file"


def folder_size(folder: Path) -> tuple[list[str], int]:
    """The files under ``folder`` (relative, sorted) and their size in bytes."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return [p.relative_to(folder).as_posix() for p in files], sum(p.stat().st_size for p in files)


class Teachers:
    """Teacher records in Redis, on a Store's client and key prefix."""

    def __init__(self, store: Store) -> None:
        self.store, self.r, self.p = store, store.r, store.p

    def _key(self, teacher_id: str) -> str:
        return self.p + f"teacher:{teacher_id}"

    def _index(self, owner: str | None = None) -> str:
        return self.p + (f"owner:{owner}:" if owner is not None else "") + "teachers"

    def new_id(self) -> str:
        return self.store.new_id("tch")

    def add(self, record: TeacherRecord) -> None:
        seq = self.store.next_seq()
        with self.r.pipeline() as pipe:
            pipe.hset(self._key(record.id), mapping=encode_fields(record.model_dump(mode="json")))
            for who in {None, record.owner}:
                pipe.zadd(self._index(who), {record.id: seq})
            pipe.execute()

    def get(self, teacher_id: str, only: str | None = None) -> TeacherRecord:
        raw = self.r.hgetall(self._key(teacher_id))
        record = TeacherRecord.model_validate(decode_fields(raw)) if raw else None
        if record is None or (only is not None and record.owner != only):
            raise NotFound(f"no teacher {teacher_id!r}", "teacher_not_found")
        return record

    def owns(self, teacher_id: str, owner: str) -> bool:
        """Whether the teacher exists and is ``owner``'s."""
        try:
            self.get(teacher_id, owner)
        except NotFound:
            return False
        return True

    def list_teachers(
        self, cursor: str | None, limit: int, only: str | None = None
    ) -> tuple[list[TeacherRecord], str | None]:
        ids, next_cursor = self.store.page(self._index(only), cursor, limit)
        return self.store.many("teacher:", ids, TeacherRecord), next_cursor

    def delete(self, teacher_id: str, only: str | None = None) -> TeacherRecord:
        """Forget a teacher (its files are the caller's to delete); the record it was."""
        record = self.get(teacher_id, only)
        with self.r.pipeline() as pipe:
            pipe.delete(self._key(teacher_id))
            for who in {None, record.owner}:
                pipe.zrem(self._index(who), teacher_id)
            pipe.execute()
        return record

