import json
import random
import string
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from tagdistill.config import GLOVE_6B_50D, StudentConfig
from tagdistill.metrics import count_parameters
from tagdistill.schemes import IGNORE
from tagdistill.student import NeuralTagger
from tagdistill.vectors import match_vectors, read_vectors
from tagdistill.vocab import CASES, MAX_WORD_CHARS, PAD, UNK, WORD_CACHE, Vocab, case_id, normalize_word

torch.set_num_threads(1)

CONLL_LABELS = ["O", "B-LOC", "B-MISC", "B-ORG", "B-PER", "I-LOC", "I-MISC", "I-ORG", "I-PER"]
TOY_LABELS = ["O", "B-LOC", "B-PER", "I-LOC"]
_TOY_WORDS = {"alice": "B-PER", "bob": "B-PER", "paris": "B-LOC", "rome": "B-LOC", "saw": "O", "met": "O",
              "in": "O", "the": "O", "and": "O"}
SMALL = {"word_dim": 16, "char_dim": 8, "char_hidden": 8, "hidden": 16, "dropout": 0.0}


def _word(i: int) -> str:
    """A distinct letters-only word for each i (digits would all normalise to 0)."""
    letters = ""
    while True:
        i, r = divmod(i, 26)
        letters += chr(ord("a") + r)
        if i == 0:
            return letters


def _toy_data(n: int, seed: int = 0) -> tuple[list[list[str]], list[list[str]]]:
    """Sentences of known words, capitalised names, and "New York" (B-LOC I-LOC)."""
    rng = random.Random(seed)
    sentences, tags = [], []
    for _ in range(n):
        words, labels = [], []
        for _ in range(rng.randint(2, 7)):
            if rng.random() < 0.15:
                words += ["New", "York"]
                labels += ["B-LOC", "I-LOC"]
                continue
            w = rng.choice(list(_TOY_WORDS))
            label = _TOY_WORDS[w]
            words.append(w.capitalize() if label != "O" else w)
            labels.append(label)
        sentences.append(words)
        tags.append(labels)
    return sentences, tags


# -- vocabulary --------------------------------------------------------------------------------


def test_build_lowercases_normalises_digits_and_keeps_the_most_frequent() -> None:
    sentences = [["The", "the", "THE", "cat", "1996", "2001"], ["cat", "dog", "rare"]]
    vocab = Vocab.build(sentences, ["O"], StudentConfig(min_word_freq=2, max_vocab=100))
    assert vocab.words == [PAD, UNK, "the", "0000", "cat"]  # counts 3, 2, 2 (ties alphabetical)
    assert normalize_word("Zürich-2024") == "zürich-0000"
    everything = Vocab.build(sentences, ["O"], StudentConfig(max_vocab=100))
    assert everything.words[2:] == ["the", "0000", "cat", "dog", "rare"]
    words, _, _, _ = vocab.encode([["THE", "1234", "dog"]])
    assert words.tolist() == [[2, 3, 1]]  # "dog" is too rare: <unk>


def test_max_vocab_bounds_the_table() -> None:
    sentences = [[_word(i)] * (1 + i % 7) for i in range(500)]
    vocab = Vocab.build(sentences, ["O"], StudentConfig(max_vocab=100))
    assert len(vocab.words) == 100
    counts = {_word(i): 1 + i % 7 for i in range(500)}
    kept_counts = {counts[w] for w in vocab.words[2:]}
    assert kept_counts == {7, 6}  # only the most frequent words survive (72 with count 7, then 6)


def test_case_feature() -> None:
    got = {w: CASES[case_id(w)] for w in
           ["london", "London", "EU", "iPhone", "1996-08-22", "F16", ",", "東京", "Москва", "A", "U.S."]}
    assert got == {"london": "lower", "London": "title", "EU": "upper", "iPhone": "mixed",
                   "1996-08-22": "number", "F16": "has_digit", ",": "punct", "東京": "other",
                   "Москва": "title", "A": "title", "U.S.": "upper"}


