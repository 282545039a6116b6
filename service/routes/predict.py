"""Tagging with a trained student (or, slower, its teacher)."""

from __future__ import annotations

import asyncio
import logging
import time

import anyio
from fastapi import APIRouter, HTTPException, Request, Response

from jobstore.records import PRODUCTION, Model
from jobstore.store import NotFound
from service.auth import Caller, CallerDep
from service.bodies import PredictRequest, PredictResponse
from service.deps import DataDirDep, ModelRecords, ModelsDep, RecordsDep, SettingsDep
from service.errors import invalid
from service.predictor import PIECE_CHARS

router = APIRouter(tags=["predict"])
log = logging.getLogger("tagdistill.api")

TEACHER_NOTE = "tagged by the transformer teacher, which is much slower than the student; for comparison"
NO_PRODUCTION = (
    f"no model given, and you have no {PRODUCTION!r} alias: name one in 'model' (a model id or an alias), "
    f'or point the alias at a model first: PUT /aliases/{PRODUCTION} with {{"model_id": "mdl_..."}}'
)


@router.post("/predict", response_model=PredictResponse)
async def predict(
    req: PredictRequest, request: Request, records: RecordsDep, data: DataDirDep, models: ModelsDep,
    settings: SettingsDep, caller: CallerDep,
) -> PredictResponse | Response:
    """Tokens, IOB2 tags and entities with character offsets, one result per input.

    The model is ``model`` (an id or one of your aliases), else the one your alias ``production``
    points to: never just the newest, so a new model is served only once someone moves the alias.

    Bounded work: at most ``max_predict_inputs`` inputs, ``max_predict_chars`` characters each and
    ``max_predict_total_chars`` in all (``max_teacher_predict_chars`` with ``use_teacher``); past
    ``predict_time_limit_s`` the request ends with a 503, and when the client hangs up it ends at once.

    Student requests are batched with those of concurrent clients (``service.predictor.Batcher``,
    ``batch_window_ms``); ``batched_with`` says with how many. The teacher is never batched.
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
    model, alias = await _choose(records, req.model or req.model_id, caller)
    path = model.teacher_path if req.use_teacher else model.student_path
    folder = await anyio.to_thread.run_sync(data.fetch, path)  # from the artifact store, if need be
    if not folder.is_dir():
        raise NotFound(f"the files of model {model.id} are not in this data directory ({path})")
    started = time.perf_counter()
    kind = "teacher" if req.use_teacher else "student"
    loaded, load_ms = await models.fetch(folder)
    if load_ms is not None:
        log.info("model loaded", extra={"model_id": model.id, "model": kind, "load_ms": load_ms,
                                        "runtime": loaded.tagger.runtime})
    results: list[dict] = []
    batched_with = 1
    for chunk, chars in _chunks(inputs, sizes):
        if await request.is_disconnected():  # nobody waits for the rest: stop spending the CPU on it
            log.info("predict abandoned: the client hung up", extra={"done": len(results), "of": len(inputs)})
            return Response(status_code=499)
        left_s = settings.predict_time_limit_s - (time.perf_counter() - started)
        if left_s <= 0:
            raise _too_slow(settings.predict_time_limit_s)
        if req.use_teacher:  # seconds a call: batching would only make its neighbours wait
            results += await anyio.to_thread.run_sync(loaded.tagger.predict, chunk)
            continue
        try:
            # Waits in the model's queue (with the other clients' pieces) as well as tagging; on the
            # time limit, a piece still queued is dropped (a running batch runs to its end regardless).
            part, shared = await asyncio.wait_for(loaded.batcher.predict(chunk, chars), left_s)
        except asyncio.TimeoutError:  # (not the builtin TimeoutError before Python 3.11)
            raise _too_slow(settings.predict_time_limit_s) from None
        results += part
        batched_with = max(batched_with, shared)
    return PredictResponse(
        model_id=model.id,
        alias=alias,
        model=kind,
        note=TEACHER_NOTE if req.use_teacher else None,
        elapsed_ms=round((time.perf_counter() - started) * 1000, 2),
        batched_with=batched_with,
        load_ms=load_ms,
        results=results,
    )


async def _choose(records: ModelRecords, ref: str | None, caller: Caller) -> tuple[Model, str | None]:
    """The model ``ref`` names (an id or an alias; None: the alias "production"), and the alias used
    (kept for a moment: ``service.deps.ModelRecords``)."""
    try:
        return await records.model_for(ref, caller.owner, caller.only)
    except NotFound:
        if ref is None:
            raise invalid(["body", "model"], NO_PRODUCTION) from None
        raise


def _too_slow(limit_s: float) -> HTTPException:
    msg = f"tagging took over {limit_s} s; send fewer or shorter texts"
    return HTTPException(503, msg, headers={"Retry-After": "5"})


def _chunks(inputs: list, sizes: list[int]) -> list[tuple[list, int]]:
    """``inputs`` in order, cut into pieces of about PIECE_CHARS characters (at least one input each),
    each with its size in characters."""
    chunks: list[tuple[list, int]] = [([], 0)]
    for item, size in zip(inputs, sizes, strict=True):
        piece, filled = chunks[-1]
        if piece and filled + size > PIECE_CHARS:
            chunks.append(([], 0))
            piece, filled = chunks[-1]
        piece.append(item)
        chunks[-1] = (piece, filled + size)
    return chunks
