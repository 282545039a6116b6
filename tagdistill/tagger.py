"""Load a trained model folder and tag text: ``Tagger.load(dir).predict(["EU rejects German call ."])``.

A student folder holds ``model.safetensors`` and ``tagdistill.json`` (format version, kind,
student config, vocabulary, labels), and once exported ``model.onnx`` (and ``model.int8.onnx``,
``tagdistill.export``); a teacher folder is a Hugging Face folder with the same ``tagdistill.json``
beside it. No pickle anywhere. A job folder (with ``student/`` inside) loads its student. A student
runs on ONNX Runtime when its up-to-date ``model.onnx`` is there (same tags as torch), on torch
otherwise; so does a teacher whose ``model.onnx`` (``tagdistill.export.export_teacher``) is there.
Every entity that ``predict`` returns has a ``score`` (see ``Tagger.predict``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from tagdistill.config import StudentConfig
from tagdistill.export import INT8_FILE, ONNX_FILE, OnnxStudent, OnnxTeacher, open_runtime
from tagdistill.meta import META_FILE, read_meta, write_meta
from tagdistill.schemes import repair_iob2, spans
from tagdistill.student import NeuralTagger
from tagdistill.tokenizer import tokenize
from tagdistill.vocab import Vocab

if TYPE_CHECKING:  # transformers is slow to import: a teacher's modules load only when one is used
    from tagdistill.teacher import Teacher

WEIGHTS_FILE = "model.safetensors"


def model_folder(path: Path) -> Path:
    """The model folder ``path`` names: itself, or a job folder's ``student/``."""
    path = Path(path)
    if not (path / META_FILE).is_file() and (path / "student" / META_FILE).is_file():
        return path / "student"
    return path


