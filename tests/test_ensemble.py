"""Teacher ensembles: averaged word log-probabilities, members of every kind, the report, the checks."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from builders import SAMPLE, fixed_student, fixed_teacher, sample_words, tiny_bert
from pydantic import ValidationError
from safetensors.torch import load_file

from tagdistill.config import DataFiles, DistillConfig, JobConfig, StudentConfig
from tagdistill.data import Dataset, Sentence, load_dataset, read_file
from tagdistill.ensemble import Ensemble, StudentTeacher, load_member
from tagdistill.metrics import entity_scores
from tagdistill.pipeline import co_teach, run_job
from tagdistill.progress import NullProgress
from tagdistill.student import NeuralTagger
from tagdistill.tagger import save_student
from tagdistill.train import Example
from tagdistill.vocab import Vocab

LABELS = ["O", "B-PER", "I-PER"]
FILES = DataFiles(
    train=SAMPLE / "train.conll", dev=SAMPLE / "dev.conll", test=SAMPLE / "test.conll",
    unlabeled=SAMPLE / "unlabeled.txt",
)


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: more threads only wait on each other on a busy machine
    yield
    torch.set_num_threads(threads)


class FixedScores:
    """A member whose word scores are given: ``scores[i]`` for the i-th sentence asked."""

    def __init__(self, labels: list[str], scores: list[list[list[float]]]) -> None:
        self.labels, self.scores = labels, scores
        self.model = torch.nn.Linear(1, 1)

    def word_logits(self, sentences, batch_size=64, progress=None):
        return [torch.tensor(self.scores[i]) for i in range(len(sentences))]


def test_ensemble_averages_members_log_probabilities_in_the_datasets_label_order():
    ln = math.log
    # member a: uniform over O, B-PER, I-PER. Member b lists its labels in another order and gives
    # B-PER 2/4, O 1/4, I-PER 1/4 (scores ln 2, 0, 0) on the first word; on the second a gives
    # O 1/2, B-PER 1/4, I-PER 1/4 and b is sure of I-PER (9/10, the rest 1/20 each).
    a = FixedScores(LABELS, [[[0.0, 0.0, 0.0], [ln(2), 0.0, 0.0]]])
    b = FixedScores(["B-PER", "O", "I-PER"], [[[ln(2), 0.0, 0.0], [ln(1), ln(1), ln(18)]]])
    ensemble = Ensemble([a, b], LABELS, ["a", "b"])
    [logits] = ensemble.word_logits([["Anna", "Berg"]])
    expected = [
        [(ln(1 / 3) + ln(1 / 4)) / 2, (ln(1 / 3) + ln(1 / 2)) / 2, (ln(1 / 3) + ln(1 / 4)) / 2],
        [(ln(1 / 2) + ln(1 / 20)) / 2, (ln(1 / 4) + ln(1 / 20)) / 2, (ln(1 / 4) + ln(9 / 10)) / 2],
    ]
    torch.testing.assert_close(logits, torch.tensor(expected), atol=1e-6, rtol=0)
    # read as logits at T = 1 they give the members' renormalised geometric mean
    geometric = torch.tensor([[math.sqrt(1 / 3 * 1 / 4), math.sqrt(1 / 3 * 1 / 2), math.sqrt(1 / 3 * 1 / 4)]])
    torch.testing.assert_close(logits[:1].softmax(-1), geometric / geometric.sum(), atol=1e-6, rtol=0)
    assert ensemble.predict([["Anna", "Berg"]]) == [["B-PER", "I-PER"]]


class ScoresByWords:
    """A teacher whose word scores are given per sentence (by its words), whatever the order asked."""

    def __init__(self, labels: list[str], scores: dict[tuple[str, ...], list[list[float]]]) -> None:
        self.labels, self.scores = labels, scores
        self.model = torch.nn.Linear(1, 1)

    def word_logits(self, sentences, batch_size=64, progress=None):
        return [torch.tensor(self.scores[tuple(s)]) for s in sentences]


DEV = Sentence(["Anna", "Berg", "said"], ["B-PER", "I-PER", "O"])
TRAIN, UNLABELED = ["Eva", "ran"], ["Ole", "sang"]
# over (O, B-PER, I-PER): the teacher leans to O everywhere (1/2, 1/4, 1/4); the "good" baseline is sure
# of the right tags (8/10 on the right one, 1/10 each on the others) and finds what the teacher misses
LEAN_O = [math.log(2), 0.0, 0.0]
SURE = {"O": [math.log(8), 0.0, 0.0], "B-PER": [0.0, math.log(8), 0.0], "I-PER": [0.0, 0.0, math.log(8)]}
RIGHT = {("Anna", "Berg", "said"): [SURE["B-PER"], SURE["I-PER"], SURE["O"]],
         tuple(TRAIN): [SURE["B-PER"], SURE["O"]], tuple(UNLABELED): [SURE["B-PER"], SURE["O"]]}
LEANING = {words: [LEAN_O] * len(words) for words in RIGHT}


def co_teaching(teacher, baseline, mode: str = "kd_pseudo"):
    data = Dataset(train=[Sentence(TRAIN, ["B-PER", "O"])], dev=[DEV], test=[],
                   unlabeled=[Sentence(UNLABELED)], labels=LABELS, scheme="IOB2")
    labeled = [Example(TRAIN, [1, 0], torch.tensor(LEANING[tuple(TRAIN)]))]
    pseudo = [0, 0] if mode == "kd_pseudo" else None  # the teacher's argmax: O, O
    unlabeled = [Example(UNLABELED, pseudo, torch.tensor(LEANING[tuple(UNLABELED)]))]
    cfg = JobConfig(dataset_id="ds_test").model_copy(update={"distill": DistillConfig(mode=mode)})
    return labeled, unlabeled, co_teach(cfg, teacher, baseline, data, labeled, unlabeled, NullProgress())


def test_the_baseline_teaches_beside_the_teacher_when_together_they_tag_dev_better():
    teacher, baseline = ScoresByWords(LABELS, LEANING), ScoresByWords(LABELS, RIGHT)
    _, _, (labeled, unlabeled, teaching) = co_teaching(teacher, baseline)
    # dev: the teacher finds no entity (F1 0); the average finds Anna Berg (F1 1)
    assert teaching["by"] == "teacher_and_baseline"
    assert teaching["f1"] == {"dev": {"teacher": 0.0, "teacher_and_baseline": 1.0}}
    ln = math.log
    # "Eva": the mean of log(1/2, 1/4, 1/4) and log(1/10, 8/10, 1/10); "ran": of log(1/2, 1/4, 1/4) and
    # log(8/10, 1/10, 1/10)
    eva = [(ln(1 / 2) + ln(1 / 10)) / 2, (ln(1 / 4) + ln(8 / 10)) / 2, (ln(1 / 4) + ln(1 / 10)) / 2]
    ran = [(ln(1 / 2) + ln(8 / 10)) / 2, (ln(1 / 4) + ln(1 / 10)) / 2, (ln(1 / 4) + ln(1 / 10)) / 2]
    torch.testing.assert_close(labeled[0].teacher, torch.tensor([eva, ran]), atol=1e-6, rtol=0)
    assert labeled[0].tags == [1, 0]  # gold stays gold
    torch.testing.assert_close(unlabeled[0].teacher, torch.tensor([eva, ran]), atol=1e-6, rtol=0)
    assert unlabeled[0].tags == [1, 0]  # pseudo-labels from the average: Ole is B-PER, not the teacher's O


def test_the_teacher_teaches_alone_when_the_baseline_adds_nothing_on_dev():
    teacher, baseline = ScoresByWords(LABELS, RIGHT), ScoresByWords(LABELS, LEANING)
    before_labeled, before_unlabeled, (labeled, unlabeled, teaching) = co_teaching(teacher, baseline)
    assert teaching["by"] == "teacher"
    assert teaching["f1"]["dev"] == {"teacher": 1.0, "teacher_and_baseline": 1.0}  # a tie: not better
    assert labeled is before_labeled and unlabeled is before_unlabeled  # its examples, untouched


def test_co_teaching_in_kd_mode_gives_no_pseudo_labels():
    teacher, baseline = ScoresByWords(LABELS, LEANING), ScoresByWords(LABELS, RIGHT)
    _, _, (_, unlabeled, teaching) = co_teaching(teacher, baseline, "kd")
    assert teaching["by"] == "teacher_and_baseline" and unlabeled[0].tags is None


def test_member_with_other_labels_is_refused_by_name():
    a = FixedScores(LABELS, [])
    other = FixedScores(["O", "B-LOC", "I-LOC"], [])
    with pytest.raises(ValueError, match=r"teacher.ensemble\[1\] \(jobs/x\) was trained on labels"):
        Ensemble([a, other], LABELS, ["teacher.ensemble[0]", "teacher.ensemble[1] (jobs/x)"])


def test_crf_student_member_gives_finite_log_probabilities_where_its_constraints_forbid_a_label():
    cfg = StudentConfig(hidden=8, word_dim=8, char_dim=4, char_hidden=4, crf=True)
    student = NeuralTagger(cfg, Vocab.build([["Anna", "Berg"]], LABELS, cfg)).eval()
    [scores] = StudentTeacher(student, Path("unused")).word_logits([["Anna", "Berg"]])
    assert scores[0, LABELS.index("I-PER")] < -20  # I-PER cannot start a sentence: probability ~0
    assert torch.isfinite(scores).all()
    torch.testing.assert_close(scores.exp().sum(-1), torch.ones(2))


def test_ensemble_config_is_checked_field_by_field():
    def refused(teacher: dict) -> str:
        with pytest.raises(ValidationError) as err:
            JobConfig(dataset_id="d", teacher=teacher)
        return str(err.value)

    assert "two members or more" in refused({"ensemble": [{}]})
    assert "either path or an ensemble" in refused({"path": "t", "ensemble": [{}, {}]})
    assert "teacher.ensemble.1" in refused({"ensemble": [{}, {"path": "t", "seed": 1}]})
    # member 1's default seed is the job's + 1 = 14
    assert "teacher.ensemble[1] is the same teacher as teacher.ensemble[0]" in refused(
        {"ensemble": [{"seed": 14}, {}]})
    members = JobConfig(dataset_id="d", seed=5, teacher={"base_model": "m", "ensemble": [{}, {"path": "t"}]})
    assert [(m.base_model, m.seed, m.path) for m in members.teacher.members(5)] == [
        ("m", 5, None), (None, None, Path("t"))]
    assert "ensemble" not in JobConfig(dataset_id="d").model_dump()["teacher"]  # a single teacher: as before


@pytest.fixture(scope="module")
def ensemble_job(tmp_path_factory) -> tuple[Path, Path, dict]:
    """Two tiny BERT teachers fine-tuned here (seeds 13 and 14) and an earlier job's student as the third."""
    tmp = tmp_path_factory.mktemp("ensemble")
    labels = load_dataset(FILES).labels
    earlier = tmp / "earlier"
    # a student sure of B-PER everywhere (the tiny teachers learn little in 13 steps: it makes the
    # ensemble find entities), its labels in another order than the dataset's
    save_student(fixed_student(sample_words(), labels[::-1], "B-PER"), earlier / "student")
    cfg = JobConfig(
        data=FILES,
        teacher={"base_model": str(tiny_bert(tmp / "bert", sample_words())), "epochs": 1, "min_steps": 0,
                 "ensemble": [{}, {}, {"path": str(earlier)}]},
        distill={"epochs": 1, "min_steps": 0, "baseline": False},
    )
    return tmp / "run", earlier / "student", run_job(cfg, cfg.data, tmp / "run", NullProgress())


