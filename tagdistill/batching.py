"""Batches of similar length in random order: less padding per step, a new order every epoch."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


def length_batches(
    items: Sequence[T], size: int, rng: random.Random, key: Callable[[T], int], pool_batches: int | None = 20
) -> list[list[T]]:
    """Shuffle ``items``, sort them by ``key`` within pools of ``pool_batches`` batches (``None``: one
    pool of everything, so ties come in random order), cut into batches of ``size`` and shuffle those."""
    items = list(items)
    rng.shuffle(items)
    pool = size * pool_batches if pool_batches else max(len(items), 1)
    batches = []
    for start in range(0, len(items), pool):
        chunk = sorted(items[start : start + pool], key=key)
        batches.extend(chunk[i : i + size] for i in range(0, len(chunk), size))
    rng.shuffle(batches)
    return batches


def epoch_plan(epochs: int, min_steps: int, per_epoch: int) -> tuple[int, int]:
    """(epochs to run, dev check every k epochs) for a loop of ``per_epoch`` steps an epoch: ``epochs``
    raised until there are ``min_steps`` steps, dev F1 checked ``epochs`` times in all (the caller also
    checks after the last). ``epochs=0``, or nothing to train on, runs no epoch."""
    if not epochs or not per_epoch:
        return 0, 1
    planned = max(epochs, math.ceil(min_steps / per_epoch))
    return planned, max(1, planned // epochs)
