"""Readers, tag schemes, tokenizer and dataset checks in tagdistill.data."""

from __future__ import annotations

import itertools
import json
import pickle
import random
from pathlib import Path

import pytest

from tagdistill import data
from tagdistill.config import DataFiles
from tagdistill.data import (
    DataError,
    Sentence,
    dataset_stats,
    load_dataset,
    read_file,
)
from tagdistill.schemes import detect_scheme, spans, to_iob2
from tagdistill.tokenizer import tokenize

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SAMPLE = Path(data.__file__).parent / "sample"


def write(folder: Path, name: str, content: str | bytes) -> Path:
    path = folder / name
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)
    return path


def conll(folder: Path, name: str, content: str, **kwargs: object) -> list[Sentence]:
    return read_file(write(folder, name, content), "conll", name=name, **kwargs)  # type: ignore[arg-type]


def error(call: object) -> DataError:
    with pytest.raises(DataError) as info:
        call()  # type: ignore[operator]
    return info.value


# --- CoNLL ---------------------------------------------------------------------------------------


def test_conll_docstart_lines_are_skipped_and_end_a_sentence(tmp_path: Path) -> None:
    text = (
        "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n"
        "-DOCSTART- -X- -X- O\nPeter NNP B-NP B-PER\n"
    )
    sentences = conll(tmp_path, "a.conll", text)
    assert [s.tokens for s in sentences] == [["EU", "rejects"], ["Peter"]]
    assert [s.tags for s in sentences] == [["B-ORG", "O"], ["B-PER"]]
    assert [s.line for s in sentences] == [3, 6]


def test_conll_whitespace_only_line_ends_a_sentence(tmp_path: Path) -> None:
    sentences = conll(tmp_path, "a.conll", "a O\nb O\n \t \nc B-X\n\n\n\nd O\n")
    assert [s.tokens for s in sentences] == [["a", "b"], ["c"], ["d"]]
    assert [s.line for s in sentences] == [1, 4, 8]


def test_conll_last_sentence_without_final_newline_is_kept(tmp_path: Path) -> None:
    sentences = conll(tmp_path, "a.conll", "a O\n\nb B-X\nc I-X")
    assert [s.tokens for s in sentences] == [["a"], ["b", "c"]]
    assert sentences[1].tags == ["B-X", "I-X"]


def test_conll_tabs_crlf_and_bom(tmp_path: Path) -> None:
    sentences = conll(tmp_path, "a.tsv", "\ufeffBRCA1\tB-Disease\r\nis\tO\r\n\r\nok \t O\r\n")
    assert [s.tokens for s in sentences] == [["BRCA1", "is"], ["ok"]]
    assert [s.tags for s in sentences] == [["B-Disease", "O"], ["O"]]


def test_conll_tab_file_splits_on_tabs_only_and_keeps_spaced_tokens(tmp_path: Path) -> None:
    # BTC's shape: a token that holds a space, one that is only a space, one that is empty
    text = "New York\tB-LOC\n😳 \tO\n \tO\n\tO\nNYC\tB-LOC\n"
    sentences = conll(tmp_path, "dev.conll", text)
    assert sentences[0].tokens == ["New York", "😳", "", "", "NYC"]
    assert sentences[0].tags == ["B-LOC", "O", "O", "O", "B-LOC"]


def test_conll_space_separated_file_still_splits_on_runs_of_spaces(tmp_path: Path) -> None:
    sentences = conll(tmp_path, "a.conll", "EU   NNP B-ORG\nrejects VBZ  O\n")
    assert sentences[0].tokens == ["EU", "rejects"]
    assert sentences[0].tags == ["B-ORG", "O"]


def test_conll_tab_file_with_a_space_separated_line_is_an_error_naming_the_line(tmp_path: Path) -> None:
    e = error(lambda: conll(tmp_path, "a.tsv", "a\tO\nb O\n"))
    assert (e.file, e.line) == ("a.tsv", 2)


def test_btc_files_load(tmp_path: Path) -> None:
    btc = SHARED_DATA / "btc"
    if not btc.is_dir():
        pytest.skip(f"no BTC data at {btc}")
    for name, n in (("train.conll", 5338), ("dev.conll", 2000), ("test.conll", 2001)):
        assert len(read_file(btc / name, "conll")) == n