def members_of(work: Path, earlier: Path, labels: list[str]) -> list:
    """The ensemble job's members, loaded from their folders."""
    folders = (work / "teachers" / "0", work / "teachers" / "1", earlier)
    return [load_member(folder, torch.device("cpu"), labels) for folder in folders]


def test_ensemble_job_reports_each_members_f1_and_the_ensembles(ensemble_job):
    work, earlier, report = ensemble_job
    labels = load_dataset(FILES).labels
    members = members_of(work, earlier, labels)
    assert isinstance(members[2], StudentTeacher)
    test = read_file(SAMPLE / "test.conll", "conll")
    gold = [s.tags for s in test]
    entries = report["teacher"]["members"]
    assert [e["member"] for e in entries] == [0, 1, 2]
    for member, entry in zip(members, entries, strict=True):
        tags = member.predict([s.tokens for s in test])
        assert entry["test"]["f1"] == pytest.approx(entity_scores(gold, tags)["f1"])
        assert set(entry) >= {"dev", "parameters", "bytes_on_disk"}
    ensemble = Ensemble(members, labels, ["0", "1", "2"])
    f1 = entity_scores(gold, ensemble.predict([s.tokens for s in test]))["f1"]
    assert f1 > 0 and report["teacher"]["test"]["f1"] == pytest.approx(f1)
    assert report["teacher"]["parameters"] == sum(e["parameters"] for e in entries)
    assert report["teacher"]["bytes_on_disk"] == sum(e["bytes_on_disk"] for e in entries)
    assert members[0].digest() != members[1].digest()  # seeds 13 and 14: two teachers


