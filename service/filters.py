"""The query parameters that filter the job and model lists by their tags and names."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query

from jobstore.store import Match


def label_filter(
    tag: Annotated[str | None, Query(max_length=32, description="only those with this tag")] = None,
    q: Annotated[
        str | None, Query(max_length=100, description="only those whose name holds this (any case)")
    ] = None,
) -> Match:
    return Match(tag=tag, q=q)


MatchDep = Annotated[Match, Depends(label_filter)]