def test_unicode_characters_get_their_own_ids() -> None:
    vocab = Vocab.build([["Zürich", "Москва", "東京"]], ["O"], StudentConfig())
    seen = set("ZürichМосква東京")
    assert len({vocab.char_index[c] for c in seen}) == len(seen) == len(vocab.chars) - 2
    _, _, chars, _ = vocab.encode([["Zürich", "Москва", "東京", "Zurich"]])
    assert chars[0, 0, 1].item() == vocab.char_index["ü"] > 1
    assert chars[0, 3, 1].item() == 1  # a plain "u" was never seen: <unk>
    assert chars[0, 2, :2].tolist() == [vocab.char_index["東"], vocab.char_index["京"]]
    assert len(set(chars[0, 1, :6].tolist())) == 6


def test_encode_shapes_padding_and_char_cap() -> None:
    vocab = Vocab.build([["a", "bb"]], ["O", "B-X"], StudentConfig())
    long_word = "x" * 50
    words, cases, chars, mask = vocab.encode([["a", "bb", long_word], ["bb"], []])
    assert words.shape == cases.shape == mask.shape == (3, 3)
    assert chars.shape == (3, 3, MAX_WORD_CHARS)
    assert mask.tolist() == [[True, True, True], [True, False, False], [False, False, False]]
    assert words[1].tolist() == [3, 0, 0] and cases[1, 1:].tolist() == [0, 0]
    assert chars[0, 0, 1:].sum().item() == 0 and chars[0, 2].tolist() == [1] * MAX_WORD_CHARS
    tags = vocab.tag_tensor([[0, 1], [1]])
    assert tags.tolist() == [[0, 1], [1, IGNORE]]


def test_vocab_round_trip_gives_identical_encodings() -> None:
    sentences, _ = _toy_data(20)
    vocab = Vocab.build([*sentences, ["Zürich", "東京"]], TOY_LABELS, StudentConfig())
    again = Vocab.from_dict(json.loads(json.dumps(vocab.to_dict())))
    batch = [*sentences[:5], ["Zürich", "東京", "unseen", "42"]]
    for a, b in zip(vocab.encode(batch), again.encode(batch), strict=True):
        assert torch.equal(a, b)
    assert again.labels == TOY_LABELS
    with pytest.raises(ValueError, match="version"):
        Vocab.from_dict({**vocab.to_dict(), "version": 99})


# -- model -------------------------------------------------------------------------------------


def _conll_sized_vocab(n_words: int) -> Vocab:
    chars = [PAD, UNK, *string.printable[:94]]
    return Vocab([PAD, UNK, *(_word(i) for i in range(n_words - 2))], chars, CONLL_LABELS)


def test_parameter_count_at_defaults() -> None:
    model = NeuralTagger(StudentConfig(), _conll_sized_vocab(StudentConfig().max_vocab))
    assert count_parameters(model) <= 3_000_000
    # max_vocab bounds the count whatever the data: 50k distinct words are cut to the default cap.
    vocab = Vocab.build([[_word(i) for i in range(50000)]], CONLL_LABELS, StudentConfig())
    assert len(vocab.words) == StudentConfig().max_vocab
    for crf in (False, True):
        assert count_parameters(NeuralTagger(StudentConfig(crf=crf), vocab)) <= 3_000_000


VARIANTS = [
    {"char_encoder": c, "encoder": e, "crf": crf}
    for c in ("cnn", "lstm") for e in ("bilstm", "idcnn") for crf in (False, True)
]


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: "-".join(str(x) for x in v.values()))
def test_variant_shapes_and_learning(variant: dict) -> None:
    torch.manual_seed(0)
    sentences, tags = _toy_data(32)
    vocab = Vocab.build(sentences, TOY_LABELS, StudentConfig())
    model = NeuralTagger(StudentConfig(**SMALL, **variant), vocab)
    words, cases, chars, mask = vocab.encode(sentences)
    gold = vocab.tag_tensor([[vocab.label_index[t] for t in row] for row in tags])
    emissions = model(words, cases, chars, mask)
    assert emissions.shape == (*words.shape, len(TOY_LABELS))
    assert [len(p) for p in model.decode(emissions, mask)] == [len(s) for s in sentences]

    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    losses = []
    for _ in range(40):
        optimizer.zero_grad()
        loss = model.gold_loss(model(words, cases, chars, mask), gold, mask)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0]
    model.eval()
    predicted = model.decode(model(words, cases, chars, mask), mask)
    assert predicted == [[vocab.label_index[t] for t in s] for s in tags]


