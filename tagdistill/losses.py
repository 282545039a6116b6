"""Distillation terms: how far the student's label scores are from the teacher's."""

from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from torch import Tensor

DistillKind = Literal["kl", "mse", "soft_ce"]


def distill_loss(student: Tensor, teacher: Tensor, kind: DistillKind, temperature: float) -> Tensor:
    """Distillation loss between student and teacher logits (N, L) of N real words.

    With T = ``temperature``, p = softmax(teacher / T) and q = softmax(student / T), per word:

    - ``kl``:      T^2 * KL(p || q) = T^2 * sum_l p_l * (log p_l - log q_l)
    - ``mse``:     T^2 * mean_l (student_l / T - teacher_l / T)^2 = mean_l (student_l - teacher_l)^2
    - ``soft_ce``: T^2 * -sum_l p_l * log q_l                  (= kl + T^2 * entropy(p))

    and the loss is the mean over the N words. The T^2 factor (Hinton et al. 2015) keeps the
    gradient's size about the same whatever T. kl and soft_ce have the same gradient in the
    student; kl is 0 when the distributions agree. mse takes the same factor, which cancels T:
    matching logits is the high-temperature limit of KL (Hinton et al.), so T has no effect on
    it. An empty batch (N = 0) costs 0.
    """
    if kind not in ("kl", "mse", "soft_ce"):
        raise ValueError(f"unknown distillation loss {kind!r}")
    if student.shape != teacher.shape:
        raise ValueError(f"student scores {tuple(student.shape)} != teacher scores {tuple(teacher.shape)}")
    if student.shape[0] == 0:
        return student.sum() * 0.0
    s = student / temperature  # (N, L)
    t = teacher / temperature  # (N, L)
    if kind == "mse":
        return temperature**2 * F.mse_loss(s, t)
    log_q = F.log_softmax(s, dim=1)  # (N, L)
    log_p = F.log_softmax(t, dim=1)  # (N, L)
    if kind == "kl":
        per_word = (log_p.exp() * (log_p - log_q)).sum(dim=1)  # (N,)
    else:
        per_word = -(log_p.exp() * log_q).sum(dim=1)  # (N,) soft_ce
    return temperature**2 * per_word.mean()
