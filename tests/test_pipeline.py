"""A whole job through the core: teacher, labeling, student, evaluation, save/load, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from builders import SAMPLE, sample_words, tiny_bert

from tagdistill.cli import main
from tagdistill.config import DataFiles, JobConfig
from tagdistill.data import read_file
from tagdistill.metrics import entity_scores
from tagdistill.pipeline import run_job
from tagdistill.progress import NullProgress
from tagdistill.tagger import Tagger

CONLL = Path(__file__).resolve().parents[2] / "shared" / "data" / "conll2003"


@pytest.fixture(scope="module")
def tiny_job(tmp_path_factory) -> tuple[Path, dict]:
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("job")
    cfg = JobConfig(
        data=DataFiles(
            train=SAMPLE / "train.conll", dev=SAMPLE / "dev.conll", test=SAMPLE / "test.conll",
            unlabeled=SAMPLE / "unlabeled.txt",
        ),
        teacher={"base_model": str(tiny_bert(tmp / "bert", sample_words())), "epochs": 1, "min_steps": 0},
        distill={"epochs": 3, "min_steps": 0, "mode": "kd_pseudo"},
    )
    return tmp / "run", run_job(cfg, cfg.data, tmp / "run", NullProgress())


def test_job_reports_teacher_both_students_and_the_served_one(tiny_job):
    work, report = tiny_job
    for name in ("teacher", "student", "distilled", "baseline"):
        assert set(report[name]) >= {"dev", "test", "parameters", "bytes_on_disk", "words_per_second"}
        assert report[name]["test"]["support"] == report["teacher"]["test"]["support"] > 0
        assert report[name]["words_per_second"]["batch_32"] > 0
    assert report["speedup"]["batch_32"] == pytest.approx(
        report["student"]["words_per_second"]["batch_32"] / report["teacher"]["words_per_second"]["batch_32"]
    )
    assert json.loads((work / "report.json").read_text())["student"] == report["student"]
    assert (work / "teacher_logits.safetensors").is_file()
    for name in ("distilled", "baseline"):  # the same budget: 3 passes over the labeled sentences
        assert [e["epoch"] for e in report["student_training"][name]["epochs"]] == [1, 2, 3]


def test_job_serves_the_student_with_the_better_dev_f1_and_reports_the_gain(tiny_job):
    work, report = tiny_job
    dev = {name: report[name]["dev"]["f1"] for name in ("distilled", "baseline")}
    served = report["served"]["student"]
    assert dev[served] == max(dev.values())
    assert report["student"] == report[served]
    assert f"{dev[served]:.4f}" in report["served"]["reason"]
    served_weights = (work / served / "model.safetensors").read_bytes()
    assert (work / "student" / "model.safetensors").read_bytes() == served_weights
    gain = report["distillation_gain"]
    for split in ("dev", "test"):
        difference = report["distilled"][split]["f1"] - report["baseline"][split]["f1"]
        assert gain[split]["f1"] == pytest.approx(difference)
        assert set(gain[split]["per_type"]) == set(report["teacher"][split]["per_type"])
    assert isinstance(report["warnings"], list)


def test_job_says_who_taught_the_distilled_student_chosen_on_dev(tiny_job):
    _, report = tiny_job
    teaching = report["teaching"]
    f1 = teaching["f1"]
    # the teacher's own figures, as evaluate scored them: the same argmax tags, repaired
    for split in ("dev", "test"):
        assert f1[split]["teacher"] == pytest.approx(report["teacher"][split]["f1"])
    together = f1["dev"]["teacher_and_baseline"] > f1["dev"]["teacher"]
    assert teaching["by"] == ("teacher_and_baseline" if together else "teacher")
    assert f"{f1['dev']['teacher']:.4f}" in teaching["reason"]


def test_job_analysis_matches_the_served_students_test_scores(tiny_job):
    from tagdistill.analysis import MISSED, SPURIOUS

    _, report = tiny_job
    analysis = report["analysis"]
    other = "baseline" if report["served"]["student"] == "distilled" else "distilled"
    assert analysis["split"] == "test" and set(analysis["confusion"]) == {"teacher", "student", other}
    for who in ("teacher", "student", other):  # the matrix adds up to the report's recall on test
        matrix, scores = analysis["confusion"][who], report[who]["test"]
        right = sum(n for g, row in matrix.items() for p, n in row.items() if g == p)
        gold = sum(n for g, row in matrix.items() if g != SPURIOUS for n in row.values())
        assert gold == scores["support"] and right / gold == pytest.approx(scores["recall"])
        assert all(p != MISSED for p in matrix.get(SPURIOUS, {}))
    for row in analysis["disagreements"]:
        assert row["teacher"] != row["student"] and row["types"]


def test_logit_cache_is_recomputed_for_another_teacher_and_reused_for_the_same(tiny_job, tmp_path):
    from test_teacher import Recorder

    from tagdistill.pipeline import cached_logits
    from tagdistill.teacher import Teacher

    work, _ = tiny_job
    teacher = Teacher.load(work / "teacher", torch.device("cpu"))
    sentences = read_file(SAMPLE / "dev.conll", "conll")[:20]
    cfg = JobConfig(data=DataFiles(train=SAMPLE / "train.conll", dev=SAMPLE / "dev.conll"))
    first, again, retrained = Recorder(), Recorder(), Recorder()
    a = cached_logits(teacher, sentences, cfg, tmp_path, first)
    assert cached_logits(teacher, sentences, cfg, tmp_path, again) and again.stages == [("labeling", 0)]
    with torch.no_grad():  # the same folder, other weights: a teacher retrained with another config
        teacher.model.classifier.bias.add_(1.0)
    b = cached_logits(teacher, sentences, cfg, tmp_path, retrained)
    assert retrained.stages[0][1] > 0
    assert not torch.allclose(a[0], b[0])
    shorter = [s for s in sentences]
    shorter[0] = type(shorter[0])(list(reversed(shorter[0].tokens)))  # other words, same lengths
    other = Recorder()
    cached_logits(teacher, shorter, cfg, tmp_path, other)
    assert other.stages[0][1] > 0


def test_saved_student_reproduces_its_reported_scores(tiny_job):
    work, report = tiny_job
    tagger = Tagger.load(work)  # a job folder loads its (served) student
    assert tagger.kind == "student" and tagger.path == work / "student"
    for split in ("dev", "test"):
        sentences = read_file(SAMPLE / f"{split}.conll", "conll")
        scores = entity_scores([s.tags for s in sentences], tagger.tag([s.tokens for s in sentences]))
        assert scores["f1"] == pytest.approx(report["student"][split]["f1"])
    [result] = tagger.predict(["Anna  Berg visited Paris ."])
    assert result["tokens"] == ["Anna", "Berg", "visited", "Paris", "."]
    for ent in result["entities"]:
        assert "Anna  Berg visited Paris ."[ent["start"] : ent["end"]] == ent["text"]


def test_teacher_folder_loads_as_a_tagger(tiny_job):
    work, _ = tiny_job
    teacher = Tagger.load(work / "teacher")
    assert teacher.kind == "teacher"
    [result] = teacher.predict([["EU", "rejects", "German", "call"]])
    assert len(result["tags"]) == 4


def test_reused_teacher_must_share_labels(tiny_job, tmp_path):
    work, _ = tiny_job
    (tmp_path / "train.conll").write_text("a B-ZZZ\nb O\n")
    (tmp_path / "dev.conll").write_text("a B-ZZZ\n")
    cfg = JobConfig(data={"train": tmp_path / "train.conll", "dev": tmp_path / "dev.conll"},
                    teacher={"path": work / "teacher"})
    with pytest.raises(ValueError, match="labels"):
        run_job(cfg, cfg.data, tmp_path / "run", NullProgress())


def test_cli_distill_evaluate_predict(tiny_job, tmp_path, capsys):
    work, _ = tiny_job
    config = tmp_path / "job.json"
    settings = {"distill": {"epochs": 1, "min_steps": 0, "loss": "mse"}, "student": {"hidden": 32}}
    config.write_text(json.dumps(settings))
    main([
        "distill", "--teacher", str(work / "teacher"), "--train", str(SAMPLE / "train.conll"),
        "--dev", str(SAMPLE / "dev.conll"), "--out", str(tmp_path / "out"), "--config", str(config),
        "--mode", "kd", "--temperature", "3",
    ])
    summary = json.loads(capsys.readouterr().out)
    assert "student_dev_f1" in summary
    saved = json.loads((tmp_path / "out" / "report.json").read_text())["config"]
    wanted = {"loss": "mse", "mode": "kd", "temperature": 3.0, "epochs": 1}
    assert {k: saved["distill"][k] for k in wanted} == wanted
    assert saved["student"]["hidden"] == 32

    main(["evaluate", "--model", str(tmp_path / "out"), "--test", str(SAMPLE / "test.conll")])
    evaluation = json.loads(capsys.readouterr().out)
    assert evaluation["kind"] == "student" and evaluation["test"]["support"] > 0
    student_files = sum(f.stat().st_size for f in (tmp_path / "out" / "student").iterdir())
    assert evaluation["bytes_on_disk"] == student_files  # the student's folder, not the whole job's

    text = tmp_path / "in.txt"
    text.write_text("Anna Berg visited Paris .\n\nThe end .\n")
    main(["predict", "--model", str(tmp_path / "out"), "--input", str(text)])
    blocks = capsys.readouterr().out.strip().split("\n\n")
    assert [len(b.splitlines()) for b in blocks] == [5, 3]


def test_cli_names_bad_data(tmp_path):
    (tmp_path / "train.conll").write_text("a B-X\nb O extra\n")
    (tmp_path / "dev.conll").write_text("a B-X\n")
    with pytest.raises(SystemExit, match=r"train.conll, line 2"):
        main(["train-teacher", "--train", str(tmp_path / "train.conll"), "--dev", str(tmp_path / "dev.conll"),
              "--out", str(tmp_path / "t")])


def test_every_job_config_field_is_a_flag_of_distill_and_train_teacher():
    from tagdistill.cli import parser

    dests = {
        name: {a.dest for a in parser()._subparsers._group_actions[0].choices[name]._actions}
        for name in ("distill", "train-teacher")
    }
    sections = {"data": DataFiles, **{k: type(getattr(JobConfig(dataset_id="x"), k))
                                      for k in ("teacher", "student", "distill")}}
    fields = {f"{s}.{f}" for s, model in sections.items() for f in model.model_fields} | {"seed", "device"}
    assert fields <= dests["distill"]
    assert {f for f in fields if f.split(".")[0] in ("data", "teacher")} | {"seed"} <= dests["train-teacher"]


def test_cli_flags_take_the_schemas_types_and_names(tmp_path):
    from tagdistill.cli import build_config, parser

    args = parser().parse_args([
        "train-teacher", "--out", str(tmp_path), "--train", "a", "--dev", "b", "--epochs", "3",
        "--min-steps", "0",
    ])
    cfg = build_config(args)
    assert (cfg.teacher.epochs, cfg.teacher.min_steps, cfg.distill.epochs) == (3, 0, 40)
    args = parser().parse_args([
        "distill", "--out", str(tmp_path), "--train", "a", "--dev", "b", "--no-baseline", "--crf",
        "--teacher-min-steps", "5", "--student-hidden", "64", "--lr", "0.01",
    ])
    cfg = build_config(args)
    assert (cfg.distill.baseline, cfg.student.crf, cfg.teacher.min_steps) == (False, True, 5)
    assert (cfg.student.hidden, cfg.distill.learning_rate) == (64, 0.01)


def test_cli_explains_a_missing_dev_file_and_a_bad_config_in_plain_words(tmp_path, capsys):
    with pytest.raises(SystemExit) as missing:
        main(["distill", "--train", str(SAMPLE / "train.conll"), "--out", str(tmp_path / "o")])
    assert "data.dev: Field required" in str(missing.value) and "pydantic" not in str(missing.value)
    bad = tmp_path / "job.json"
    bad.write_text("{not json")
    with pytest.raises(SystemExit, match=r"--config .*job.json: Expecting property name"):
        main(["distill", "--train", "a", "--dev", "b", "--out", str(tmp_path / "o"), "--config", str(bad)])


def test_real_minilm_student_on_conll_slice(tmp_path):
    """The real MiniLM teacher and a KD + pseudo-label student on a slice of CoNLL-2003.

    500 labeled sentences, 1,500 more as unlabeled text; about 3 minutes on 2 CPU cores.
    """
    if not CONLL.is_dir():
        pytest.skip("the shared CoNLL-2003 data is not present")
    train = read_file(CONLL / "train.txt", "conll")
    dev = read_file(CONLL / "valid.txt", "conll")
    test = read_file(CONLL / "test.txt", "conll")

    def write(path: Path, sents, tags: bool = True) -> Path:
        with open(path, "w") as f:
            for s in sents:
                pairs = zip(s.tokens, s.tags, strict=True)
                f.writelines(f"{t} {g}\n" if tags else f"{t}\n" for t, g in pairs)
                f.write("\n")
        return path

    files = DataFiles(
        train=write(tmp_path / "train", train[:500]), dev=write(tmp_path / "dev", dev[:200]),
        test=write(tmp_path / "test", test[:400]),
        unlabeled=write(tmp_path / "unl", train[500:2000], tags=False), unlabeled_format="conll",
    )
    cfg = JobConfig(
        data=files,
        teacher={"epochs": 3, "min_steps": 0, "learning_rate": 3e-4, "batch_size": 16},
        distill={"epochs": 6, "min_steps": 200, "mode": "kd_pseudo"},
    )
    report = run_job(cfg, files, tmp_path / "run", NullProgress())
    teacher_f1, student_f1 = report["teacher"]["test"]["f1"], report["student"]["test"]["f1"]
    print(f"teacher F1 {teacher_f1:.3f}, student F1 {student_f1:.3f}, speedup {report['speedup']}, "
          f"seconds {report['seconds']}")
    assert teacher_f1 > 0.55
    assert student_f1 > 0.45
    assert report["baseline"]["test"]["f1"] > 0.45
    assert report["speedup"]["batch_32"] > 1 and report["speedup"]["batch_1"] > 1


def test_teacher_logits_are_split_between_labeled_and_unlabeled_sentences(tiny_job, tmp_path):
    from tagdistill.data import load_dataset
    from tagdistill.pipeline import label_with_teacher
    from tagdistill.teacher import Teacher

    work, _ = tiny_job
    files = DataFiles(train=SAMPLE / "train.conll", dev=SAMPLE / "dev.conll",
                      unlabeled=SAMPLE / "unlabeled.txt")
    data = load_dataset(files)
    data.train, data.unlabeled = data.train[:7], data.unlabeled[:5]
    teacher = Teacher.load(work / "teacher", torch.device("cpu"))
    cfg = JobConfig(data=files)  # kd_pseudo: soft targets everywhere, the teacher's argmax on unlabeled
    labeled, unlabeled = label_with_teacher(cfg, teacher, data, tmp_path, NullProgress())
    own = teacher.word_logits([s.tokens for s in data.train + data.unlabeled])
    assert [e.tokens for e in labeled] == [s.tokens for s in data.train]
    assert [e.tokens for e in unlabeled] == [s.tokens for s in data.unlabeled]
    for example, logits in zip(labeled + unlabeled, own, strict=True):
        assert torch.allclose(example.teacher, logits, atol=1e-5)
    index = {label: i for i, label in enumerate(data.labels)}
    assert [e.tags for e in labeled] == [[index[t] for t in s.tags] for s in data.train]  # gold stays gold
    assert [e.tags for e in unlabeled] == [t.argmax(-1).tolist() for t in own[7:]]  # pseudo-labels