@pytest.mark.parametrize("encoder", ["bilstm", "idcnn"])
def test_output_does_not_depend_on_batch_padding(encoder: str) -> None:
    torch.manual_seed(0)
    sentences, _ = _toy_data(4)
    vocab = Vocab.build(sentences, TOY_LABELS, StudentConfig())
    model = NeuralTagger(StudentConfig(**SMALL, encoder=encoder), vocab).eval()
    short, long = ["Alice", "saw", "Rome"], ["the", "and"] * 12
    with torch.no_grad():
        alone = model(*vocab.encode([short]))[0]
        padded = model(*vocab.encode([short, long]))[0, : len(short)]
    assert torch.allclose(alone, padded, atol=1e-5)


def test_gold_loss_skips_ignored_labels() -> None:
    torch.manual_seed(0)
    vocab = Vocab.build([["a", "b", "c"]], TOY_LABELS, StudentConfig())
    model = NeuralTagger(StudentConfig(**SMALL), vocab)
    words, cases, chars, mask = vocab.encode([["a", "b", "c"], ["a"]])
    emissions = model(words, cases, chars, mask)
    tags = torch.tensor([[1, IGNORE, 2], [3, IGNORE, IGNORE]])
    expected = torch.nn.functional.cross_entropy(emissions[[0, 0, 1], [0, 2, 0]], torch.tensor([1, 2, 3]))
    assert model.gold_loss(emissions, tags, mask).item() == pytest.approx(expected.item(), rel=1e-6)
    nothing = model.gold_loss(emissions, torch.full_like(tags, IGNORE), mask)
    assert nothing.item() == 0.0 and nothing.requires_grad

    crf_model = NeuralTagger(StudentConfig(**SMALL, crf=True), vocab)
    emissions = crf_model(words, cases, chars, mask)
    unlabeled = crf_model.gold_loss(emissions, torch.full_like(tags, IGNORE), mask)
    assert unlabeled.item() == pytest.approx(0.0, abs=1e-4)
    assert crf_model.gold_loss(emissions, tags, mask).item() > 0.01


def test_crf_gold_loss_is_per_word_like_cross_entropy() -> None:
    torch.manual_seed(0)
    vocab = Vocab.build([["a", "b", "c"]], TOY_LABELS, StudentConfig())
    model = NeuralTagger(StudentConfig(**SMALL, crf=True), vocab)
    words, cases, chars, mask = vocab.encode([["a", "b", "c"], ["a"]])
    emissions = model(words, cases, chars, mask)
    tags = torch.tensor([[1, 0, 2], [3, IGNORE, IGNORE]])
    per_sentence = model.crf.nll(emissions, tags, mask)  # (2,)
    expected = per_sentence.sum() / 4  # 4 real words in the batch
    assert model.gold_loss(emissions, tags, mask).item() == pytest.approx(expected.item(), rel=1e-6)


def test_empty_sentences_are_handled() -> None:
    vocab = Vocab.build([["a"]], TOY_LABELS, StudentConfig())
    for char_encoder in ("cnn", "lstm"):
        for crf in (False, True):
            model = NeuralTagger(StudentConfig(**SMALL, char_encoder=char_encoder, crf=crf), vocab).eval()
            for batch in ([[]], [["a"], []]):
                words, cases, chars, mask = vocab.encode(batch)
                emissions = model(words, cases, chars, mask)
                assert torch.isfinite(emissions).all()
                assert [len(p) for p in model.decode(emissions, mask)] == [len(s) for s in batch]


