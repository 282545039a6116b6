"""Tagging with a trained student (or, slower, its teacher)."""

from __future__ import annotations

import logging
import time

import anyio
from fastapi import APIRouter, HTTPException, Request, Response

from jobstore.store import NotFound
from service.auth import CallerDep
from service.bodies import PredictRequest, PredictResponse
from service.deps import DataDirDep, ModelsDep, SettingsDep, StoreDep
from service.errors import invalid

router = APIRouter(tags=["predict"])
log = logging.getLogger("tagdistill.api")

TEACHER_NOTE = "tagged by the transformer teacher, which is much slower than the student; for comparison"
CHUNK_CHARS = 20_000  # inputs are tagged in pieces of about this size, between which the request may end


@router.post("/predict", response_model=PredictResponse)
async def predict(
    req: PredictRequest, request: Request, store: StoreDep, data: DataDirDep, models: ModelsDep,
    settings: SettingsDep, caller: CallerDep,
) -> PredictResponse | Response:
    """Tokens, IOB2 tags and entities with character offsets, one result per input.

    Bounded work: at most ``max_predict_inputs`` inputs, ``max_predict_chars`` characters each and
    ``max_predict_total_chars`` in all (``max_teacher_predict_chars`` with ``use_teacher``); past
    ``predict_time_limit_s`` the request ends with a 503, and when the client hangs up it ends at once.
    """
    field = "texts" if req.texts is not None else "tokens"
    inputs = req.texts if req.texts is not None else req.tokens
    if len(inputs) > settings.max_predict_inputs:
        msg = f"{len(inputs)} inputs; at most {settings.max_predict_inputs} per request"
        raise invalid(["body", field], msg)
    sizes = [len(item) if isinstance(item, str) else sum(len(t) + 1 for t in item) for item in inputs]
    for i, size in enumerate(sizes):
        if size > settings.max_predict_chars:
            raise invalid(["body", field, i], f"{size} characters; at most {settings.max_predict_chars}")
    total = settings.max_teacher_predict_chars if req.use_teacher else settings.max_predict_total_chars
    if sum(sizes) > total:
        who = "the teacher" if req.use_teacher else "the student"
        raise invalid(["body", field], f"{sum(sizes)} characters in all; at most {total} a request to {who}")
    model = await anyio.to_thread.run_sync(store.get_model, req.model_id, caller.only)
    path = model.teacher_path if req.use_teacher else model.student_path
    folder = data.resolve(path)
    if not folder.is_dir():
        raise NotFound(f"the files of model {model.id} are not in this data directory ({path})")
    started = time.perf_counter()
    tagger = await anyio.to_thread.run_sync(models.get, folder)
    results: list[dict] = []
    for chunk in _chunks(inputs, sizes):
        if await request.is_disconnected():  # nobody waits for the rest: stop spending the CPU on it
            log.info("predict abandoned: the client hung up", extra={"done": len(results), "of": len(inputs)})
            return Response(status_code=499)
        if time.perf_counter() - started > settings.predict_time_limit_s:
            msg = f"tagging took over {settings.predict_time_limit_s} s; send fewer or shorter texts"
            raise HTTPException(503, msg, headers={"Retry-After": "5"})
        results += await anyio.to_thread.run_sync(tagger.predict, chunk)
    return PredictResponse(
        model_id=model.id,
        model="teacher" if req.use_teacher else "student",
        note=TEACHER_NOTE if req.use_teacher else None,
        elapsed_ms=round((time.perf_counter() - started) * 1000, 2),
        results=results,
    )


def _chunks(inputs: list, sizes: list[int]) -> list[list]:
    """``inputs`` in order, cut into pieces of about CHUNK_CHARS characters (at least one input each)."""
    chunks: list[list] = [[]]
    filled = 0
    for item, size in zip(inputs, sizes, strict=True):
        if chunks[-1] and filled + size > CHUNK_CHARS:
            chunks.append([])
            filled = 0
        chunks[-1].append(item)
        filled += size
    return chunks
