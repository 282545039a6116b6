"""The artifact store (jobstore/artifacts.py) against a real S3-compatible HTTP endpoint (moto's server,
started here), and as the local folder it is by default."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest
from conftest import CREDENTIALS

from jobstore.artifacts import ArtifactStore, MissingArtifact
from jobstore.layout import DataDir, PathError
from tagdistill.config import JobConfig


def _store(root: Path, endpoint: str, prefix: str, **kwargs) -> ArtifactStore:
    return ArtifactStore(root, f"s3://tagdistill/{prefix}", endpoint_url=endpoint, **CREDENTIALS, **kwargs)


@pytest.fixture
def two_caches(tmp_path: Path, s3_endpoint: str) -> tuple[ArtifactStore, ArtifactStore]:
    """Two processes' views of one store prefix, each with a local cache of its own."""
    prefix = secrets.token_hex(4)
    return _store(tmp_path / "a", s3_endpoint, prefix), _store(tmp_path / "b", s3_endpoint, prefix)


def _write(store: ArtifactStore, rel: str, content: bytes) -> Path:
    path = store.local(rel)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def test_a_folder_pushed_from_one_cache_is_pulled_into_another(two_caches) -> None:
    a, b = two_caches
    _write(a, "jobs/j1/teacher/model.safetensors", os.urandom(3000))
    _write(a, "jobs/j1/report.json", b"{}")
    _write(a, "jobs/j10/other", b"not j1's")  # a neighbour whose name starts the same
    assert a.push("jobs/j1") == 2
    assert a.push("jobs/j1") == 0  # unchanged files are not sent again
    assert b.pull("jobs/j1") == b.local("jobs/j1")
    assert sorted(p.relative_to(b.root).as_posix() for p in b.root.rglob("*") if p.is_file()) == [
        "jobs/j1/report.json", "jobs/j1/teacher/model.safetensors"]
    assert b.local("jobs/j1/teacher/model.safetensors").read_bytes() == \
        a.local("jobs/j1/teacher/model.safetensors").read_bytes()
    assert b.exists("jobs/j1/report.json") and b.exists("jobs/j1") and not b.exists("jobs/j2")


def test_a_pull_skips_cached_files_and_fetches_changed_ones(two_caches) -> None:
    a, b = two_caches
    _write(a, "jobs/j/ck/tensors.safetensors", b"1" * 100)
    a.push("jobs/j")
    b.pull("jobs/j")
    cached = b.local("jobs/j/ck/tensors.safetensors")
    inode = cached.stat().st_ino
    b.pull("jobs/j")
    assert cached.stat().st_ino == inode  # same size and time as the store's: not downloaded again
    _write(a, "jobs/j/ck/tensors.safetensors", b"2" * 100)  # a new checkpoint of the same size
    assert a.push("jobs/j") == 1
    b.pull("jobs/j/ck/tensors.safetensors")
    assert cached.read_bytes() == b"2" * 100


def test_a_changed_marker_leaves_the_store_before_its_folder_changes_and_comes_back_last(two_caches) -> None:
    a, b = two_caches
    _write(a, "jobs/j/ck/tensors.safetensors", b"old")
    _write(a, "jobs/j/ck/state.json", b'{"epoch": 1}')
    a.push("jobs/j", last=("state.json",))
    sent: list[str] = []
    real_put, real_rm = a.fs.put_file, a.fs.rm

    def put(lpath: str, rpath: str, **kw) -> None:
        sent.append(Path(rpath).name)
        if Path(rpath).name == "tensors.safetensors":  # mid-push: no reader may see an old marker
            assert not b.exists("jobs/j/ck/state.json")
        real_put(lpath, rpath, **kw)

    a.fs.put_file, a.fs.rm = put, real_rm
    _write(a, "jobs/j/ck/tensors.safetensors", b"new")
    _write(a, "jobs/j/ck/state.json", b'{"epoch": 2}')
    assert a.push("jobs/j", last=("state.json",)) == 2
    assert sent == ["tensors.safetensors", "state.json"]
    assert b.pull("jobs/j/ck/state.json").read_text() == '{"epoch": 2}'