def test_conll_tag_column_is_selectable(tmp_path: Path) -> None:
    text = "Japan NNP B-NP B-LOC\nwins VBZ B-VP O\n"
    assert conll(tmp_path, "a.conll", text)[0].tags == ["B-LOC", "O"]
    assert conll(tmp_path, "a.conll", text, tag_column=2)[0].tags == ["B-NP", "B-VP"]
    assert conll(tmp_path, "a.conll", text, tag_column=-2)[0].tags == ["B-NP", "B-VP"]
    assert "no tag column 4" in str(error(lambda: conll(tmp_path, "a.conll", text, tag_column=4)))
    assert "no tag column 0" in str(error(lambda: conll(tmp_path, "a.conll", text, tag_column=0)))


def test_conll_ragged_line_is_an_error_naming_file_and_line(tmp_path: Path) -> None:
    e = error(lambda: conll(tmp_path, "train.conll", "a NN O\nb NN O\n\nc O\n"))
    assert (e.file, e.line) == ("train.conll", 4)
    assert str(e) == "train.conll, line 4: 2 columns, but the first token line (1) has 3"


def test_conll_non_utf8_is_an_error_naming_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "a.conll", b"a O\n\n" + "Café O\n".encode("latin-1"))
    e = error(lambda: read_file(path, "conll", name="a.conll"))
    assert e.line == 3
    assert "not UTF-8" in e.message and "0xe9" in e.message


@pytest.mark.parametrize("content", ["", "\n\n  \n", "-DOCSTART- O\n\n"])
def test_conll_without_sentences_is_an_error(tmp_path: Path, content: str) -> None:
    e = error(lambda: conll(tmp_path, "empty.conll", content))
    assert str(e) == "empty.conll: no sentences in the file"


def test_line_over_one_megabyte_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "big.txt", "short line\n" + "x" * (data.MAX_LINE_BYTES + 1) + "\nend\n")
    e = error(lambda: read_file(path, "text", labeled=False, name="big.txt"))
    assert e.line == 2 and "longer than" in e.message
    exactly = write(tmp_path, "ok.txt", "x" * data.MAX_LINE_BYTES + "\r\n")
    assert read_file(exactly, "text", labeled=False)[0].tokens == ["x" * data.MAX_LINE_BYTES]


def test_missing_file_is_a_data_error(tmp_path: Path) -> None:
    e = error(lambda: read_file(tmp_path / "nope.conll", "conll", name="nope.conll"))
    assert e.file == "nope.conll" and e.line is None and "cannot read the file" in e.message


def test_conll_unlabeled_one_column(tmp_path: Path) -> None:
    sentences = conll(tmp_path, "u.conll", "Hello\nworld\n\nBye\n", labeled=False)
    assert [(s.tokens, s.tags) for s in sentences] == [(["Hello", "world"], None), (["Bye"], None)]
    e = error(lambda: conll(tmp_path, "u.conll", "Hello\nworld\n"))
    assert e.line == 1 and "one column" in e.message


@pytest.mark.parametrize("tag", ["PER", "B-", "b-PER", "B_PER", "X-PER"])
def test_malformed_tag_is_an_error(tmp_path: Path, tag: str) -> None:
    e = error(lambda: conll(tmp_path, "a.conll", f"a O\nb {tag}\n"))
    assert (e.line, e.file) == (2, "a.conll")
    assert repr(tag) in e.message


def test_data_error_format_and_pickle() -> None:
    e = DataError("dev.conll", 12, "bad tag")
    assert str(e) == "dev.conll, line 12: bad tag"
    assert str(DataError("dev.conll", None, "empty")) == "dev.conll: empty"
    again = pickle.loads(pickle.dumps(e))
    assert (again.file, again.line, again.message, str(again)) == (e.file, e.line, e.message, str(e))
    assert isinstance(e, ValueError)


# --- JSON Lines and raw text ----------------------------------------------------------------------


def test_jsonl_reads_sentences_and_skips_blank_lines(tmp_path: Path) -> None:
    first = json.dumps({"tokens": ["Ann", "runs"], "tags": ["B-PER", "O"]})
    lines = [first, "", "  ", '{"tokens": ["x"], "tags": ["O"]}']
    path = write(tmp_path, "a.jsonl", "\n".join(lines))
    sentences = read_file(path, "jsonl")
    assert [(s.tokens, s.tags, s.line) for s in sentences] == [
        (["Ann", "runs"], ["B-PER", "O"], 1),
        (["x"], ["O"], 4),
    ]
    unlabeled = read_file(write(tmp_path, "u.jsonl", '{"tokens": ["a", "b"]}\n'), "jsonl", labeled=False)
    assert (unlabeled[0].tokens, unlabeled[0].tags) == (["a", "b"], None)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"tokens": ["a"], "tags": ["O"]', "not JSON"),
        ('["a", "O"]', "expected an object"),
        ('{"tags": ["O"]}', '"tokens" must be'),
        ('{"tokens": [], "tags": []}', '"tokens" must be'),
        ('{"tokens": ["a", 3], "tags": ["O", "O"]}', '"tokens" must be'),
        ('{"tokens": ["a"]}', '"tags" must be'),
        ('{"tokens": ["a", "b"], "tags": ["O"]}', "2 tokens but 1 tags"),
        ('{"tokens": ["a"], "tags": ["PER"]}', "'PER' is neither"),
    ],
)
def test_jsonl_errors_name_the_line(tmp_path: Path, line: str, message: str) -> None:
    path = write(tmp_path, "train.jsonl", '{"tokens": ["ok"], "tags": ["O"]}\n\n' + line + "\n")
    e = error(lambda: read_file(path, "jsonl", name="train.jsonl"))
    assert (e.file, e.line) == ("train.jsonl", 3)
    assert message in e.message