def save_student(model: NeuralTagger, path: Path, extra: dict[str, Any] | None = None) -> None:
    """Weights as safetensors, and everything that rebuilds the model as JSON."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    for name in (ONNX_FILE, INT8_FILE):  # made from the old weights (tagdistill.export): stale now
        (path / name).unlink(missing_ok=True)
    save_file(state, str(path / WEIGHTS_FILE))
    write_meta(path, "student", {
        "config": model.cfg.model_dump(mode="json"),
        "vocab": model.vocab.to_dict(),
        "labels": model.vocab.labels,
        **(extra or {}),
    })


def load_student(path: Path, device: torch.device | str = "cpu") -> NeuralTagger:
    path = Path(path)
    meta = read_meta(path, "student")
    vocab = Vocab.from_dict(meta["vocab"])
    cfg = StudentConfig.model_validate(meta["config"])
    # The saved weights fix the embedding size; pretrained vectors are not needed to rebuild it.
    state = load_file(str(path / WEIGHTS_FILE), device=str(device))
    vectors = state.get("word_emb.weight")
    model = NeuralTagger(cfg.model_copy(update={"embeddings": None}), vocab, vectors=vectors)
    model.load_state_dict(state)
    return model.to(device).eval()


def student_predict(
    model: NeuralTagger | OnnxStudent, sentences: list[list[str]], batch_size: int = 64
) -> list[list[str]]:
    """Valid IOB2 tags (``repair_iob2``) for pre-tokenized sentences; batches are length-sorted,
    order is kept. A torch ``model`` should be in eval mode (``load_student`` returns it so), or
    dropout stays on; an ``OnnxStudent`` (``tagdistill.export``) runs on ONNX Runtime."""
    return student_scored(model, sentences, batch_size, scores=False)[0]


def student_scored(
    model: NeuralTagger | OnnxStudent, sentences: list[list[str]], batch_size: int = 64, scores: bool = True
) -> tuple[list[list[str]], list[list[float]]]:
    """``student_predict``'s tags and, with ``scores``, each token's probability of its predicted label
    (``token_scores``; otherwise empty lists)."""
    labels = model.vocab.labels
    order = sorted(range(len(sentences)), key=lambda i: len(sentences[i]))
    tags: list[list[str]] = [[] for _ in sentences]
    token_scores: list[list[float]] = [[] for _ in sentences]
    for start in range(0, len(order), batch_size):
        idx = [i for i in order[start : start + batch_size] if sentences[i]]
        if not idx:
            continue
        best, probs = model.tag_ids([sentences[i] for i in idx], probabilities=scores)
        for row, (i, ids) in enumerate(zip(idx, best, strict=True)):
            tags[i] = repair_iob2([labels[j] for j in ids])
            if probs is not None:
                token_scores[i] = probs[row, np.arange(len(ids)), ids].tolist()
    return tags, token_scores


def teacher_scored(
    teacher: Teacher | OnnxTeacher, sentences: list[list[str]], batch_size: int = 64
) -> tuple[list[list[str]], list[list[float]]]:
    """``Teacher.predict``'s tags (of a torch or ONNX Runtime teacher) and each token's softmax
    probability of its argmax label."""
    tags, token_scores = [], []
    for logits in teacher.word_logits(sentences, batch_size):
        probs, best = logits.softmax(dim=-1).max(dim=-1)  # (n,) each
        tags.append(repair_iob2([teacher.labels[i] for i in best.tolist()]))
        token_scores.append(probs.tolist())
    return tags, token_scores


def same_tagging(a: list[dict[str, Any]], b: list[dict[str, Any]], score_tolerance: float = 2e-4) -> bool:
    """Whether two lists of ``Tagger.predict`` results agree: tokens, tags and entity spans exactly,
    entity scores within ``score_tolerance``.

    The scores cannot be compared byte for byte across runs that batch the sentences differently (a
    batch job's chunks, ONNX Runtime against torch): the batch's shape picks the kernels, and with
    them the order of float sums, so a probability can move in its last digits and round the other way.
    """
    def without_scores(results: list[dict[str, Any]]) -> list[Any]:
        return [{**r, "entities": [{k: v for k, v in e.items() if k != "score"} for e in r["entities"]]}
                for r in results]

    if without_scores(a) != without_scores(b):
        return False
    scores = [(x["score"], y["score"]) for ra, rb in zip(a, b, strict=True)
              for x, y in zip(ra["entities"], rb["entities"], strict=True)]
    return all(abs(x - y) <= score_tolerance for x, y in scores)


class Tagger:
    """A trained student (or teacher) that tags raw strings or pre-tokenized sentences."""

    def __init__(
        self, kind: str, model: Any, labels: list[str], meta: dict[str, Any], path: Path,
        onnx: OnnxStudent | OnnxTeacher | None = None,
    ) -> None:
        self.kind = kind  # "student" or "teacher"
        self.path = path  # the model's own folder (a job folder's student/)
        self.model = model  # the torch model (a student's parameters are counted on it)
        self.labels = labels
        self.meta = meta
        self.onnx = onnx  # the ONNX Runtime model that tags, when there is one

    @property
    def runtime(self) -> str:
        """What tags: "torch", "onnx" (model.onnx) or "onnx-int8" (model.int8.onnx)."""
        if self.onnx is None:
            return "torch"
        return "onnx-int8" if self.onnx.file.name == INT8_FILE else "onnx"

    @classmethod
    def load(
        cls, path: Path, device: str = "cpu", runtime: str = "auto", threads: int | None = None
    ) -> Tagger:
        """A student or teacher folder, or a job folder (its served student).

        A model runs on ONNX Runtime when ``runtime`` is "auto" (the default), its ``model.onnx`` is
        there and up to date, ``device`` is the CPU and onnxruntime is installed, else on torch;
        "torch", "onnx" and "onnx-int8" (a student's only) choose (the ONNX ones fail when their file
        is missing or stale). ``threads``: ONNX Runtime's intra-op threads, set once here (default:
        torch's thread count).
        """
        path = model_folder(path)
        # a Hugging Face folder without tagdistill.json: a teacher fine-tuned elsewhere (tagdistill.foreign)
        foreign = not (path / META_FILE).is_file() and (path / "config.json").is_file()
        meta = {"kind": "teacher"} if foreign else read_meta(path)
        if meta.get("kind") == "teacher":
            from tagdistill.teacher import Teacher  # transformers is slow to import: only when needed

            teacher = Teacher.load(path, torch.device(device))
            # such a folder's own model.onnx is never run: its outputs would not be read in IOB2
            onnx = None if foreign else open_runtime(
                path, runtime, device, lambda f: OnnxTeacher(teacher, f, threads), int8=False
            )
            return cls("teacher", teacher, teacher.labels, meta, path, onnx)
        model = load_student(path, device)
        onnx = open_runtime(path, runtime, device, lambda f: OnnxStudent(f, model.vocab, threads))
        return cls("student", model, model.vocab.labels, meta, path, onnx)

    def tag(self, sentences: list[list[str]], batch_size: int = 64) -> list[list[str]]:
        """IOB2 tags for pre-tokenized sentences."""
        if self.kind == "teacher":
            return (self.onnx or self.model).predict(sentences, batch_size=batch_size)
        return student_predict(self.onnx or self.model, sentences, batch_size=batch_size)

    def predict(self, inputs: list[str] | list[list[str]], batch_size: int = 64) -> list[dict[str, Any]]:
        """Tokens, tags and entity spans with character offsets, one result per input.

        A string is tokenized with ``tagdistill.tokenizer.tokenize`` and offsets point into it; a
        list of tokens is taken as is and offsets point into ``" ".join(tokens)``.

        Each entity's ``score`` (0 to 1, 4 decimals) is the mean over its tokens of the probability
        the model gives the label it predicted there: the softmax of a softmax student's or the
        teacher's scores at its argmax label, a CRF student's marginal probability (forward-backward,
        under the IOB2 constraints Viterbi decodes with) of its Viterbi label. The predicted label is
        the model's, before ``repair_iob2`` turns a stray ``I-X`` into ``B-X`` (which only renames it).
        ONNX Runtime and torch give the same scores (within float rounding).
        """
        texts: list[str] = []
        token_lists: list[list[str]] = []
        offset_lists: list[list[tuple[int, int]]] = []
        for item in inputs:
            if isinstance(item, str):
                tokens, offsets = tokenize(item)
                text = item
            else:
                tokens, offsets, pos = list(item), [], 0
                for tok in tokens:
                    offsets.append((pos, pos + len(tok)))
                    pos += len(tok) + 1
                text = " ".join(tokens)
            texts.append(text)
            token_lists.append(tokens)
            offset_lists.append(offsets)
        model = self.onnx or self.model
        if self.kind == "teacher":
            tag_lists, score_lists = teacher_scored(model, token_lists, batch_size)
        else:
            tag_lists, score_lists = student_scored(model, token_lists, batch_size)
        results = []
        for text, tokens, offsets, tags, token_scores in zip(
            texts, token_lists, offset_lists, tag_lists, score_lists, strict=True
        ):
            entities = []
            for label, first, last in spans(tags):
                start, end = offsets[first][0], offsets[last - 1][1]
                score = round(sum(token_scores[first:last]) / (last - first), 4)
                entities.append({"text": text[start:end], "label": label, "start": start, "end": end,
                                 "score": score})
            results.append({"tokens": tokens, "tags": tags, "entities": entities})
        return results
