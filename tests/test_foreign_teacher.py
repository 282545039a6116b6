"""Teachers fine-tuned elsewhere: a Hugging Face token-classification folder's labels mapped onto a
dataset's (or refused, naming them), and its upload through the API (safetensors only, no pickle)."""

from __future__ import annotations

import io
import pickle
import secrets
import shutil
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
from conftest import _stop, start_api, upload_sample
from test_service import wait_status

SAMPLE_LABELS = ["O", "B-LOC", "B-MISC", "B-ORG", "B-PER", "I-LOC", "I-MISC", "I-ORG", "I-PER"]
OTHER_ORDER = ["I-PER", "B-LOC", "O", "I-ORG", "B-PER", "I-MISC", "B-ORG", "I-LOC", "B-MISC"]
BIOES = ["O", *(f"{p}-{t}" for t in ("LOC", "MISC", "ORG", "PER") for p in "BIES")]
KEYS = {"team-a": "key-a-" + secrets.token_hex(8), "team-b": "key-b-" + secrets.token_hex(8)}
WORDS = ["EU", "rejects", "German", "call", "to", "boycott", "British", "lamb", "."]


def foreign_teacher(folder: Path, base: Path, labels: list[str]) -> Path:
    """A Hugging Face token-classification folder on the tiny BERT ``base`` with ``labels`` in its
    config.json (a random head), saved as safetensors, without tagdistill.json."""
    from transformers import AutoTokenizer, BertConfig, BertForTokenClassification

    config = BertConfig.from_pretrained(
        base, id2label=dict(enumerate(labels)), label2id={label: i for i, label in enumerate(labels)}
    )
    torch.manual_seed(0)
    BertForTokenClassification(config).save_pretrained(folder, safe_serialization=True)
    AutoTokenizer.from_pretrained(base).save_pretrained(folder)
    return folder


def raw_word_logits(folder: Path, words: list[str]) -> torch.Tensor:
    """The folder's model as transformers loads it, read at each word's first sub-token: (words, labels)."""
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForTokenClassification.from_pretrained(folder).eval()
    encoded = tokenizer(words, is_split_into_words=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**encoded).logits[0]
    ids = encoded.word_ids()
    first = [ids.index(w) for w in range(len(words))]
    return logits[first]