def test_raw_text_lines_become_tokenized_sentences(tmp_path: Path) -> None:
    path = write(tmp_path, "u.txt", "Mr. Smith didn't go.\r\n\n   \n  Paris, 2024  ")
    sentences = read_file(path, "text", labeled=False)
    assert [s.line for s in sentences] == [1, 4]
    first, second = sentences
    assert first.tokens == ["Mr.", "Smith", "did", "n't", "go", "."]
    assert (first.text, first.tags) == ("Mr. Smith didn't go.", None)
    assert second.tokens == ["Paris", ",", "2024"] and second.offsets == [(2, 7), (7, 8), (9, 13)]
    assert "raw text has no tags" in str(error(lambda: read_file(path, "text")))


# --- tokenizer ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "tokens"),  # expected tokens written space-separated
    [
        ("Don't stop, O'Neill's team can't!", "Do n't stop , O'Neill 's team ca n't !"),
        ("U.S. grew 3.5% to $1,000.50 on 1996-12-06.", "U.S. grew 3.5 % to $ 1,000.50 on 1996-12-06 ."),
        ("Dr. Li of Acme Corp.'s unit met John F. Kim.", "Dr. Li of Acme Corp. 's unit met John F. Kim ."),
        ('He said "no" (twice)... -- then left', 'He said " no " ( twice ) ... -- then left'),
        ("see https://example.com/a?b=1. or a@b.org!", "see https://example.com/a?b=1 . or a@b.org !"),
        ("well-known students' rock'n'roll", "well-known students ' rock'n'roll"),
        ("Müller’s café in São Paulo", "Müller ’s café in São Paulo"),
        ("cafe\u0301 हिन्दी", "cafe\u0301 हिन्दी"),
        ("emoji 👍🏽!", "emoji 👍 🏽 !"),
        ("", ""),
    ],
)
def test_tokenize_examples(text: str, tokens: str) -> None:
    assert tokenize(text)[0] == tokens.split()


def _check_tokenization(text: str) -> None:
    tokens, offsets = tokenize(text)
    assert len(tokens) == len(offsets)
    assert all(text[s:e] == token for token, (s, e) in zip(tokens, offsets, strict=True))
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(offsets))  # in order, no overlap
    assert all(token and not any(c.isspace() for c in token) for token in tokens)
    assert "".join(tokens) == "".join(c for c in text if not c.isspace())  # only whitespace is lost


def test_tokenize_offsets_on_varied_strings() -> None:
    fixed = [
        "  leading and trailing  ",
        "tabs\tand\nnewlines\r\nand\u00a0no-break\u2003em\u3000ideographic spaces",
        "北京大学的学生说：“你好！”",
        "مرحبا بالعالم، كيف حالك؟",
        "Ελληνικά και русский текст.",
        "zero\u200bwidth\u200djoiner and \ufeffBOM",
        "👨‍👩‍👧 family 🇫🇷 flag",
        "''' ... -- --- '' 's n't 'S N'T",
        "http:// www. @ a@b x@y.z .,;:!?",
        "A.B.C. a.b. I. Mr.Smith U.S.'s St.Louis",
        "\x00\x01 control \x7f chars",
    ]
    for text in fixed:
        _check_tokenization(text)
    alphabet = (
        "aZé9_'’-.,:;!?\"()$%&@/\\ \t\n\u00a0\u2009\u200b\u200d\u0301\u0915\u093f北ع😀🏽\U0001d400"
        "nts"  # more clitic material
    )
    rng = random.Random(7)
    for _ in range(3000):
        _check_tokenization("".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40))))


# --- tag schemes ----------------------------------------------------------------------------------


