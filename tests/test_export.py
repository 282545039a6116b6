"""The student on ONNX Runtime: export, the same tags as torch, int8, which runtime Tagger.load picks,
the CLI's export, and the export at the end of a job."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from builders import SAMPLE, sample_words, tiny_bert

from tagdistill.cli import main
from tagdistill.config import DataFiles, DistillConfig, JobConfig, StudentConfig
from tagdistill.crf import CRF
from tagdistill.data import read_file
from tagdistill.export import (
    INT8_FILE,
    ONNX_FILE,
    OnnxStudent,
    crf_marginals,
    export_student,
    export_teacher,
    viterbi,
)
from tagdistill.pipeline import run_job
from tagdistill.progress import NullProgress
from tagdistill.schemes import label_index, spans
from tagdistill.tagger import Tagger, load_student, save_student
from tagdistill.teacher import Teacher
from tagdistill.train import Example, train_student

SMALL = {"word_dim": 16, "char_dim": 8, "char_hidden": 8, "hidden": 16, "embeddings": None}
VARIANTS = {  # every char encoder, encoder and output layer at least once
    "softmax": {},
    "crf-charlstm-2layers": {"crf": True, "char_encoder": "lstm", "layers": 2},
    "idcnn-crf": {"encoder": "idcnn", "crf": True},
}


def _tokens(split: str) -> list[list[str]]:
    return [s.tokens for s in read_file(SAMPLE / f"{split}.conll", "conll")]


@pytest.fixture(scope="module")
def students(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Small students trained briefly on the sample (about 4 s each: dev F1 0.5-0.7), exported with int8."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("students")
    train, dev = read_file(SAMPLE / "train.conll", "conll"), read_file(SAMPLE / "dev.conll", "conll")
    labels = sorted({t for s in train for t in s.tags}, key=lambda t: (t != "O", t))
    label_id = label_index(labels)
    examples = [Example(s.tokens, [label_id[t] for t in s.tags]) for s in train]
    folders = {}
    for name, variant in VARIANTS.items():
        train_student(DistillConfig(mode="alone", epochs=6, min_steps=0, batch_size=16, learning_rate=1e-2),
                      StudentConfig(**SMALL, **variant), labels, examples, [], dev, root / name,
                      torch.device("cpu"), NullProgress(), 0)
        export_student(root / name, int8=True)
        folders[name] = root / name
    return folders


def _copy(folder: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(folder, tmp_path / folder.name))


@pytest.mark.parametrize("variant", VARIANTS)
def test_onnx_student_gives_the_same_tags_as_torch_on_the_sample_test_split(students, variant) -> None:
    on_torch = Tagger.load(students[variant], runtime="torch")
    on_onnx = Tagger.load(students[variant])
    assert (on_torch.runtime, on_onnx.runtime) == ("torch", "onnx")
    test = _tokens("test")
    expected = on_torch.tag(test)
    assert sum(t != "O" for s in expected for t in s) > 50  # the student found entities: a real check
    for batch_size in (1, 7, 64):  # alone, and padded batches of different lengths
        assert on_onnx.tag(test, batch_size) == expected


@pytest.mark.parametrize("variant", VARIANTS)
def test_onnx_emissions_match_torch_on_padded_batches_of_different_lengths(students, variant) -> None:
    model = load_student(students[variant])
    runner = OnnxStudent(students[variant] / ONNX_FILE)
    test = _tokens("test")
    worst = 0.0
    for batch in (test[:1], test[1:6], test[6:38], [test[40], test[41][:2], ["Unseen", "wörds", "!"]]):
        words, cases, chars, mask = model.vocab.encode(batch)
        with torch.no_grad():
            expected = model(words, cases, chars, mask).numpy()
        got, got_mask = runner.emissions(batch)
        assert got.shape == expected.shape and (got_mask == mask.numpy()).all()
        worst = max(worst, float(np.abs(got - expected)[mask.numpy()].max()))
    assert worst < 1e-4


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_entity_has_a_score_in_0_1_and_onnx_gives_torchs_scores(students, variant) -> None:
    texts = [" ".join(tokens) for tokens in _tokens("test")[:40]]
    on_torch = Tagger.load(students[variant], runtime="torch").predict(texts)
    on_onnx = Tagger.load(students[variant]).predict(texts)
    torch_entities = [e for r in on_torch for e in r["entities"]]
    onnx_entities = [e for r in on_onnx for e in r["entities"]]
    assert len(torch_entities) > 10
    assert [{**e, "score": 0} for e in onnx_entities] == [{**e, "score": 0} for e in torch_entities]
    for a, b in zip(torch_entities, onnx_entities, strict=True):
        assert 0 <= a["score"] <= 1 and abs(a["score"] - b["score"]) <= 1e-3
    assert len({e["score"] for e in torch_entities}) > 1  # a real probability, not a constant


@pytest.mark.parametrize("variant", ["softmax", "crf-charlstm-2layers"])
def test_an_entitys_score_is_the_mean_probability_of_its_tokens_predicted_labels(students, variant) -> None:
    model = load_student(students[variant])
    sentences = [s for s in _tokens("test") if len(s) > 8][:10]
    results = Tagger.load(students[variant], runtime="torch").predict(sentences)
    checked = 0
    for tokens, result in zip(sentences, results, strict=True):
        words, cases, chars, mask = model.vocab.encode([tokens])
        with torch.no_grad():
            emissions = model(words, cases, chars, mask)
            probs = model.crf.marginals(emissions, mask) if model.crf else emissions.softmax(dim=2)
        best = model.decode(emissions, mask)[0]  # the model's labels, before the IOB2 repair
        for entity, (_, first, last) in zip(result["entities"], spans(result["tags"]), strict=True):
            expected = float(np.mean([probs[0, t, best[t]].item() for t in range(first, last)]))
            assert entity["score"] == pytest.approx(expected, abs=1e-4)
            checked += 1
    assert checked > 3


def test_teacher_exported_to_onnx_gives_the_torch_teachers_word_logits_tags_and_scores(tmp_path) -> None:
    torch.set_num_threads(1)
    labels = ["O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
    bert = tiny_bert(tmp_path / "bert", sample_words())
    Teacher.create(str(bert), labels, torch.device("cpu")).save(tmp_path / "teacher")
    info = export_teacher(tmp_path / "teacher")
    assert info["fp32"]["max_abs_diff"] < 1e-4 and info["checked_sentences"] > 50
    assert info["fp32"]["bytes"] == (tmp_path / "teacher" / ONNX_FILE).stat().st_size
    on_torch = Tagger.load(tmp_path / "teacher", runtime="torch")
    on_onnx = Tagger.load(tmp_path / "teacher")
    assert (on_torch.runtime, on_onnx.runtime) == ("torch", "onnx")
    test = _tokens("test")
    for batch_size in (1, 32):  # alone, and padded batches of windows
        expected = on_torch.model.word_logits(test, batch_size)
        got = on_onnx.onnx.word_logits(test, batch_size)
        assert max(float((a - b).abs().max()) for a, b in zip(got, expected, strict=True)) < 1e-4
    assert on_onnx.tag(test) == on_torch.tag(test)
    texts = [" ".join(tokens) for tokens in test[:20]]
    torch_entities = [e for r in on_torch.predict(texts) for e in r["entities"]]
    onnx_entities = [e for r in on_onnx.predict(texts) for e in r["entities"]]
    assert torch_entities and len(onnx_entities) == len(torch_entities)
    assert all(abs(a["score"] - b["score"]) <= 1e-3 and 0 <= a["score"] <= 1
               for a, b in zip(torch_entities, onnx_entities, strict=True))
    with pytest.raises(ValueError, match="choose one of"):
        Tagger.load(tmp_path / "teacher", runtime="onnx-int8")  # a teacher has no int8 file


def test_cli_export_teacher_writes_model_onnx_into_a_job_folders_teacher(tmp_path, capsys) -> None:
    labels = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
    bert = tiny_bert(tmp_path / "bert", sample_words())
    Teacher.create(str(bert), labels, torch.device("cpu")).save(tmp_path / "job" / "teacher")
    main(["export", "--model", str(tmp_path / "job"), "--teacher", "--check", str(SAMPLE / "dev.conll")])
    out = json.loads(capsys.readouterr().out)
    assert out["model"] == str(tmp_path / "job" / "teacher") and out["fp32"]["max_abs_diff"] < 1e-4
    assert out["fp32"]["bytes"] == (tmp_path / "job" / "teacher" / ONNX_FILE).stat().st_size > 0


def test_int8_file_is_smaller_and_agrees_with_fp32_on_95_percent_of_tokens(students) -> None:
    for folder in students.values():
        assert (folder / INT8_FILE).stat().st_size < (folder / ONNX_FILE).stat().st_size
        fp32, int8 = Tagger.load(folder, runtime="onnx"), Tagger.load(folder, runtime="onnx-int8")
        assert int8.runtime == "onnx-int8"
        test = _tokens("test")
        pairs = [(a, b) for x, y in zip(fp32.tag(test), int8.tag(test), strict=True)
                 for a, b in zip(x, y, strict=True)]
        assert sum(a == b for a, b in pairs) >= 0.95 * len(pairs)


def test_tagger_load_picks_onnx_runtime_when_the_file_is_there_and_torch_once_it_is_removed(
    students, tmp_path
) -> None:
    folder = _copy(students["softmax"], tmp_path)
    assert Tagger.load(folder).runtime == "onnx"
    assert Tagger.load(folder, runtime="torch").runtime == "torch"
    (folder / ONNX_FILE).unlink()
    tagger = Tagger.load(folder)
    assert tagger.runtime == "torch" and tagger.onnx is None
    assert tagger.predict(["Anna Berg visited Paris ."])[0]["tokens"][-1] == "."
    with pytest.raises(FileNotFoundError, match="tagdistill export"):
        Tagger.load(folder, runtime="onnx")
    assert Tagger.load(folder, runtime="onnx-int8").runtime == "onnx-int8"  # the int8 file is still there


def test_onnx_threads_follow_torch_by_default_or_the_argument(students) -> None:
    assert Tagger.load(students["softmax"]).onnx.threads == torch.get_num_threads()
    assert Tagger.load(students["softmax"], threads=2).onnx.threads == 2


def test_an_onnx_file_of_other_weights_is_never_used(students, tmp_path) -> None:
    folder = _copy(students["softmax"], tmp_path)
    stale = (folder / ONNX_FILE).read_bytes()
    model = load_student(folder)
    with torch.no_grad():
        model.out.bias.add_(1.0)
    save_student(model, folder)  # new weights: the exports made from the old ones are removed
    assert not (folder / ONNX_FILE).exists() and not (folder / INT8_FILE).exists()
    (folder / ONNX_FILE).write_bytes(stale)  # an old file put back by hand
    with pytest.warns(UserWarning, match="other weights"):
        assert Tagger.load(folder).runtime == "torch"
    with pytest.raises(ValueError, match="other weights"):
        Tagger.load(folder, runtime="onnx")


def test_numpy_viterbi_is_the_crfs_viterbi() -> None:
    labels = ["O", "B-LOC", "B-PER", "I-LOC", "I-PER"]
    torch.manual_seed(0)
    crf = CRF(labels)
    emissions = torch.randn(6, 9, len(labels)) * 3
    mask = torch.arange(9)[None, :] < torch.tensor([9, 1, 4, 0, 7, 2])[:, None]
    with torch.no_grad():
        got = viterbi(emissions.numpy(), mask.sum(1).numpy(), (crf.start + crf.start_penalty).numpy(),
                      crf.end.numpy(), (crf.transitions + crf.transition_penalty).numpy())
    assert got == crf.viterbi(emissions, mask)
    assert [len(p) for p in got] == [9, 1, 4, 0, 7, 2]


def test_cli_export_writes_the_onnx_files_into_a_job_folders_student(students, tmp_path, capsys) -> None:
    job = tmp_path / "job"
    shutil.copytree(students["crf-charlstm-2layers"], job / "student")
    for name in (ONNX_FILE, INT8_FILE):
        (job / "student" / name).unlink()
    main(["export", "--model", str(job), "--int8", "--check", str(SAMPLE / "dev.conll")])
    out = json.loads(capsys.readouterr().out)
    assert out["model"] == str(job / "student") and out["checked_sentences"] == 100
    assert out["fp32"]["max_abs_diff"] < 1e-4
    for kind, name in (("fp32", ONNX_FILE), ("int8", INT8_FILE)):
        assert out[kind]["bytes"] == (job / "student" / name).stat().st_size > 0
    assert not list((job / "student").glob("*.tmp"))
    main(["export", "--model", str(job / "student")])  # fp32 only: no int8 file of an earlier export is left
    assert "int8" not in json.loads(capsys.readouterr().out)
    assert (job / "student" / ONNX_FILE).is_file() and not (job / "student" / INT8_FILE).exists()


def test_job_exports_its_served_student_and_reports_the_int8_f1(tmp_path) -> None:
    torch.set_num_threads(1)
    cfg = JobConfig(
        data=DataFiles(train=SAMPLE / "train.conll", dev=SAMPLE / "dev.conll", test=SAMPLE / "test.conll"),
        teacher={"base_model": str(tiny_bert(tmp_path / "bert", sample_words())), "epochs": 1,
                 "min_steps": 0},
        student=SMALL, distill={"epochs": 2, "min_steps": 0, "mode": "kd"},
    )
    report = run_job(cfg, cfg.data, tmp_path / "run", NullProgress())
    student = tmp_path / "run" / "student"
    assert report["onnx"]["fp32"]["max_abs_diff"] < 1e-4
    assert report["onnx"]["int8"]["bytes"] == (student / INT8_FILE).stat().st_size
    assert Tagger.load(tmp_path / "run").runtime == "onnx"
    int8 = report["student_int8"]
    for split in ("dev", "test"):
        assert int8[split]["support"] == report["student"][split]["support"]
        change = int8[split]["f1"] - report["student"][split]["f1"]
        assert int8["f1_change"][split]["f1"] == pytest.approx(change)
    assert json.loads((tmp_path / "run" / "report.json").read_text())["student_int8"] == int8
    assert not any("ONNX" in w for w in report["warnings"])


def test_numpy_marginals_are_the_crfs_marginals() -> None:
    labels = ["O", "B-LOC", "B-PER", "I-LOC", "I-PER"]
    torch.manual_seed(0)
    crf = CRF(labels)
    emissions = torch.randn(6, 9, len(labels)) * 3
    lengths = torch.tensor([9, 1, 4, 0, 7, 2])
    mask = torch.arange(9)[None, :] < lengths[:, None]
    with torch.no_grad():
        got = crf_marginals(emissions.numpy(), lengths.numpy(), (crf.start + crf.start_penalty).numpy(),
                            crf.end.numpy(), (crf.transitions + crf.transition_penalty).numpy())
        expected = crf.marginals(emissions, mask)
    assert np.abs(got - expected.numpy())[mask.numpy()].max() < 1e-5
