"""Load a trained model folder and tag text: ``Tagger.load(dir).predict(["EU rejects German call ."])``.

A student folder holds ``model.safetensors`` and ``tagdistill.json`` (format version, kind,
student config, vocabulary, labels), and once exported ``model.onnx`` (and ``model.int8.onnx``,
``tagdistill.export``); a teacher folder is a Hugging Face folder with the same ``tagdistill.json``
beside it. No pickle anywhere. A job folder (with ``student/`` inside) loads its student. A student
runs on ONNX Runtime when its up-to-date ``model.onnx`` is there (same tags as torch), on torch
otherwise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from tagdistill.config import StudentConfig
from tagdistill.export import INT8_FILE, ONNX_FILE, OnnxStudent, open_runtime
from tagdistill.meta import META_FILE, read_meta, write_meta
from tagdistill.schemes import repair_iob2, spans
from tagdistill.student import NeuralTagger
from tagdistill.tokenizer import tokenize
from tagdistill.vocab import Vocab

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


@torch.inference_mode()
def student_predict(
    model: NeuralTagger | OnnxStudent, sentences: list[list[str]], batch_size: int = 64
) -> list[list[str]]:
    """Valid IOB2 tags (``repair_iob2``) for pre-tokenized sentences; batches are length-sorted,
    order is kept. A torch ``model`` should be in eval mode (``load_student`` returns it so), or
    dropout stays on; an ``OnnxStudent`` (``tagdistill.export``) runs on ONNX Runtime."""
    labels = model.vocab.labels
    order = sorted(range(len(sentences)), key=lambda i: len(sentences[i]))
    out: list[list[str]] = [[] for _ in sentences]
    for start in range(0, len(order), batch_size):
        idx = [i for i in order[start : start + batch_size] if sentences[i]]
        if not idx:
            continue
        batch = [sentences[i] for i in idx]
        best = _torch_tag_ids(model, batch) if isinstance(model, NeuralTagger) else model.tag_ids(batch)
        for i, ids in zip(idx, best, strict=True):
            out[i] = repair_iob2([labels[j] for j in ids])
    return out


def _torch_tag_ids(model: NeuralTagger, batch: list[list[str]]) -> list[list[int]]:
    words, cases, chars, mask = model.vocab.encode(batch, next(model.parameters()).device)
    return model.decode(model(words, cases, chars, mask), mask)


class Tagger:
    """A trained student (or teacher) that tags raw strings or pre-tokenized sentences."""

    def __init__(
        self, kind: str, model: Any, labels: list[str], meta: dict[str, Any], path: Path,
        onnx: OnnxStudent | None = None,
    ) -> None:
        self.kind = kind  # "student" or "teacher"
        self.path = path  # the model's own folder (a job folder's student/)
        self.model = model  # the torch model (a student's parameters are counted on it)
        self.labels = labels
        self.meta = meta
        self.onnx = onnx  # the ONNX Runtime student that tags, when there is one

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

        A student runs on ONNX Runtime when ``runtime`` is "auto" (the default), its ``model.onnx`` is
        there and up to date, ``device`` is the CPU and onnxruntime is installed, else on torch;
        "torch", "onnx" and "onnx-int8" choose (the ONNX ones fail when their file is missing or stale).
        ``threads``: ONNX Runtime's intra-op threads, set once here (default: torch's thread count).
        """
        path = model_folder(path)
        meta = read_meta(path)
        if meta.get("kind") == "teacher":
            if runtime not in ("auto", "torch"):
                raise ValueError(f"{path} is a teacher: it runs on torch only")
            from tagdistill.teacher import Teacher  # transformers is slow to import: only when needed

            teacher = Teacher.load(path, torch.device(device))
            return cls("teacher", teacher, teacher.labels, meta, path)
        model = load_student(path, device)
        onnx = open_runtime(path, model.vocab, runtime, device, threads)
        return cls("student", model, model.vocab.labels, meta, path, onnx)

    def tag(self, sentences: list[list[str]], batch_size: int = 64) -> list[list[str]]:
        """IOB2 tags for pre-tokenized sentences."""
        if self.kind == "teacher":
            return self.model.predict(sentences, batch_size=batch_size)
        return student_predict(self.onnx or self.model, sentences, batch_size=batch_size)

    def predict(self, inputs: list[str] | list[list[str]], batch_size: int = 64) -> list[dict[str, Any]]:
        """Tokens, tags and entity spans with character offsets, one result per input.

        A string is tokenized with ``tagdistill.tokenizer.tokenize`` and offsets point into it; a
        list of tokens is taken as is and offsets point into ``" ".join(tokens)``.
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
        results = []
        for text, tokens, offsets, tags in zip(
            texts, token_lists, offset_lists, self.tag(token_lists, batch_size), strict=True
        ):
            entities = []
            for label, first, last in spans(tags):
                start, end = offsets[first][0], offsets[last - 1][1]
                entities.append({"text": text[start:end], "label": label, "start": start, "end": end})
            results.append({"tokens": tokens, "tags": tags, "entities": entities})
        return results
