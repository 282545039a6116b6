"""Tagging with a trained student (or, slower, its teacher)."""

from __future__ import annotations

import time

from fastapi import APIRouter

from jobstore.store import NotFound
from service.auth import CallerDep
from service.bodies import PredictRequest, PredictResponse
from service.deps import DataDirDep, ModelsDep, SettingsDep, StoreDep
from service.errors import invalid

router = APIRouter(tags=["predict"])

TEACHER_NOTE = "tagged by the transformer teacher, which is much slower than the student; for comparison"


@router.post("/predict", response_model=PredictResponse)
def predict(
    req: PredictRequest, store: StoreDep, data: DataDirDep, models: ModelsDep, settings: SettingsDep,
    caller: CallerDep,
) -> PredictResponse:
    """Tokens, IOB2 tags and entities with character offsets, one result per input."""
    field = "texts" if req.texts is not None else "tokens"
    inputs = req.texts if req.texts is not None else req.tokens
    if len(inputs) > settings.max_predict_inputs:
        msg = f"{len(inputs)} inputs; at most {settings.max_predict_inputs} per request"
        raise invalid(["body", field], msg)
    for i, item in enumerate(inputs):
        size = len(item) if isinstance(item, str) else sum(len(t) + 1 for t in item)
        if size > settings.max_predict_chars:
            raise invalid(["body", field, i], f"{size} characters; at most {settings.max_predict_chars}")
    model = store.get_model(req.model_id, caller.only)
    path = model.teacher_path if req.use_teacher else model.student_path
    folder = data.resolve(path)
    if not folder.is_dir():
        raise NotFound(f"the files of model {model.id} are not in this data directory ({path})")
    started = time.perf_counter()
    tagger = models.get(folder)
    results = tagger.predict(inputs)
    return PredictResponse(
        model_id=model.id,
        model="teacher" if req.use_teacher else "student",
        note=TEACHER_NOTE if req.use_teacher else None,
        elapsed_ms=round((time.perf_counter() - started) * 1000, 2),
        results=results,
    )
