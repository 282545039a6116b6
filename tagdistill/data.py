"""Data in, data checked: CoNLL / JSON Lines / raw-text readers, tag schemes, tokenizer, stats.

Every labeled file ends up in IOB2, the one scheme used inside tagdistill. Problems in a
user's file are raised as ``DataError`` naming the file (by the name the caller gives, in
``load_dataset`` its basename), the line and what is wrong.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tagdistill.config import DataFiles
from tagdistill.schemes import detect_scheme, spans, to_iob2
from tagdistill.tokenizer import tokenize

MAX_LINE_BYTES = 1 << 20  # a longer line is not a sentence but a broken file; stop before reading it whole
DOCSTART = "-DOCSTART-"
_TAG = re.compile(r"(?:O|[BIESLU]-\S+)")
_COLUMNS = re.compile(r"[ \t]+")  # columns of a file without tabs (other Unicode spaces may be tokens)


@dataclass
class Sentence:
    tokens: list[str]
    tags: list[str] | None = None  # IOB2 once loaded; None for unlabeled
    text: str | None = None  # the raw text, when read from raw text
    offsets: list[tuple[int, int]] | None = None  # character span of each token in `text`
    line: int = 0  # 1-based line in its file where the sentence starts


@dataclass
class Dataset:
    train: list[Sentence]
    dev: list[Sentence]
    test: list[Sentence]  # empty when the job has no test file
    unlabeled: list[Sentence]  # empty when the job has no unlabeled file
    labels: list[str]  # "O" first, then B-/I- of every entity type in train, sorted
    scheme: str  # the train file's scheme before conversion to IOB2


class DataError(ValueError):
    """A problem in a data file; ``str(e)`` is "{file}, line {line}: {message}" or "{file}: {message}"."""

    def __init__(self, file: str, line: int | None, message: str) -> None:
        super().__init__(file, line, message)  # args rebuild the error, so it pickles (Celery, processes)
        self.file = file
        self.line = line
        self.message = message

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}, line {self.line}"
        return f"{where}: {self.message}"


# --- readers ---------------------------------------------------------------------------------


def numbered_lines(path: Path, name: str) -> Iterator[tuple[int, str]]:
    """(1-based number, text without line ending) for each line; UTF-8 (BOM allowed), LF or CRLF."""
    try:
        with open(path, "rb") as f:
            number = 0
            while raw := f.readline(MAX_LINE_BYTES + 2):
                number += 1
                raw = raw.rstrip(b"\r\n")
                if len(raw) > MAX_LINE_BYTES:
                    raise DataError(name, number, f"line longer than {MAX_LINE_BYTES:,} bytes")
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    where = f"byte 0x{raw[e.start]:02x} at byte {e.start + 1} of the line"
                    raise DataError(name, number, f"not UTF-8 text ({where})") from None
                yield number, text.removeprefix("\ufeff") if number == 1 else text
    except OSError as e:
        raise DataError(name, None, f"cannot read the file ({e.strerror})") from None


def _check_tag(tag: str, name: str, line: int) -> None:
    if not _TAG.fullmatch(tag):
        raise DataError(name, line, f"tag {tag!r} is neither O nor PREFIX-TYPE with a B/I/E/S/L/U prefix")


def _read_conll(path: Path, name: str, tag_column: int, labeled: bool) -> list[Sentence]:
    sentences: list[Sentence] = []
    tokens: list[str] = []
    tags: list[str] = []
    start = 0
    width: tuple[int, int] | None = None  # (columns, line) of the first token line
    column = 0
    tabbed: bool | None = None  # decided by the first token line: tabs there mean only tabs separate
    for number, text in numbered_lines(path, name):
        if text.strip() and tabbed is None:
            tabbed = "\t" in text
        if tabbed:  # a token may hold spaces, or be only spaces (kept as "", an unknown word to both models)
            cols = [c.strip() for c in text.rstrip(" \t").split("\t")]
        else:
            cols = _COLUMNS.split(text.strip(" \t"))
        if not text.strip() or cols[0] == DOCSTART:
            if tokens:
                sentences.append(Sentence(tokens, tags if labeled else None, line=start))
            tokens, tags = [], []
            continue
        if width is None:
            width = (len(cols), number)
            if labeled:
                column = tag_column if tag_column >= 0 else len(cols) + tag_column
                if len(cols) < 2:
                    raise DataError(name, number, "one column only: a labeled file needs a token and a tag")
                if not 1 <= column < len(cols):
                    raise DataError(
                        name, number, f"no tag column {tag_column} in a line of {len(cols)} columns"
                    )
        elif len(cols) != width[0]:
            raise DataError(
                name, number, f"{len(cols)} columns, but the first token line ({width[1]}) has {width[0]}"
            )
        if not tokens:
            start = number
        tokens.append(cols[0])
        if labeled:
            _check_tag(cols[column], name, number)
            tags.append(cols[column])
    if tokens:
        sentences.append(Sentence(tokens, tags if labeled else None, line=start))
    return sentences


def _read_jsonl(path: Path, name: str, labeled: bool) -> list[Sentence]:
    sentences: list[Sentence] = []
    for number, text in numbered_lines(path, name):
        if not text.strip():
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(name, number, f"not JSON: {e.msg} at column {e.colno}") from None
        # json stops at the interpreter's recursion limit (about 1,000 levels) before the stack runs
        # out, so deep nesting needs no scan of its own; a sentence is 2 levels deep.
        except RecursionError:
            raise DataError(name, number, "not a sentence: JSON nested too deep") from None
        except ValueError:  # an integer of over 4,300 digits (sys.get_int_max_str_digits)
            raise DataError(name, number, "not a sentence: a number with too many digits") from None
        if not isinstance(record, dict):
            raise DataError(name, number, 'expected an object like {"tokens": [...], "tags": [...]}')
        tokens = record.get("tokens")
        if not isinstance(tokens, list) or not tokens or not all(isinstance(t, str) and t for t in tokens):
            raise DataError(name, number, '"tokens" must be a non-empty list of non-empty strings')
        tags = None
        if labeled:
            tags = record.get("tags")
            if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
                raise DataError(name, number, '"tags" must be a list of strings')
            if len(tags) != len(tokens):
                raise DataError(name, number, f"{len(tokens)} tokens but {len(tags)} tags")
            for tag in tags:
                _check_tag(tag, name, number)
        try:  # json reads "\ud800" as a lone surrogate, which fails later wherever it is encoded
            "".join(tokens + (tags or [])).encode()
        except UnicodeEncodeError:
            raise DataError(name, number, "a lone surrogate (such as \\ud800) is not text") from None
        sentences.append(Sentence(tokens, tags, line=number))
    return sentences


def _read_text(path: Path, name: str) -> list[Sentence]:
    sentences: list[Sentence] = []
    for number, text in numbered_lines(path, name):
        tokens, offsets = tokenize(text)
        if tokens:
            sentences.append(Sentence(tokens, text=text, offsets=offsets, line=number))
    return sentences


def read_file(
    path: Path | str,
    format: Literal["conll", "jsonl", "text"],
    *,
    tag_column: int = -1,
    labeled: bool = True,
    name: str | None = None,
) -> list[Sentence]:
    """Read one file's sentences; tags are checked for form but kept in the file's own scheme.

    - ``conll``: one token per line, the token first and the tag in ``tag_column`` (-1 = last).
      When the first token line holds a tab, the file is tab-separated: only tabs split columns,
      each column is stripped of surrounding whitespace, and a token that is empty after stripping
      (BTC has a few whitespace tokens) is kept as ``""``. Otherwise runs of spaces split
      columns. A blank or whitespace-only line or a ``-DOCSTART-``
      line ends a sentence. Every token line must have as many columns as the first one.
      With ``labeled=False`` only the first column is read (a one-column file is fine).
    - ``jsonl``: one ``{"tokens": [...], "tags": [...]}`` object per line (``tags`` only when
      labeled); blank lines are skipped.
    - ``text``: one raw sentence per line, split by ``tokenize``; always unlabeled.

    ``name`` is how errors call the file (default: the path as given). A file without any
    sentence is an error.
    """
    path = Path(path)
    name = str(path) if name is None else name
    if format == "conll":
        sentences = _read_conll(path, name, tag_column, labeled)
    elif format == "jsonl":
        sentences = _read_jsonl(path, name, labeled)
    elif format == "text":
        if labeled:
            raise DataError(name, None, "raw text has no tags; labeled files must be conll or jsonl")
        sentences = _read_text(path, name)
    else:
        raise ValueError(f"unknown data format {format!r}")
    if not sentences:
        raise DataError(name, None, "no sentences in the file")
    return sentences


# --- datasets --------------------------------------------------------------------------------


def _convert(sentences: list[Sentence]) -> str:
    """Convert a labeled file to IOB2 in place (by its own detected scheme); return that scheme."""
    scheme = detect_scheme(s.tags or [] for s in sentences)
    for s in sentences:
        s.tags = to_iob2(s.tags or [], scheme)
    return scheme


def load_dataset(files: DataFiles) -> Dataset:
    """Read a job's files, convert every labeled file to IOB2 and check dev/test against train.

    Each labeled file is converted by the scheme detected on it, so an IOB1 train file and an
    IOB2 dev file go together. Labels are "O" then B- and I- of every entity type in train,
    sorted; a dev or test entity type that train lacks is an error. The unlabeled file is raw
    text (``unlabeled_format="text"``), one-column CoNLL or JSON Lines with ``tokens`` only.
    """

    def labeled(path: Path) -> list[Sentence]:
        return read_file(path, files.format, tag_column=files.tag_column, name=path.name)

    train = labeled(files.train)
    scheme = _convert(train)
    types = sorted({tag[2:] for s in train for tag in s.tags or [] if tag != "O"})
    if not types:
        raise DataError(files.train.name, None, "no entities: every tag is O")
    labels = ["O", *(f"B-{t}" for t in types), *(f"I-{t}" for t in types)]
    known = set(labels)
    dev = labeled(files.dev)
    test = labeled(files.test) if files.test is not None else []
    for path, sentences in ((files.dev, dev), (files.test, test)):
        _convert(sentences)
        for s in sentences:
            unknown = [tag for tag in s.tags or [] if tag not in known]
            if unknown and path is not None:
                message = (
                    f"tag {unknown[0]}: entity type {unknown[0][2:]} does not occur in {files.train.name}"
                )
                raise DataError(path.name, s.line, message)
    unlabeled: list[Sentence] = []
    if files.unlabeled is not None:
        unlabeled = read_file(
            files.unlabeled, files.unlabeled_format, labeled=False, name=files.unlabeled.name
        )
    return Dataset(train, dev, test, unlabeled, labels, scheme)


def dataset_stats(ds: Dataset) -> dict[str, Any]:
    """JSON-able summary: scheme, labels, entity types, and per split sentences, tokens, entities.

    The test and unlabeled splits appear only when they have sentences; unlabeled has no entities.
    """
    types = sorted({label[2:] for label in ds.labels if label != "O"})
    splits: dict[str, Any] = {}
    for split, sentences in (("train", ds.train), ("dev", ds.dev), ("test", ds.test)):
        if split != "test" or sentences:
            counts = Counter(kind for s in sentences for kind, _, _ in spans(s.tags or []))
            splits[split] = {
                "sentences": len(sentences),
                "tokens": sum(len(s.tokens) for s in sentences),
                "entities": {t: counts[t] for t in types},
            }
    if ds.unlabeled:
        splits["unlabeled"] = {
            "sentences": len(ds.unlabeled),
            "tokens": sum(len(s.tokens) for s in ds.unlabeled),
        }
    return {"scheme": ds.scheme, "labels": list(ds.labels), "entity_types": types, "splits": splits}
