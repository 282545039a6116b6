"""Builders of test data for the service tests: a tiny random BERT teacher, the sample files."""

from __future__ import annotations

from pathlib import Path

SAMPLE = Path(__file__).resolve().parents[1] / "tagdistill" / "sample"
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def tiny_bert(folder: Path, words: list[str]) -> Path:
    """A randomly initialised 1-layer BERT with a WordPiece vocabulary of ``words`` and characters.

    Built locally (no download), so teacher fine-tuning in tests takes seconds.
    """
    from transformers import BertConfig, BertModel, BertTokenizerFast

    chars = sorted({c for w in words for c in w})
    vocab = SPECIALS + sorted({w.lower() for w in words}) + chars + [f"##{c}" for c in chars]
    vocab = list(dict.fromkeys(vocab))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    config = BertConfig(
        vocab_size=len(vocab), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=256,
    )
    BertModel(config).save_pretrained(folder)
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True).save_pretrained(folder)
    return folder


def sample_words() -> list[str]:
    words = []
    for line in (SAMPLE / "train.conll").read_text().splitlines():
        if line.strip():
            words.append(line.split()[0])
    return words
