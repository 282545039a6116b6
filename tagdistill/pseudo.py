"""Pseudo-labels: the teacher's argmax tags on unlabeled sentences, optionally filtered by confidence."""

from __future__ import annotations

from typing import Literal

import torch

from tagdistill.schemes import IGNORE


def pseudo_labels(
    logits: list[torch.Tensor], threshold: float = 0.0, unit: Literal["token", "sentence"] = "token"
) -> list[list[int]]:
    """The teacher's argmax label ids per word; low-confidence ones become ``IGNORE``.

    Confidence is the teacher's softmax probability (T = 1) of its argmax label. With
    ``unit="token"`` each word below ``threshold`` is ignored on its own; with
    ``unit="sentence"`` a sentence whose least confident word is below it is ignored whole
    (its distillation term still applies: only the hard labels are dropped).
    """
    out = []
    for sent in logits:  # (n, L)
        conf, ids = sent.float().softmax(-1).max(-1)  # (n,), (n,)
        if unit == "token":
            ids = torch.where(conf >= threshold, ids, torch.full_like(ids, IGNORE))
        elif len(conf) and conf.min() < threshold:
            ids = torch.full_like(ids, IGNORE)
        out.append(ids.tolist())
    return out