@pytest.fixture(scope="module")
def other_order(tiny_teacher: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return foreign_teacher(tmp_path_factory.mktemp("other-order"), tiny_teacher, OTHER_ORDER)


def test_a_foreign_teacher_in_another_label_order_gives_its_logits_in_the_datasets_order(
    other_order: Path,
) -> None:
    from tagdistill.teacher import Teacher

    teacher = Teacher.load(other_order, torch.device("cpu"), labels=SAMPLE_LABELS)
    assert teacher.labels == SAMPLE_LABELS
    raw = raw_word_logits(other_order, WORDS)
    expected = raw[:, [OTHER_ORDER.index(label) for label in SAMPLE_LABELS]]
    (mapped,) = teacher.word_logits([WORDS])
    torch.testing.assert_close(mapped, expected, atol=1e-5, rtol=1e-5)
    # the head's rows were permuted: its config names the dataset's labels, windows are the defaults
    assert [teacher.model.config.id2label[i] for i in range(len(SAMPLE_LABELS))] == SAMPLE_LABELS
    assert (teacher.max_length, teacher.stride) == (128, 32)


def test_a_bioes_teacher_is_read_as_iob2_by_adding_the_probabilities_of_b_and_s(
    tiny_teacher: Path, tmp_path: Path
) -> None:
    from tagdistill.teacher import Teacher

    folder = foreign_teacher(tmp_path / "bioes", tiny_teacher, BIOES)
    teacher = Teacher.load(folder, torch.device("cpu"), labels=SAMPLE_LABELS)
    raw = raw_word_logits(folder, WORDS)
    expected = torch.stack([
        raw[:, [i for i, name in enumerate(BIOES) if name == label
                or name == label.replace("B-", "S-").replace("I-", "E-")]].logsumexp(-1)
        for label in SAMPLE_LABELS
    ], -1)
    (mapped,) = teacher.word_logits([WORDS])
    torch.testing.assert_close(mapped, expected, atol=1e-5, rtol=1e-5)
    # so the softmax over the dataset's labels is the model's own, summed
    torch.testing.assert_close(mapped.softmax(-1)[:, 1], raw.softmax(-1)[:, [1, 4]].sum(-1))  # B-LOC = B + S
    with pytest.raises(ValueError, match="merged"):
        teacher.save(tmp_path / "saved")


@pytest.mark.parametrize(
    ("labels", "missing", "extra"),
    [
        ([*OTHER_ORDER, "B-DATE", "I-DATE"], [], ["B-DATE", "I-DATE"]),
        ([label for label in OTHER_ORDER if label != "I-MISC"], ["I-MISC"], []),
        (["O", "B-PER", "I-PER", "S-ANIMAL"], ["B-LOC", "B-MISC", "B-ORG", "I-LOC", "I-MISC", "I-ORG"],
         ["S-ANIMAL"]),
    ],
)
def test_a_label_only_one_side_has_is_a_label_mismatch_naming_it(
    tiny_teacher: Path, tmp_path: Path, labels: list[str], missing: list[str], extra: list[str]
) -> None:
    from tagdistill.foreign import LabelMismatch, teacher_label_mapping
    from tagdistill.teacher import Teacher

    folder = foreign_teacher(tmp_path / "mismatch", tiny_teacher, labels)
    for check in (lambda: teacher_label_mapping(folder, SAMPLE_LABELS),
                  lambda: Teacher.load(folder, torch.device("cpu"), labels=SAMPLE_LABELS)):
        with pytest.raises(LabelMismatch) as caught:
            check()
        assert (caught.value.missing, caught.value.extra) == (missing, extra)
        assert all(label in str(caught.value) for label in missing + extra)


def test_the_mapping_is_read_from_config_json_alone(other_order: Path) -> None:
    from tagdistill.foreign import teacher_label_mapping

    groups = teacher_label_mapping(other_order, SAMPLE_LABELS)
    assert [OTHER_ORDER[ids[0]] for ids in groups] == SAMPLE_LABELS


def test_a_folder_with_pickle_weights_only_is_refused_naming_the_file(
    other_order: Path, tmp_path: Path
) -> None:
    from tagdistill.teacher import Teacher

    folder = tmp_path / "pickled"
    shutil.copytree(other_order, folder)
    for weights in folder.glob("*.safetensors"):
        weights.unlink()
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps({}))
    with pytest.raises(ValueError, match=r"pytorch_model\.bin"):
        Teacher.load(folder, torch.device("cpu"), labels=SAMPLE_LABELS)


# --- the API -------------------------------------------------------------------------------------


def tar_gz(folder: Path, extra: dict[str, bytes] | None = None, link: str | None = None) -> bytes:
    """The folder as a .tar.gz under one top folder "model", with ``extra`` files (name -> bytes) and a
    symbolic ``link`` to /etc/passwd added."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(folder, arcname="model")
        for name, content in (extra or {}).items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
        if link is not None:
            info = tarfile.TarInfo(link)
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(info)
    return buffer.getvalue()


def zipped(folder: Path) -> bytes:
    """The folder's files at the top of a .zip."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        for path in sorted(folder.iterdir()):
            z.write(path, path.name)
    return buffer.getvalue()


def upload(client: httpx.Client, name: str, content: bytes) -> httpx.Response:
    return client.post("/teachers", files={"archive": (name, content)}, data={"name": "elsewhere"})


