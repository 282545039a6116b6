"""Words <-> sub-tokens: the windows a transformer reads, and word-level values taken back out of them.

Every word is represented by its FIRST sub-token: training labels sit there (the other sub-tokens get
-100 and are ignored by the loss) and word logits are read there.

A sentence longer than ``max_length`` sub-tokens (``[CLS]`` and ``[SEP]`` included) is cut into windows
at word boundaries. Each window *owns* a run of consecutive words and may start with up to ``stride``
sub-tokens of left context: the last whole words owned by the window before it. A word is labelled and
predicted only in the window that owns it, never where it is left context, so the owned runs partition
the sentence: every word gets exactly one label in training and one prediction in inference, and the
windows after the first see ``stride`` sub-tokens of what came before. Context gives way (oldest word
first) when the next word would not fit beside it, so every window owns at least one word; a single word
longer than a window keeps only its first ``max_length - 2`` sub-tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from transformers import PreTrainedTokenizerBase

from tagdistill.schemes import IGNORE


@dataclass
class Window:
    """One transformer input: ``[CLS]`` left context + owned words ``[SEP]``."""

    sentence: int  # index of its sentence in the list given to make_windows
    word_start: int  # index (in the sentence) of the first word this window owns
    input_ids: list[int]  # sub-token ids, special tokens included
    first: list[int]  # position in input_ids of each owned word's first sub-token


def word_pieces(
    tokenizer: PreTrainedTokenizerBase, sentences: Sequence[Sequence[str]]
) -> list[list[list[int]]]:
    """Sub-token ids of every word, per sentence: ``[sentence][word] -> ids`` (never empty).

    A word the tokenizer turns into nothing (control or format characters, a lone combining accent that
    the uncased BERT normaliser strips, whitespace) becomes the unknown token, so it still has a position.
    """
    unk = tokenizer.unk_token_id
    if unk is None:
        raise ValueError("the tokenizer has no unknown token to stand in for words without sub-tokens")
    result: list[list[list[int]]] = [[[] for _ in s] for s in sentences]
    filled = [i for i, s in enumerate(sentences) if s]
    if filled:
        enc = tokenizer(
            [list(sentences[i]) for i in filled],
            is_split_into_words=True,
            add_special_tokens=False,
            verbose=False,  # whole sentences may exceed model_max_length: windows come later
        )
        for row, i in enumerate(filled):
            pieces = result[i]
            for token_id, word in zip(enc["input_ids"][row], enc.word_ids(row), strict=True):
                pieces[word].append(token_id)
    for pieces in result:
        for ids in pieces:
            if not ids:
                ids.append(unk)
    return result


def make_windows(
    tokenizer: PreTrainedTokenizerBase, sentences: Sequence[Sequence[str]], max_length: int, stride: int
) -> list[Window]:
    """Windows of at most ``max_length`` sub-tokens covering every word once (see the module docstring).

    Windows come in sentence order and, within a sentence, in word order; an empty sentence has none.
    """
    budget = max_length - 2  # room left by [CLS] and [SEP]
    if budget < 1:
        raise ValueError(f"max_length {max_length} leaves no room for words")
    cls_id, sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id
    if cls_id is None or sep_id is None:
        raise ValueError("the tokenizer needs a [CLS]-like and a [SEP]-like token")
    windows = []
    for index, words in enumerate(word_pieces(tokenizer, sentences)):
        pieces = [ids[:budget] for ids in words]
        for ctx, start, end in _spans([len(ids) for ids in pieces], budget, stride):
            input_ids = [cls_id]
            first = []
            for w in range(ctx, end):
                if w >= start:
                    first.append(len(input_ids))
                input_ids.extend(pieces[w])
            input_ids.append(sep_id)
            windows.append(Window(index, start, input_ids, first))
    return windows


def _spans(sizes: list[int], budget: int, stride: int) -> list[tuple[int, int, int]]:
    """(context start, owned start, end) word indices of each window; ``sizes`` are sub-token counts."""
    spans = []
    start = 0
    while start < len(sizes):
        ctx, used = start, 0
        while ctx > 0 and used + sizes[ctx - 1] <= stride:
            ctx -= 1
            used += sizes[ctx]
        while used + sizes[start] > budget:  # the next word must fit: context gives way, oldest first
            used -= sizes[ctx]
            ctx += 1
        end = start
        while end < len(sizes) and used + sizes[end] <= budget:
            used += sizes[end]
            end += 1
        spans.append((ctx, start, end))
        start = end
    return spans


def batch_tensors(
    windows: Sequence[Window], pad_id: int, tags: Sequence[Sequence[int]] | None = None
) -> dict[str, Tensor]:
    """Pad windows to the longest: ``input_ids`` and ``attention_mask`` (B, T), and with ``tags``
    (label ids per word, indexed like the sentences given to make_windows) ``labels`` (B, T), holding
    each owned word's label at its first sub-token and -100 elsewhere."""
    width = max(len(w.input_ids) for w in windows)
    input_ids = torch.full((len(windows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(windows), width), dtype=torch.long)
    for row, w in enumerate(windows):
        input_ids[row, : len(w.input_ids)] = torch.tensor(w.input_ids)
        mask[row, : len(w.input_ids)] = 1
    batch = {"input_ids": input_ids, "attention_mask": mask}
    if tags is not None:
        labels = torch.full((len(windows), width), IGNORE, dtype=torch.long)
        for row, w in enumerate(windows):
            owned = tags[w.sentence][w.word_start : w.word_start + len(w.first)]
            labels[row, w.first] = torch.tensor(owned, dtype=torch.long)
        batch["labels"] = labels
    return batch


def first_subtoken_logits(logits: Tensor, windows: Sequence[Window]) -> list[Tensor]:
    """(B, T, L) logits of a padded batch -> per window, (owned words, L) at their first sub-tokens."""
    counts = [len(w.first) for w in windows]
    rows = torch.repeat_interleave(torch.arange(len(windows)), torch.tensor(counts))
    cols = torch.tensor([p for w in windows for p in w.first], dtype=torch.long)
    return list(logits[rows.to(logits.device), cols.to(logits.device)].split(counts))


def merge_windows(
    windows: Sequence[Window], per_window: Sequence[Tensor], n_sentences: int, num_labels: int
) -> list[Tensor]:
    """Per-window word logits (from first_subtoken_logits) -> one (n_words, L) tensor per sentence.

    ``per_window[i]`` belongs to ``windows[i]``; windows may come in any order. A sentence without
    windows (no words) gets an empty (0, L) tensor.
    """
    parts: list[list[tuple[int, Tensor]]] = [[] for _ in range(n_sentences)]
    for w, values in zip(windows, per_window, strict=True):
        parts[w.sentence].append((w.word_start, values))
    return [
        torch.cat([v for _, v in sorted(p, key=lambda item: item[0])]) if p else torch.zeros(0, num_labels)
        for p in parts
    ]
