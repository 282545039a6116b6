"""Whether a job's base model can be loaded, checked when the job is submitted.

A Hugging Face name that cannot be resolved would otherwise be accepted with a 202 and fail minutes
later on a worker. The check asks transformers for the model's config, as the worker will:
a folder is read from disk, a name from the local cache or the Hub (``HF_HUB_OFFLINE=1``: the cache
only). It lives in the API, not in ``DataDir`` (jobstore/layout.py), which the workers share and
which must stay free of network calls.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from service.errors import invalid

# How long a submission waits for the answer. The Hub client retries for about 30 s before it
# gives up on an unreachable Hub; the check goes on in the background and a later submission of
# the same name passes once it succeeded.
CHECK_TIMEOUT_S = 5.0

_loadable: set[str] = set()  # sources known to load in this process; a failure is not kept (it may be fixed)
_pending: dict[str, Future] = {}  # checks running, one per source however many requests wait
_lock = threading.Lock()
_checks = ThreadPoolExecutor(max_workers=2, thread_name_prefix="base-model-check")


def check_base_model(
    given: str, source: str, redact: Callable[[str], str], field: str = "teacher.base_model"
) -> None:
    """422 naming ``field`` (``teacher.base_model``, or an ensemble member's) unless ``source`` (``given``,
    resolved by ``DataDir.resolve_paths``: a folder or a Hugging Face name) has a config that transformers
    can load. ``redact`` takes server paths out of the reason."""
    if source in _loadable:
        return
    from transformers import AutoConfig  # imported here, outside the time limit: it takes seconds

    with _lock:
        future, new = _pending.get(source), False
        if future is None:
            future, new = _checks.submit(AutoConfig.from_pretrained, source), True
            _pending[source] = future
    if new:  # outside the lock: a check already done runs the callback at once, here
        future.add_done_callback(lambda done: _settle(source, done))
    try:
        future.result(timeout=CHECK_TIMEOUT_S)
    except FutureTimeout:
        reason = f"no answer from the Hugging Face Hub within {CHECK_TIMEOUT_S:g} s"
    except Exception as exc:  # OSError (not found, no connection), ValueError (an unknown model type)
        reason = redact(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
    else:
        return
    msg = f"{given!r} cannot be loaded as a base model: {reason}"
    raise invalid(["body", *field.split(".")], msg, "base_model_unloadable")


def _settle(source: str, done: Future) -> None:
    with _lock:
        _pending.pop(source, None)
        if done.exception() is None:
            _loadable.add(source)