def test_a_mirrored_push_removes_what_the_cache_no_longer_has(two_caches) -> None:
    a, b = two_caches
    _write(a, "jobs/j/checkpoints/student/state.json", b"{}")
    _write(a, "jobs/j/student/weights", b"w")
    a.push("jobs/j")
    a.local("jobs/j/checkpoints/student/state.json").unlink()  # the job ended: checkpoints removed
    a.push("jobs/j")
    assert b.exists("jobs/j/checkpoints/student/state.json")  # a plain push only adds
    a.push("jobs/j", mirror=True)
    assert not b.exists("jobs/j/checkpoints") and b.exists("jobs/j/student/weights")


def test_pull_refuses_missing_paths_and_every_call_paths_outside_the_data_directory(two_caches) -> None:
    a, _ = two_caches
    with pytest.raises(MissingArtifact, match="jobs/none is not in the artifact store"):
        a.pull("jobs/none")
    assert a.pull("jobs/none", missing_ok=True) == a.local("jobs/none")
    for bad in ("../elsewhere", "/etc/passwd", "."):
        with pytest.raises(ValueError, match="not a path inside the data directory"):
            a.push(bad)


def test_files_are_streamed_both_ways_through_open(two_caches) -> None:
    a, b = two_caches
    with a.open("batches/in.txt", "wb") as out:
        for i in range(1000):
            out.write(f"sentence {i}\n".encode())
    with b.open("batches/in.txt") as f:
        assert f.readline() == b"sentence 0\n"
    b.delete("batches/in.txt")
    assert not a.exists("batches/in.txt")


def test_the_cache_evicts_least_recently_pulled_records_first_and_never_those_in_use(
    tmp_path: Path, s3_endpoint: str
) -> None:
    store = _store(tmp_path, s3_endpoint, secrets.token_hex(4), cache_max_bytes=2500)
    for n, job in enumerate(("j1", "j2", "j3")):
        _write(store, f"jobs/{job}/weights", bytes(1000))
        store.push(f"jobs/{job}")
        os.utime(store.local(f"jobs/{job}"), (1000 + n, 1000 + n))  # j1 used longest ago
    assert store.trim(keep=["jobs/j1/weights"]) == ["jobs/j2"]  # 2,000 bytes left
    assert store.local("jobs/j1").exists() and not store.local("jobs/j2").exists()
    assert store.pull("jobs/j2/weights").stat().st_size == 1000  # the store still has it


def test_the_local_store_is_the_data_directory_and_moves_nothing(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    _write(store, "jobs/j/report.json", b"{}")
    assert not store.remote and store.push("jobs/j") == 0
    assert store.pull("jobs/j") == tmp_path.resolve() / "jobs/j"
    assert store.exists("jobs/j/report.json") and not store.exists("jobs/k")
    with pytest.raises(MissingArtifact):
        store.pull("jobs/k")
    assert store.trim() == []  # never evicts: there is no other copy


def test_config_paths_are_checked_in_the_object_store(two_caches) -> None:
    a, b = two_caches
    _write(a, "shared/teacher/config.json", b"{}")
    a.push("shared/teacher")
    data = DataDir(b.root, artifacts=b)  # b's cache has nothing of it
    cfg = data.resolve_paths(JobConfig(dataset_id="ds", teacher={"path": "shared/teacher"}))
    assert cfg.teacher.path == b.local("shared/teacher")
    with pytest.raises(PathError, match=r"teacher\.path: shared/gone does not exist"):
        data.resolve_paths(JobConfig(dataset_id="ds", teacher={"path": "shared/gone"}))
    assert data.fetch("shared/teacher").joinpath("config.json").is_file()
