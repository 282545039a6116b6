"""Vocabularies of the student: words, characters, a case feature per word, and labels.

Word lookups are lowercased and every digit is replaced by ``0`` ("1996-08-22" and "2001-10-05"
share one entry), so the word table spends its rows on words, not on numbers. What that loses is
given back by two other inputs: the characters of the word as written (every Unicode character seen
in training gets its own id) and a case class (lower / Title / UPPER / mIxed / number / has digit /
punctuation / other).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from tagdistill.config import StudentConfig
from tagdistill.schemes import IGNORE, label_index

PAD, UNK = "<pad>", "<unk>"  # ids 0 and 1 in the word and character tables
MAX_WORD_CHARS = 20  # longer words are cut to their first characters for the char encoder
WORD_CACHE = 100_000  # token spellings whose ids a vocabulary remembers (~0.1 KB each: ~10 MB at most)
CASES = ("<pad>", "lower", "title", "upper", "mixed", "number", "has_digit", "punct", "other")
_CASE_ID = {name: i for i, name in enumerate(CASES)}
_DIGIT = re.compile(r"\d")
_FORMAT_VERSION = 1


def normalize_word(word: str) -> str:
    """The key a word is looked up by: lowercased, each digit replaced by 0."""
    return _DIGIT.sub("0", word.lower())


def case_id(word: str) -> int:
    """The case class of a word as written (an index into ``CASES``)."""
    if any(c.isdigit() for c in word):
        if all(c.isdigit() or _is_punct(c) for c in word):
            return _CASE_ID["number"]
        return _CASE_ID["has_digit"]
    if word and all(_is_punct(c) for c in word):
        return _CASE_ID["punct"]
    if not any(c.isupper() or c.islower() for c in word):
        return _CASE_ID["other"]  # caseless scripts (東京), symbols mixed with letters
    if word.islower():
        return _CASE_ID["lower"]
    if word.isupper() and len(word) > 1:
        return _CASE_ID["upper"]
    if word[0].isupper() and (len(word) == 1 or word[1:].islower()):
        return _CASE_ID["title"]
    return _CASE_ID["mixed"]


def _is_punct(c: str) -> bool:
    return unicodedata.category(c)[0] in "PS"


class Vocab:
    """Words (lowercased, digits as 0), characters (as written), and labels of one student."""

    def __init__(self, words: list[str], chars: list[str], labels: list[str]) -> None:
        if words[:2] != [PAD, UNK] or chars[:2] != [PAD, UNK]:
            raise ValueError("word and character tables must start with <pad>, <unk>")
        self.words = words
        self.chars = chars
        self.labels = labels
        self.word_index = {w: i for i, w in enumerate(words)}
        self.char_index = {c: i for i, c in enumerate(chars)}
        self.label_index = label_index(labels)
        # Per vocabulary (not a module-level cache keyed by word): the ids depend on the tables.
        self._cached_ids = functools.lru_cache(maxsize=WORD_CACHE)(self._ids)

    @classmethod
    def build(
        cls, sentences: list[list[str]], labels: list[str], cfg: StudentConfig, pretrained: Sequence[str] = ()
    ) -> Vocab:
        """Words seen at least ``cfg.min_word_freq`` times, the most frequent first, then, while
        there is room, the words of ``pretrained`` (a vector file's, in its order) not seen in
        training: at most ``cfg.max_vocab`` entries in all (<pad> and <unk> included). Every
        character seen in training."""
        word_counts = Counter(normalize_word(w) for s in sentences for w in s)
        seen_chars = {c for s in sentences for w in s for c in w}
        # Most frequent first; ties in a fixed (alphabetical) order so a build is reproducible.
        ranked = sorted(
            (w for w, n in word_counts.items() if n >= cfg.min_word_freq and w not in (PAD, UNK)),
            key=lambda w: (-word_counts[w], w),
        )
        words = [PAD, UNK, *ranked[: cfg.max_vocab - 2]]
        if len(words) < cfg.max_vocab:
            known = set(words)
            for word in pretrained:
                key = normalize_word(word)
                if key not in known:
                    known.add(key)
                    words.append(key)
                    if len(words) == cfg.max_vocab:
                        break
        chars = [PAD, UNK, *sorted(seen_chars)]  # single characters, so never "<pad>" or "<unk>"
        return cls(words, chars, list(labels))

    def encode(
        self, batch: list[list[str]], device: torch.device | str = "cpu"
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Padded ids of a batch of token lists: words (B, T), cases (B, T), chars (B, T, C), mask (B, T).

        T is the longest sentence (at least 1), C the longest word in characters, capped at
        ``MAX_WORD_CHARS``. The mask is True on real tokens, which come first in each row. The
        arrays of ``encode_arrays``, as tensors on ``device``.
        """
        words, cases, chars, mask = (torch.from_numpy(a).to(device) for a in self.encode_arrays(batch))
        return words, cases, chars, mask

    def encode_arrays(self, batch: list[list[str]]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``encode`` as NumPy arrays (int64 ids, bool mask), what ONNX Runtime takes.

        Each word type is looked up once (``word_ids``, a bounded cache) and the batch is laid out
        with NumPy index arithmetic, so the Python work per token is one cache hit.
        """
        lengths = np.fromiter((len(s) for s in batch), dtype=np.int64, count=len(batch))  # (B,)
        B, T = len(batch), max(int(lengths.max(initial=0)), 1)
        entries = [self.word_ids(w) for s in batch for w in s]  # N tokens: (word id, case id, char ids)
        rows = np.repeat(np.arange(B), lengths)  # (N,) the sentence of each token
        cols = np.arange(len(entries)) - np.repeat(np.cumsum(lengths) - lengths, lengths)  # (N,) its position
        words = np.zeros((B, T), dtype=np.int64)
        cases = np.zeros((B, T), dtype=np.int64)
        mask = np.zeros((B, T), dtype=bool)
        mask[rows, cols] = True
        if not entries:
            return words, cases, np.zeros((B, T, 1), dtype=np.int64), mask
        ids, case, char_ids = zip(*entries, strict=True)
        words[rows, cols] = ids
        cases[rows, cols] = case
        n_chars = np.fromiter(map(len, char_ids), dtype=np.int64, count=len(entries))  # (N,) each >= 1
        chars = np.zeros((B, T, int(n_chars.max())), dtype=np.int64)
        # Every character of every token at once: its token's row and position, and its place in the word.
        at = np.repeat(np.arange(len(entries)), n_chars)
        place = np.arange(len(at)) - np.repeat(np.cumsum(n_chars) - n_chars, n_chars)
        chars[rows[at], cols[at], place] = np.concatenate(char_ids)
        return words, cases, chars, mask

    def word_ids(self, word: str) -> tuple[int, int, np.ndarray]:
        """Word id, case id and character ids (at most ``MAX_WORD_CHARS``; an empty token reads as
        <unk>) of one token, remembered for the ``WORD_CACHE`` most recently used tokens."""
        return self._cached_ids(word)

    def _ids(self, word: str) -> tuple[int, int, np.ndarray]:
        chars = [self.char_index.get(c, 1) for c in word[:MAX_WORD_CHARS]] or [1]
        return self.word_index.get(normalize_word(word), 1), case_id(word), np.array(chars, dtype=np.int64)

    @staticmethod
    def tag_tensor(batch: list[list[int]], device: torch.device | str = "cpu") -> Tensor:
        """Label ids (B, T) of a batch of label-id lists, padded with ``IGNORE`` to match ``encode``."""
        T = max(max((len(s) for s in batch), default=0), 1)
        rows = [tags + [IGNORE] * (T - len(tags)) for tags in batch]
        return torch.tensor(rows, dtype=torch.long, device=device)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able description that ``from_dict`` turns back into an identical vocabulary."""
        return {"version": _FORMAT_VERSION, "words": self.words, "chars": self.chars, "labels": self.labels}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Vocab:
        if d.get("version") != _FORMAT_VERSION:
            raise ValueError(f"unsupported vocabulary format version {d.get('version')!r}")
        return cls(list(d["words"]), list(d["chars"]), list(d["labels"]))
