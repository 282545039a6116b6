"""The peer: spaCy's CNN NER (``--pipeline ner --optimize efficiency``, no vectors) on the same data.

Sentences keep the corpus's tokenization (``Doc(words=...)``), so the F1 is comparable word for
word; ``spacy_tagger`` times the pipeline's components on those Docs, as ``nlp.pipe`` would.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tagdistill.data import Dataset, Sentence
from tagdistill.metrics import bytes_on_disk

MAX_STEPS = {False: 6000, True: 200}  # spaCy training steps (batches of 100 to 1,000 words), by --quick


def spacy_available() -> bool:
    return importlib.util.find_spec("spacy") is not None


def _docbin(nlp: Any, sentences: list[Sentence], path: Path) -> None:
    from spacy.tokens import Doc, DocBin

    docs = [Doc(nlp.vocab, words=s.tokens, spaces=[True] * len(s.tokens), ents=s.tags) for s in sentences]
    DocBin(docs=docs).to_disk(path)


def train_spacy(data: Dataset, folder: Path, quick: bool = False) -> Path:
    """Train on ``data.train``, choose on ``data.dev``; return the best model's folder."""
    import spacy

    folder.mkdir(parents=True, exist_ok=True)
    nlp = spacy.blank("en")
    _docbin(nlp, data.train, folder / "train.spacy")
    _docbin(nlp, data.dev, folder / "dev.spacy")
    spacy_cli = [sys.executable, "-m", "spacy"]
    subprocess.run([*spacy_cli, "init", "config", str(folder / "config.cfg"), "--lang", "en",
                    "--pipeline", "ner", "--optimize", "efficiency", "--force"], check=True)
    subprocess.run([*spacy_cli, "train", str(folder / "config.cfg"), "--output", str(folder / "train"),
                    "--paths.train", str(folder / "train.spacy"), "--paths.dev", str(folder / "dev.spacy"),
                    "--training.max_steps", str(MAX_STEPS[quick]), "--gpu-id", "-1"], check=True)
    best = folder / "model"
    shutil.rmtree(best, ignore_errors=True)
    (folder / "train" / "model-best").rename(best)
    return best


def spacy_tagger(model_dir: Path) -> Callable[..., list[list[str]]]:
    """A ``tag(sentences, batch_size)`` function for a trained spaCy pipeline, IOB2 tags out."""
    import spacy

    return _tagger(spacy.load(model_dir))


def spacy_model(model_dir: Path) -> tuple[Callable[..., list[list[str]]], dict[str, Any]]:
    """The pipeline's tag function, loaded once, and its size."""
    import spacy

    nlp = spacy.load(model_dir)
    parameters = sum(
        int(p.size) for _, proc in nlp.pipeline if hasattr(proc, "model")
        for node in proc.model.walk() for name in node.param_names if node.has_param(name)
        for p in [node.get_param(name)]
    )
    return _tagger(nlp), {"kind": "spacy", "spacy": spacy.__version__, "parameters": parameters,
                          "bytes_on_disk": bytes_on_disk(model_dir)}


def _tagger(nlp: Any) -> Callable[..., list[list[str]]]:
    from spacy.tokens import Doc

    def tag(sentences: list[list[str]], batch_size: int = 32) -> list[list[str]]:
        docs = (Doc(nlp.vocab, words=s, spaces=[True] * len(s)) for s in sentences)
        for _, proc in nlp.pipeline:
            docs = proc.pipe(docs, batch_size=batch_size)
        return [[f"{t.ent_iob_}-{t.ent_type_}" if t.ent_iob_ != "O" else "O" for t in doc] for doc in docs]

    return tag