@pytest.mark.parametrize(
    ("build", "code", "named"),
    [
        (lambda f: tar_gz(f, {"model/training_args.bin": pickle.dumps({"lr": 1e-4})}), "unsafe_file",
         "model/training_args.bin"),
        (lambda f: tar_gz(f, {"model/notes.txt": pickle.dumps(["a pickle by another name"])}), "unsafe_file",
         "model/notes.txt"),
        (lambda f: tar_gz(f, {"model/model.safetensors": pickle.dumps({})}), "unsafe_file",
         "model/model.safetensors"),
        (lambda f: tar_gz(f, {"../escape.json": b"{}"}), "archive_invalid", "../escape.json"),
        (lambda f: tar_gz(f, link="model/vocab-link.txt"), "archive_invalid", "model/vocab-link.txt"),
    ],
    ids=["pickle-bin", "pickle-by-another-name", "fake-safetensors", "dot-dot", "symlink"],
)
def test_an_unsafe_teacher_archive_is_refused_naming_the_file(
    client: httpx.Client, other_order: Path, build: Any, code: str, named: str
) -> None:
    before = client.get("/teachers", params={"limit": 100}).json()["items"]
    response = upload(client, "teacher.tar.gz", build(other_order))
    assert response.status_code == 422, response.text
    error = response.json()["errors"][0]
    assert (error["code"], error["param"], error["file"]) == (code, "archive", named)
    assert named in error["message"] and error["filename"] == "teacher.tar.gz"
    assert client.get("/teachers", params={"limit": 100}).json()["items"] == before  # nothing kept


def test_an_archive_that_is_no_teacher_is_refused_saying_why(
    client: httpx.Client, other_order: Path, tmp_path: Path
) -> None:
    no_weights = tmp_path / "no-weights"
    shutil.copytree(other_order, no_weights)
    for weights in no_weights.glob("*.safetensors"):
        weights.unlink()
    for content, says in [
        (b"not an archive at all", "not a readable .tar.gz"),
        (tar_gz(no_weights), "no weights (*.safetensors)"),
    ]:
        response = upload(client, "teacher.tgz", content)
        assert response.status_code == 422 and says in response.json()["error"]["message"], response.text
        assert str(tmp_path) not in response.text  # no server path in the message


def test_an_uploaded_teacher_is_listed_and_a_job_distils_it_with_the_datasets_labels(
    client: httpx.Client, dataset: dict[str, Any], other_order: Path
) -> None:
    response = upload(client, "teacher.zip", zipped(other_order))
    assert response.status_code == 201, response.text
    teacher = response.json()
    assert teacher["labels"] == OTHER_ORDER and teacher["model_type"] == "bert"
    assert teacher["path"] == f"teachers/{teacher['id']}" and "model.safetensors" in teacher["files"]
    assert client.get(f"/teachers/{teacher['id']}").json() == teacher
    assert teacher["id"] in [t["id"] for t in client.get("/teachers").json()["items"]]

    job = client.post("/jobs", json={
        "dataset_id": dataset["id"], "teacher": {"path": teacher["path"]}, "student": {"hidden": 16},
        "distill": {"mode": "kd", "epochs": 1, "min_steps": 0, "baseline": False}, "device": "cpu",
    })
    assert job.status_code == 202, job.text
    in_use = client.delete(f"/teachers/{teacher['id']}")
    assert in_use.status_code == 409 and job.json()["id"] in in_use.json()["error"]["message"]

    done = wait_status(client, job.json()["id"], {"succeeded"}, 300)
    model = client.get(f"/models/{done['model_id']}").json()
    assert model["teacher_path"] == teacher["path"] and model["labels"] == SAMPLE_LABELS
    body = {"model": model["id"], "texts": [" ".join(WORDS)], "use_teacher": True}
    tagged = client.post("/predict", json=body)  # the uploaded folder loads as the model's teacher
    assert tagged.status_code == 200 and tagged.json()["model"] == "teacher", tagged.text
    assert {tag[2:] for tag in tagged.json()["results"][0]["tags"]} <= {"", "LOC", "MISC", "ORG", "PER"}

    assert client.delete(f"/teachers/{teacher['id']}").status_code == 204
    assert client.get(f"/teachers/{teacher['id']}").status_code == 404