def test_detect_scheme() -> None:
    iob2 = [["B-PER", "I-PER", "O", "B-LOC"], ["O"]]
    iob1 = [["I-PER", "I-PER", "O", "I-LOC", "B-LOC"], ["O", "I-ORG"]]
    assert detect_scheme(iob2) == "IOB2"
    assert detect_scheme(iob1) == "IOB1"
    assert detect_scheme([["B-PER", "E-PER", "O", "S-LOC"]]) == "BIOES"
    assert detect_scheme([["U-PER", "O", "B-LOC", "L-LOC"]]) == "BIOES"  # BILOU
    assert detect_scheme([["O", "O"], ["O"]]) == "IOB2"
    # an IOB2 file with a stray I- after O stays IOB2 (the stray tag is repaired, not a scheme)
    assert detect_scheme([["B-PER", "O", "I-LOC"]]) == "IOB2"


def test_to_iob2_conversions() -> None:
    assert to_iob2(["I-PER", "I-PER", "O", "I-LOC", "B-LOC", "I-ORG"], "IOB1") == [
        "B-PER", "I-PER", "O", "B-LOC", "B-LOC", "B-ORG",
    ]
    assert to_iob2(["B-PER", "I-PER", "E-PER", "S-LOC", "O", "S-ORG", "S-ORG"], "BIOES") == [
        "B-PER", "I-PER", "I-PER", "B-LOC", "O", "B-ORG", "B-ORG",
    ]
    assert to_iob2(["U-PER", "B-LOC", "L-LOC"], "BIOES") == ["B-PER", "B-LOC", "I-LOC"]
    # repair in IOB2: I-X after O or another type starts an entity, as seqeval's default mode reads it
    repaired = to_iob2(["O", "I-PER", "I-LOC", "B-LOC", "I-LOC"], "IOB2")
    assert repaired == ["O", "B-PER", "B-LOC", "B-LOC", "I-LOC"]
    with pytest.raises(ValueError, match="S-PER does not belong to IOB2"):
        to_iob2(["S-PER"], "IOB2")


def test_spans() -> None:
    assert spans(["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-ORG", "O", "B-MISC"]) == [
        ("PER", 0, 2), ("LOC", 3, 4), ("LOC", 4, 5), ("ORG", 5, 6), ("MISC", 7, 8),
    ]
    assert spans(["O", "O"]) == []
    assert spans([]) == []


# --- datasets -------------------------------------------------------------------------------------


def test_load_dataset_converts_and_builds_labels(tmp_path: Path) -> None:
    train = write(tmp_path, "train.conll", "John I-PER\nin O\nParis I-LOC\n\nMary I-PER\nSmith I-PER\n")
    dev = write(tmp_path, "dev.conll", "Rome S-LOC\nis O\nbig O\n\nAnn B-PER\nLee E-PER\n")
    test = write(tmp_path, "test.jsonl", '{"tokens": ["Bo", "Li"], "tags": ["B-PER", "I-PER"]}\n')
    ds = load_dataset(DataFiles(train=train, dev=dev))
    assert ds.scheme == "IOB1"
    assert ds.labels == ["O", "B-LOC", "B-PER", "I-LOC", "I-PER"]
    assert ds.train[0].tags == ["B-PER", "O", "B-LOC"] and ds.train[1].tags == ["B-PER", "I-PER"]
    assert [s.tags for s in ds.dev] == [["B-LOC", "O", "O"], ["B-PER", "I-PER"]]  # BIOES dev, converted too
    assert (ds.test, ds.unlabeled) == ([], [])
    dev_jsonl = write(tmp_path, "dev.jsonl", '{"tokens": ["Rome"], "tags": ["B-LOC"]}\n')
    train_jsonl = write(tmp_path, "train.jsonl", '{"tokens": ["Rome", "Bo"], "tags": ["B-LOC", "B-PER"]}\n')
    ds = load_dataset(DataFiles(train=train_jsonl, dev=dev_jsonl, test=test, format="jsonl"))
    assert ds.test[0].tags == ["B-PER", "I-PER"]


def test_unknown_dev_tag_is_an_error_naming_file_line_and_tag(tmp_path: Path) -> None:
    train = write(tmp_path, "train.conll", "John B-PER\n\nParis B-LOC\n")
    dev = write(tmp_path, "dev.conll", "Rome B-LOC\n\nUN B-ORG\nsaid O\n")
    e = error(lambda: load_dataset(DataFiles(train=train, dev=dev)))
    assert (e.file, e.line) == ("dev.conll", 3)
    assert e.message == "tag B-ORG: entity type ORG does not occur in train.conll"
    good_dev = write(tmp_path, "good.conll", "Rome B-LOC\n")
    test = write(tmp_path, "test.conll", "Ann B-PER\n\nx O\nNATO I-ORG\n")
    e = error(lambda: load_dataset(DataFiles(train=train, dev=good_dev, test=test)))
    assert (e.file, e.line) == ("test.conll", 3)
    assert e.message.startswith("tag B-ORG:")  # checked after conversion: I-ORG after O is B-ORG