def test_ensemble_job_distils_from_the_averaged_log_probabilities(ensemble_job):
    work, earlier, _ = ensemble_job
    data = load_dataset(FILES)
    members = members_of(work, earlier, data.labels)
    sentences = [s.tokens for s in data.train + data.unlabeled]
    expected = torch.cat(Ensemble(members, data.labels, ["0", "1", "2"]).word_logits(sentences))
    cached = load_file(str(work / "teacher_logits.safetensors"))["logits"]
    assert torch.allclose(cached, expected, atol=1e-5)


def test_ensemble_member_with_other_labels_fails_before_any_teacher_is_trained(tmp_path):
    labels = ["O", "B-FOO", "I-FOO"]
    bert = tiny_bert(tmp_path / "bert", sample_words())
    foreign = fixed_teacher(tmp_path / "foreign", bert, labels, "O")
    cfg = JobConfig(
        data=FILES, teacher={"base_model": str(bert), "ensemble": [{}, {"path": str(foreign)}]},
    )
    with pytest.raises(ValueError, match=rf"teacher.ensemble\[1\] \({foreign}\): .*B-FOO"):
        run_job(cfg, cfg.data, tmp_path / "run", NullProgress())
    assert not (tmp_path / "run" / "teachers").exists()


@pytest.mark.parametrize(
    ("ensemble", "param", "words"),
    [
        ([{}, {"path": "jobs/none"}], "teacher.ensemble.1.path", "does not exist in your jobs"),
        ([{"base_model": "/etc"}, {}], "teacher.ensemble.0.base_model", "MODEL_ROOTS"),
        ([{"base_model": "jobs/job_x"}, {}], "teacher.ensemble.0.base_model", "in your jobs"),
        ([{}], "teacher", "two members or more"),
        ([{}, {"path": "shared/t", "seed": 2}], "teacher.ensemble.1", "not both"),
    ],
)
def test_api_checks_each_members_path_and_base_model_by_name(client, dataset, ensemble, param, words):
    response = client.post("/jobs", json={"dataset_id": dataset["id"], "teacher": {"ensemble": ensemble}})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["param"] == param and words in error["message"]