def test_vectors_from_glove_text(tmp_path: Path) -> None:
    glove = tmp_path / "vectors.txt"
    glove.write_text(
        "5 3\n"  # word2vec header, skipped
        "Paris 9 9 9\n"  # another spelling of the key "paris": loses to the exact one below
        "paris 1 2 3\n"
        "rome 0.5 -0.5 0.25\n"
        "0000 7 7 7\n"
        "london 4 4 4\n",
        encoding="utf-8",
    )
    words, matrix = read_vectors(glove)
    assert words == ["Paris", "paris", "rome", "0000", "london"] and matrix.shape == (5, 3)
    # the file's words fill the table after training's, up to max_vocab
    vocab = Vocab.build([["Paris", "rome", "1996", "unseen"]], TOY_LABELS, StudentConfig(), pretrained=words)
    assert vocab.words == ["<pad>", "<unk>", "0000", "paris", "rome", "unseen", "london"]
    torch.manual_seed(0)
    vectors = match_vectors(vocab, words, matrix)
    assert vectors.shape == (len(vocab.words), 3)
    assert vectors[vocab.word_index["paris"]].tolist() == [1.0, 2.0, 3.0]
    assert vectors[vocab.word_index["rome"]].tolist() == [0.5, -0.5, 0.25]
    assert vectors[vocab.word_index["0000"]].tolist() == [7.0, 7.0, 7.0]
    assert vectors[vocab.word_index["london"]].tolist() == [4.0, 4.0, 4.0]
    assert vectors[0].abs().sum() == 0
    missing = vectors[vocab.word_index["unseen"]]
    assert 0 < missing.abs().max() < 1  # small random init

    model = NeuralTagger(StudentConfig(word_dim=50), vocab, vectors)
    assert model.word_emb.embedding_dim == 3
    assert torch.equal(model.word_emb.weight.detach(), vectors)
    assert model.word_emb.weight.requires_grad

    bad = tmp_path / "bad.txt"
    bad.write_text("paris 1 2 3\nrome 1 2\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 2"):
        read_vectors(bad)


def test_packaged_glove() -> None:
    words, matrix = read_vectors(GLOVE_6B_50D)
    assert len(words) == 400_000 and matrix.shape == (400_000, 50)
    assert words[:3] == ["the", ",", "."]  # most frequent first
    vocab = Vocab.build([["Germany", "beat", "Wales"]], TOY_LABELS, StudentConfig(max_vocab=1000), words)
    vectors = match_vectors(vocab, words, matrix)
    assert len(vocab.words) == 1000 and "the" in vocab.word_index
    germany = torch.from_numpy(matrix[words.index("germany")])
    assert torch.allclose(vectors[vocab.word_index["germany"]], germany)


@pytest.mark.parametrize("variant", [{"crf": True}, {"encoder": "idcnn", "char_encoder": "lstm"}])
def test_rebuilds_from_saved_weights(tmp_path: Path, variant: dict) -> None:
    sentences, _ = _toy_data(8)
    vocab = Vocab.build(sentences, TOY_LABELS, StudentConfig())
    cfg = StudentConfig(**SMALL, **variant)
    model = NeuralTagger(cfg, vocab).eval()
    save_file(model.state_dict(), str(tmp_path / "model.safetensors"))
    state = load_file(str(tmp_path / "model.safetensors"))
    again = NeuralTagger(cfg, Vocab.from_dict(vocab.to_dict()), vectors=state["word_emb.weight"]).eval()
    again.load_state_dict(state)
    batch = vocab.encode(sentences)
    with torch.no_grad():
        assert torch.equal(model(*batch), again(*batch))
        assert model.decode(model(*batch), batch[3]) == again.decode(again(*batch), batch[3])


def test_encode_arrays_match_a_token_by_token_lookup_and_remember_each_word_type() -> None:
    vocab = Vocab.build([["Zürich", "is", "big"], ["EU", "1996-08-22"]], ["O", "B-X"], StudentConfig())
    batch = [["Zürich", "is", "Zürich", "x" * 30, ""], [], ["EU", "2001-10-05", "unseen"]]
    words, cases, chars, mask = vocab.encode_arrays(batch)
    assert words.dtype == cases.dtype == chars.dtype == np.int64 and mask.dtype == bool
    assert chars.shape == (3, 5, MAX_WORD_CHARS)
    for b, sentence in enumerate(batch):
        assert mask[b].tolist() == [True] * len(sentence) + [False] * (5 - len(sentence))
        for t, word in enumerate(sentence):
            assert words[b, t] == vocab.word_index.get(normalize_word(word), 1)
            assert cases[b, t] == case_id(word)
            ids = [vocab.char_index.get(c, 1) for c in word[:MAX_WORD_CHARS]] or [1]
            assert chars[b, t].tolist() == ids + [0] * (MAX_WORD_CHARS - len(ids))
    assert words[2, 1] == vocab.word_index["0000-00-00"] > 1  # dates share one entry
    hits = vocab._cached_ids.cache_info().hits
    vocab.encode_arrays(batch)
    assert vocab._cached_ids.cache_info().hits == hits + 8  # every token of the second call: from memory
    assert vocab._cached_ids.cache_info().maxsize == WORD_CACHE
