"""Batches of similar length in random order: less padding per step, a new order every epoch."""

from __future__ import annotations

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