def test_ensemble_job_through_the_api_registers_every_members_f1(client, dataset, tiny_teacher):
    from test_service import fast_job, wait_status

    body = fast_job(dataset["id"], tiny_teacher, ensemble=[{}, {"seed": 3}])
    body["distill"] |= {"epochs": 1, "baseline": False}
    response = client.post("/jobs", json=body)
    assert response.status_code == 202, response.text
    job = wait_status(client, response.json()["id"], {"succeeded"}, 300)
    model = client.get(f"/models/{job['model_id']}").json()
    assert [m["member"] for m in model["teacher"]["members"]] == [0, 1]
    assert all("f1" in m["test"] for m in model["teacher"]["members"])
    assert model["teacher_path"] == f"jobs/{job['id']}/teachers/0"  # what /predict loads as its teacher


def test_cli_takes_an_ensemble_as_json(tmp_path):
    from tagdistill.cli import build_config, parser

    args = parser().parse_args([
        "distill", "--out", str(tmp_path), "--train", "a", "--dev", "b",
        "--teacher-ensemble", '[{}, {"seed": 7}, {"path": "runs/job"}]',
    ])
    members = build_config(args).teacher.ensemble
    assert [(m.seed, m.path) for m in members] == [(None, None), (7, None), (None, Path("runs/job"))]


def test_ensemble_job_handed_on_after_labeling_reuses_its_members_and_their_logits(tmp_path):
    from test_teacher import Recorder

    bert = tiny_bert(tmp_path / "bert", sample_words())
    cfg = JobConfig(
        data=DataFiles(train=SAMPLE / "train.conll", dev=SAMPLE / "dev.conll"),
        teacher={"base_model": str(bert), "epochs": 1, "min_steps": 0, "ensemble": [{}, {}]},
        distill={"mode": "kd", "epochs": 1, "min_steps": 0, "baseline": False},
    )
    first, second = Recorder(), Recorder()
    run_job(cfg, cfg.data, tmp_path / "run", first, stop_after="labeling")
    assert [s for s in first.stages if s[0] == "teacher"] == [("teacher", 13), ("teacher", 13)]
    labels = read_file(SAMPLE / "train.conll", "conll")
    assert ("labeling", 2 * math.ceil(len(labels) / 64)) in first.stages  # each member takes a pass
    report = run_job(cfg, cfg.data, tmp_path / "run", second)
    assert second.stages[:3] == [("teacher", 0), ("teacher", 0), ("labeling", 0)]
    assert len(report["teacher"]["members"]) == 2