def test_a_job_whose_teacher_or_ensemble_member_labels_differ_from_the_datasets_is_a_422_naming_them(
    client: httpx.Client, dataset: dict[str, Any], tiny_teacher: Path, tmp_path: Path
) -> None:
    folder = foreign_teacher(tmp_path / "dates", tiny_teacher, [*OTHER_ORDER, "B-DATE", "I-DATE"])
    teacher = upload(client, "dates.tar.gz", tar_gz(folder))
    assert teacher.status_code == 201, teacher.text  # the upload knows no dataset: the job is checked
    body = {"dataset_id": dataset["id"], "teacher": {"path": teacher.json()["path"]}}
    response = client.post("/jobs", json=body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert (error["code"], error["param"]) == ("label_mismatch", "teacher.path")
    assert "B-DATE, I-DATE" in error["message"] and teacher.json()["path"] in error["message"]
    members = {"ensemble": [{}, {"path": teacher.json()["path"]}]}  # the same folder in an ensemble
    response = client.post("/jobs", json={"dataset_id": dataset["id"], "teacher": members})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert (error["code"], error["param"]) == ("label_mismatch", "teacher.ensemble.1.path")
    assert "B-DATE, I-DATE" in error["message"]
    assert client.delete(f"/teachers/{teacher.json()['id']}").status_code == 204


@pytest.fixture(scope="module")
def keyed_api(
    service_env: dict[str, str], worker: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A second API process with the keys of KEYS, on the session's Redis, worker and data directory."""
    env = {**service_env, "TAGDISTILL_API_KEYS": ",".join(f"{owner}:{key}" for owner, key in KEYS.items())}
    proc, url = start_api(env, tmp_path_factory.mktemp("logs") / "keyed-api.log")
    yield url
    _stop(proc)


def test_an_uploaded_teacher_is_its_owners_alone(keyed_api: str, other_order: Path) -> None:
    def team(owner: str) -> httpx.Client:
        key = {"Authorization": f"Bearer {KEYS[owner]}"}
        return httpx.Client(base_url=keyed_api, timeout=60, headers=key)

    with team("team-a") as a, team("team-b") as b:
        teacher = upload(a, "teacher.zip", zipped(other_order)).json()
        assert teacher["owner"] == "team-a"
        assert b.get(f"/teachers/{teacher['id']}").status_code == 404
        assert teacher["id"] not in [t["id"] for t in b.get("/teachers").json()["items"]]
        assert b.delete(f"/teachers/{teacher['id']}").status_code == 404
        b_dataset = upload_sample(b).json()
        refused = b.post("/jobs", json={"dataset_id": b_dataset["id"], "teacher": {"path": teacher["path"]}})
        assert refused.status_code == 422 and refused.json()["error"]["param"] == "teacher.path"
        assert "does not exist in your jobs" in refused.json()["error"]["message"]

        a_dataset = upload_sample(a).json()
        job = a.post("/jobs", json={"dataset_id": a_dataset["id"], "teacher": {"path": teacher["path"]}})
        assert job.status_code == 202, job.text
        a.post(f"/jobs/{job.json()['id']}/cancel")
        wait_status(a, job.json()["id"], {"cancelled"}, 60)
        assert a.delete(f"/teachers/{teacher['id']}").status_code == 204


def test_unpacking_stops_at_the_size_limit_whatever_the_archive_declares(tmp_path: Path) -> None:
    from jobstore.teachers import ArchiveError, unpack

    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("config.json", "{}")
        z.writestr("vocab.txt", b"\0" * (4 << 20))  # 4 MiB of zeros: a few KiB compressed
    assert archive.stat().st_size < 100_000
    with pytest.raises(ArchiveError, match="over 1048576 bytes") as caught:
        unpack(archive, tmp_path / "out", max_bytes=1 << 20)
    assert caught.value.code == "too_large"
    written = sum(p.stat().st_size for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert written <= 1 << 20  # it stopped before writing past the limit
