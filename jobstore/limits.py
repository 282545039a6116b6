"""Upper bounds on a job's config that a service sets (``TAGDISTILL_MAX_*``), checked when a job is submitted.

The schema (``tagdistill.config``) already refuses what is nonsense everywhere (negative sizes, NaN and
infinite numbers, seeds outside NumPy's range); these bounds say what one deployment is willing to run, so
a single request cannot book a worker for a year or ask for a model no machine holds.
"""

from __future__ import annotations

from jobstore.records import WorkerInfo
from jobstore.settings import Settings
from tagdistill.config import JobConfig

# JobConfig field -> the Settings field that bounds it
BOUNDS = {
    "teacher.epochs": "max_epochs",
    "distill.epochs": "max_epochs",
    "teacher.min_steps": "max_steps",
    "distill.min_steps": "max_steps",
    "teacher.batch_size": "max_batch_size",
    "teacher.eval_batch_size": "max_batch_size",
    "distill.batch_size": "max_batch_size",
    "teacher.max_length": "max_window",
    "teacher.stride": "max_window",
    "student.word_dim": "max_width",
    "student.char_dim": "max_width",
    "student.char_hidden": "max_width",
    "student.hidden": "max_width",
    "student.max_vocab": "max_vocab",
}


class LimitError(ValueError):
    """A job config value above a bound of this service; ``field`` names it (``distill.epochs``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


def check_limits(cfg: JobConfig, settings: Settings, workers: list[WorkerInfo]) -> None:
    """LimitError for the first field above its bound, or for ``device: cuda`` when workers are up and
    none has a GPU (with no worker up the job waits for one, whatever it is)."""
    for field, bound in BOUNDS.items():
        section, name = field.split(".")
        value, limit = getattr(getattr(cfg, section), name), getattr(settings, bound)
        if value > limit:
            env = "TAGDISTILL_" + bound.upper()
            raise LimitError(field, f"{value} is above this service's limit of {limit} ({env})")
    if cfg.device == "cuda" and workers and not any(w.info.get("cuda") for w in workers):
        msg = f"none of the {len(workers)} workers has a GPU: use \"auto\" or \"cpu\""
        raise LimitError("device", msg)
