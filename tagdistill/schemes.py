"""Tag schemes: detect a file's scheme, convert it to IOB2, repair decoded tags, read entity spans.

IOB2 is the one scheme used inside tagdistill. Every model's decoded tags (teacher, softmax student,
CRF student) go through ``repair_iob2`` before they are scored or turned into spans, so the report,
the dev selection and ``/predict`` all see the same entities.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Literal

from seqeval.metrics.sequence_labeling import get_entities

if TYPE_CHECKING:
    from torch import Tensor

Scheme = Literal["IOB1", "IOB2", "BIOES"]
IGNORE = -100  # label id that losses skip (padding, non-first sub-tokens, filtered pseudo-labels)


def label_index(labels: list[str]) -> dict[str, int]:
    """Label -> id, in the order of ``labels`` (a dataset's: "O", then B- and I- of each type)."""
    return {label: i for i, label in enumerate(labels)}


def detect_scheme(tag_seqs: Iterable[list[str]]) -> Scheme:
    """The scheme of a file's tag sequences.

    BIOES when any S-/E- tag occurs (BILOU's U-/L- count as BIOES too). Otherwise IOB2 when a
    B- tag starts an entity (after O, another type or at a sentence start), else IOB1 when an
    I- tag does; a file without either (all O, say) is IOB2.
    """
    starts: set[str] = set()  # prefixes seen on a tag that starts an entity
    for tags in tag_seqs:
        previous = "O"
        for tag in tags:
            if tag[0] in "ESLU":
                return "BIOES"
            if tag != "O" and (previous == "O" or previous[2:] != tag[2:]):
                starts.add(tag[0])
            previous = tag
    return "IOB1" if starts == {"I"} else "IOB2"


def to_iob2(tags: list[str], scheme: Scheme) -> list[str]:
    """Convert one sentence's tags to IOB2.

    BIOES/BILOU: S-/U- become B-, E-/L- become I-. Then, in every scheme, an I-X that does not
    continue an entity of type X (it follows O, another type, or starts the sentence) becomes
    B-X. That one rule converts IOB1 and also repairs such tags in IOB2 files, where they are
    read as seqeval's default mode reads them: as the start of an entity. IOB1 and IOB2 accept
    only O, B- and I- tags.
    """
    out: list[str] = []
    previous = "O"
    for tag in tags:
        if tag != "O":
            prefix, kind = tag[0], tag[2:]
            if scheme != "BIOES" and prefix not in "BI":
                raise ValueError(f"tag {tag} does not belong to {scheme}")
            if prefix in "SU":
                prefix = "B"
            elif prefix in "EL":
                prefix = "I"
            if prefix == "I" and (previous == "O" or previous[2:] != kind):
                prefix = "B"
            tag = f"{prefix}-{kind}"
        out.append(tag)
        previous = tag
    return out


def repair_iob2(tags: list[str]) -> list[str]:
    """Decoded tags made valid IOB2: an ``I-X`` that does not continue an X entity starts one.

    A model may predict ``I-PER I-PER O`` where gold has ``B-PER I-PER O``; strict IOB2 scoring
    would drop that entity although every reader (seqeval's default mode, conlleval, ``spans``)
    finds it. Repaired, strict scoring counts it, and the score matches what ``/predict`` shows.
    """
    return to_iob2(tags, "IOB2")


def argmax_tags(scores: Tensor, labels: list[str]) -> list[str]:
    """A sentence's (n_words, L) word scores (logits or log-probabilities) as IOB2 tags: the argmax
    label of each word, repaired (``repair_iob2``)."""
    return repair_iob2([labels[i] for i in scores.argmax(-1).tolist()])


def spans(tags: list[str]) -> list[tuple[str, int, int]]:
    """Entities of an IOB2 sequence as (type, first token, last token + 1), by seqeval's reading.

    An I-X that does not continue an X entity starts a new one, as in ``to_iob2``.
    """
    return [(kind, start, end + 1) for kind, start, end in get_entities(list(tags))]