def test_load_dataset_errors_name_files_by_basename(tmp_path: Path) -> None:
    train = write(tmp_path, "train.conll", "a O\nb O\n")
    dev = write(tmp_path, "dev.conll", "a O\n")
    e = error(lambda: load_dataset(DataFiles(train=train, dev=dev)))
    assert str(e) == "train.conll: no entities: every tag is O"
    train = write(tmp_path, "train.conll", "a B-X\n")
    ragged = write(tmp_path, "ragged.conll", "a NN B-X\nb O\n")
    e = error(lambda: load_dataset(DataFiles(train=train, dev=ragged)))
    assert str(e).startswith("ragged.conll, line 2: ")
    e = error(lambda: load_dataset(DataFiles(train=train, dev=dev, format="text")))
    assert e.file == "train.conll" and "raw text has no tags" in e.message


@pytest.mark.parametrize(
    ("fmt", "content"),
    [
        ("text", "The cat sat.\n\nDogs bark!\n"),
        ("conll", "The\ncat\nsat\n.\n\nDogs\nbark\n!\n"),
        ("jsonl", '{"tokens": ["The", "cat", "sat", "."]}\n{"tokens": ["Dogs", "bark", "!"]}\n'),
    ],
)
def test_unlabeled_formats_and_stats(tmp_path: Path, fmt: str, content: str) -> None:
    train = write(tmp_path, "train.conll", "Ann B-PER\nLee I-PER\nruns O\n\nRome B-LOC\n")
    dev = write(tmp_path, "dev.conll", "Bo B-PER\n")
    unlabeled = write(tmp_path, f"u.{fmt}", content)
    ds = load_dataset(DataFiles(train=train, dev=dev, test=dev, unlabeled=unlabeled, unlabeled_format=fmt))
    assert [s.tokens for s in ds.unlabeled] == [["The", "cat", "sat", "."], ["Dogs", "bark", "!"]]
    stats = dataset_stats(ds)
    assert json.loads(json.dumps(stats)) == stats
    assert stats == {
        "scheme": "IOB2",
        "labels": ["O", "B-LOC", "B-PER", "I-LOC", "I-PER"],
        "entity_types": ["LOC", "PER"],
        "splits": {
            "train": {"sentences": 2, "tokens": 4, "entities": {"LOC": 1, "PER": 1}},
            "dev": {"sentences": 1, "tokens": 1, "entities": {"LOC": 0, "PER": 1}},
            "test": {"sentences": 1, "tokens": 1, "entities": {"LOC": 0, "PER": 1}},
            "unlabeled": {"sentences": 2, "tokens": 7},
        },
    }


def test_sample_dataset_loads_and_holds_unseen_test_entities() -> None:
    files = DataFiles(
        train=SAMPLE / "train.conll", dev=SAMPLE / "dev.conll", test=SAMPLE / "test.conll",
        unlabeled=SAMPLE / "unlabeled.txt",
    )
    ds = load_dataset(files)
    stats = dataset_stats(ds)
    assert stats["entity_types"] == ["LOC", "MISC", "ORG", "PER"]
    assert {k: v["sentences"] for k, v in stats["splits"].items()} == {
        "train": 400, "dev": 100, "test": 100, "unlabeled": 600,
    }

    def entities(sentences: list[Sentence]) -> list[tuple[str, str]]:
        return [(k, " ".join(s.tokens[a:b])) for s in sentences for k, a, b in spans(s.tags or [])]

    seen = set(entities(ds.train))
    test = entities(ds.test)
    assert 0.3 < sum(e not in seen for e in test) / len(test) < 0.9
    assert sum(f.stat().st_size for f in SAMPLE.iterdir()) < 200_000


# --- real data ------------------------------------------------------------------------------------


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="the shared real data is not present")
def test_real_corpora_counts() -> None:
    conll2003 = read_file(SHARED_DATA / "conll2003" / "test.txt", "conll")  # ends without a final newline
    assert len(conll2003) == 3453
    assert sum(len(s.tokens) for s in conll2003) == 46435
    assert conll2003[-1].tokens[-1] == "."
    assert detect_scheme(s.tags or [] for s in conll2003) == "IOB2"
    ncbi = read_file(SHARED_DATA / "ncbi_disease" / "devel.tsv", "conll")
    assert len(ncbi) == 923
    assert sum(len(s.tokens) for s in ncbi) == 23969
