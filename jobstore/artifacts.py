"""The artifact store: where datasets, job folders (teacher, students, checkpoints, the logit cache,
exports, report) and other large files live, behind one interface for the API and every worker.

Two kinds, chosen by ``TAGDISTILL_STORAGE_URL`` (``Settings.artifacts``):

- ``""`` (the default): the local data directory IS the store. Every process sees the same folder
  (one machine, or a network file system); ``pull`` and ``push`` do nothing, and nothing changes
  from before this module existed.
- ``s3://bucket/prefix``: an S3-compatible object store (AWS S3, MinIO, moto ...), through fsspec
  and s3fs; endpoint and credentials from settings. Each process then keeps its data directory as
  a bounded local cache of the store (``cache_max_gb``, least recently used records evicted first).

Paths are always **relative to the data directory** (``datasets/<id>/train.conll``,
``jobs/<id>/student``), the same strings the Redis records keep, so the store's key of a file is
``<prefix>/<relative path>`` and its cached copy ``<data dir>/<relative path>``.

The interface (all methods take relative paths, files or folders alike)::

    store = settings.artifacts              # or ArtifactStore(root, url, **options)
    store.local(rel) -> Path                # where rel lies in this process's cache (no I/O)
    store.pull(rel) -> Path                 # store -> cache (a folder: every file under it); files
                                            #   already cached with the same size and time are
                                            #   skipped; MissingArtifact when the store has nothing
    store.push(rel, mirror=False,
               last=("state.json",))        # cache -> store; unchanged files skipped; mirror=True
                                            #   also deletes store files missing from the cache;
                                            #   names in ``last`` are removed first, uploaded last
    store.exists(rel) -> bool               # in the store
    store.open(rel, "rb" | "wb")            # a file object on the store itself (streams; for reading
                                            #   a large input piece by piece without a full copy)
    store.delete(rel)                       # from the store and the cache
    store.trim(keep=(rel, ...))             # evict cached records over the limit (never ``keep``)

Transfers stream in chunks (s3fs multipart uploads, ranged reads): no whole file is held in memory,
and nothing large passes through Redis. A download lands under a temporary name and is renamed, so
a reader of the cache never sees half a file. A cached file records the store's modification time
(whole seconds) and its ETag (as the fraction of the second) as its own, set after every download
and upload (``_stamp_ns``): a file whose size and stamp match the store's is not transferred again;
a file rewritten in the cache (a new checkpoint) has a new time and is, and one rewritten in the
store, even within the same second, has a new ETag.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import zlib
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import IO, Any

log = logging.getLogger("tagdistill.artifacts")

RECORD_DEPTH = 2  # "jobs/<id>", "datasets/<id>", "shared/<name>": the cache evicts whole records


class MissingArtifact(FileNotFoundError):
    """The store has no file or folder at that relative path."""


class ArtifactStore:
    def __init__(self, root: Path, url: str = "", cache_max_bytes: int | None = None, **options: Any) -> None:
        """``root``: the local data directory (the store itself, or its cache); ``url``: "" or
        ``s3://bucket/prefix``; ``options``: fsspec storage options (endpoint_url, key, secret ...)."""
        self.root = Path(root).resolve()
        self.url = url.rstrip("/")
        self.cache_max_bytes = cache_max_bytes
        self._options = options
        self._fs: Any = None

    @property
    def remote(self) -> bool:
        """Whether files live in an object store (else the local data directory is the store)."""
        return bool(self.url)

    @property
    def fs(self) -> Any:
        """The fsspec file system of the store, made on first use (after a fork, in the child)."""
        if self._fs is None:
            import fsspec  # the service extra; a local store needs none of it

            protocol = self.url.split("://", 1)[0]
            # no listings cache: other processes write the store, and a stale listing would hide them
            self._fs = fsspec.filesystem(protocol, use_listings_cache=False, skip_instance_cache=True,
                                         **self._options)
        return self._fs

    def local(self, rel: str | Path) -> Path:
        """Where ``rel`` lies in the local data directory; ValueError for a path outside it."""
        path = (self.root / rel).resolve()
        if not path.is_relative_to(self.root) or path == self.root:
            raise ValueError(f"{rel} is not a path inside the data directory")
        return path

    def _key(self, rel: str | Path) -> str:
        return f"{self.url}/{self.local(rel).relative_to(self.root).as_posix()}"

    def _rel(self, key: str) -> str:
        """A store key (as fsspec lists it, without the protocol) as a path relative to the data dir."""
        base = self.url.split("://", 1)[-1]
        return key.split("://", 1)[-1][len(base) + 1 :]

    def _listing(self, rel: str | Path) -> dict[str, dict[str, Any]]:
        """Every file of the store at ``rel`` (itself, or all under it): relative path -> fsspec info."""
        key = self._key(rel)
        try:
            found = self.fs.find(key, detail=True)
        except FileNotFoundError:
            found = {}
        if not found:  # find lists a folder's files; a single file is its own listing
            with contextlib.suppress(FileNotFoundError):
                info = self.fs.info(key)
                if info.get("type") == "file":
                    found = {key: info}
        return {self._rel(k): v for k, v in found.items() if v.get("type", "file") == "file"}

    def exists(self, rel: str | Path) -> bool:
        """Whether the store has a file or a non-empty folder at ``rel``."""
        if not self.remote:
            return self.local(rel).exists()
        return bool(self.fs.exists(self._key(rel)))  # one small request, however many files lie below

    def pull(self, rel: str | Path, missing_ok: bool = False) -> Path:
        """Bring ``rel`` (a file, or a folder and everything under it) into the local cache; its local
        path. Cached files with the store's size and time are kept. MissingArtifact when the store has
        nothing there (unless ``missing_ok``). Files in the cache that the store lacks are left alone."""
        path = self.local(rel)
        if not self.remote:
            if not missing_ok and not path.exists():
                raise MissingArtifact(f"{rel} is not in the data directory")
            return path
        files = self._listing(rel)
        if not files and not missing_ok:
            raise MissingArtifact(f"{rel} is not in the artifact store")
        fetched = 0
        for name, info in files.items():
            target = self.local(name)
            stamp = _stamp_ns(info)
            if _same(target, info["size"], stamp):
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(f".{target.name}.part-{os.getpid()}")
            try:
                self.fs.get_file(self._key(name), str(partial))  # streamed to disk in chunks
                os.utime(partial, ns=(stamp, stamp))
                os.replace(partial, target)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    partial.unlink()
            fetched += 1
        if files:
            self._touch(rel)
            log.info("pulled from the artifact store", extra={"path": str(rel), "files": len(files),
                                                              "fetched": fetched})
        return path

    def push(self, rel: str | Path, mirror: bool = False, last: Iterable[str] = ()) -> int:
        """Send ``rel`` (a file, or a folder and everything under it) from the local cache to the store;
        the number of files sent. Files the store has with the same size and time are skipped.

        ``last``: file names (``state.json``) that mark their folder as complete. Where one of them
        changed, the store's copy is removed before anything is sent and the new one sent after
        everything else, so a reader of the store never pairs new files with an old marker (a process
        killed mid-push leaves no marker, not a wrong one). ``mirror``: also delete store files under
        ``rel`` that the cache no longer has (removed checkpoints, a replaced student).
        """
        path = self.local(rel)
        if not self.remote:
            return 0
        if path.is_file():
            local = {path.relative_to(self.root).as_posix(): path}
        else:
            local = {p.relative_to(self.root).as_posix(): p for p in sorted(path.rglob("*"))
                     if p.is_file() and ".part-" not in p.name}
        remote = self._listing(rel)
        markers = set(last)
        changed = [name for name, p in local.items()
                   if not (name in remote and _same(p, remote[name]["size"], _stamp_ns(remote[name])))]
        changed.sort(key=lambda name: Path(name).name in markers)  # markers at the end
        stale = [self._key(n) for n in changed if Path(n).name in markers and n in remote]
        if mirror:
            stale += [self._key(n) for n in remote if n not in local]
        if stale:
            self.fs.rm(stale)
        for name in changed:
            self.fs.put_file(str(local[name]), self._key(name))  # multipart for large files: streamed
        if changed:  # the store's times become the cache's, so an unchanged file is not sent again
            after = self._listing(rel)
            for name in changed:
                if name in after:
                    stamp = _stamp_ns(after[name])
                    os.utime(local[name], ns=(stamp, stamp))
            log.info("pushed to the artifact store", extra={"path": str(rel), "files": len(changed)})
        return len(changed)

    def open(self, rel: str | Path, mode: str = "rb") -> IO[Any]:
        """A file object on the store itself (the local file in a local store): reads and writes stream
        (ranged reads, multipart writes), so a large file need not be copied whole first."""
        if not self.remote:
            path = self.local(rel)
            if "w" in mode or "a" in mode:
                path.parent.mkdir(parents=True, exist_ok=True)
            return path.open(mode)
        return self.fs.open(self._key(rel), mode)

    def delete(self, rel: str | Path) -> None:
        """Remove ``rel`` (file or folder) from the store and from the local cache."""
        path = self.local(rel)
        if self.remote:
            keys = [self._key(name) for name in self._listing(rel)]
            if keys:
                self.fs.rm(keys)
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)

    def _touch(self, rel: str | Path) -> None:
        """Mark the record folder of ``rel`` as just used (its time orders evictions)."""
        record = self._record(rel)
        if record is not None and record.exists():
            os.utime(record)

    def _record(self, rel: str | Path) -> Path | None:
        parts = self.local(rel).relative_to(self.root).parts
        return self.root.joinpath(*parts[:RECORD_DEPTH]) if len(parts) >= RECORD_DEPTH else None

    def trim(self, keep: Iterable[str | Path] = ()) -> list[str]:
        """Evict cached records (``jobs/<id>``, ``datasets/<id>``, ``shared/<name>``), least recently
        pulled first, until the cache holds at most ``cache_max_bytes``; never those of ``keep``, nor
        anything when the data directory is the store itself. The relative paths evicted."""
        if not self.remote or self.cache_max_bytes is None:
            return []
        kept = {r for r in (self._record(k) for k in keep) if r is not None}
        records = [r for top in ("jobs", "datasets", "shared") if (self.root / top).is_dir()
                   for r in (self.root / top).iterdir() if r.is_dir()]
        sizes = {r: sum(f.stat().st_size for f in r.rglob("*") if f.is_file()) for r in records}
        total, evicted = sum(sizes.values()), []
        for record in sorted(records, key=lambda r: r.stat().st_mtime):
            if total <= self.cache_max_bytes:
                break
            if record in kept:
                continue
            shutil.rmtree(record, ignore_errors=True)  # the store keeps it: pulled again when needed
            total -= sizes[record]
            evicted.append(record.relative_to(self.root).as_posix())
        if evicted:
            log.info("evicted from the local cache", extra={"records": evicted})
        return evicted


def _stamp_ns(info: dict[str, Any]) -> int:
    """What a cached copy of a store file (fsspec info) has as its modification time, in ns: the store's
    time in whole seconds, plus a fraction of a second taken from the file's ETag (a hash of its
    content). S3 keeps times to the second only, so a checkpoint rewritten within the second of the
    last upload, at the same size, would otherwise look unchanged to every other cache."""
    when = info.get("LastModified") or info.get("mtime") or info.get("last_modified") or 0
    seconds = int(when.timestamp()) if isinstance(when, datetime) else int(float(when))
    etag = str(info.get("ETag") or info.get("etag") or "")
    return seconds * 10**9 + (zlib.crc32(etag.encode()) % 10**9 if etag else 0)


def _same(path: Path, size: int, stamp_ns: int) -> bool:
    """Whether the cached ``path`` is the store's file of ``size`` bytes and stamp ``stamp_ns``."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return False
    return st.st_size == size and st.st_mtime_ns == stamp_ns
