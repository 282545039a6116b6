"""Epoch checkpoints of a training loop, without pickle: tensors in safetensors, the rest in JSON.

A checkpoint folder holds ``tensors.safetensors`` (the model's state, the optimizer's tensors
under ``optim.<param>.<name>``, the torch CPU and CUDA RNG states) and ``state.json`` (the loop's counters,
the optimizer's param groups, the scheduler's state, the Python RNG state, a fingerprint of
the config). It is written to ``<folder>.tmp`` and then renamed, so a process killed while
writing leaves the previous checkpoint (or a complete ``.tmp`` one) behind, never half a one.

A checkpoint is used only when its fingerprint matches: a changed config starts afresh.

``after_save(callback)`` (a context manager) has ``callback(folder)`` called after each checkpoint is
complete: the worker copies the job folder to its artifact store then, so another machine can resume
there, while the training loops stay free of any storage code.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

TENSORS, STATE = "tensors.safetensors", "state.json"
_AFTER_SAVE: list[Callable[[Path], None]] = []  # callbacks of the open after_save blocks


@contextlib.contextmanager
def after_save(callback: Callable[[Path], None]) -> Iterator[None]:
    """Within the block, ``callback(folder)`` runs after every ``save_checkpoint`` (in the saving thread;
    an exception it raises propagates to the training loop)."""
    _AFTER_SAVE.append(callback)
    try:
        yield
    finally:
        _AFTER_SAVE.remove(callback)


def fingerprint(*parts: Any) -> str:
    """A short hash of JSON-able ``parts`` (config, seed, labels, data sizes)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


def save_checkpoint(
    folder: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    rng: random.Random,
    state: dict[str, Any],
) -> None:
    """Write the model, optimizer and RNG states and ``state`` (JSON-able) to ``folder``, atomically."""
    folder = Path(folder)
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    tensors = {f"model.{k}": v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    optim = optimizer.state_dict()
    optim_rest: dict[str, dict[str, Any]] = {}
    for pid, entries in optim["state"].items():
        for name, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{pid}.{name}"] = value.detach().cpu().contiguous()
            else:
                optim_rest.setdefault(str(pid), {})[name] = value
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available():
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    save_file(tensors, str(tmp / TENSORS))
    version, internal, gauss = rng.getstate()
    record = {
        **state,
        "optimizer": {"param_groups": optim["param_groups"], "state": optim_rest},
        "rng_python": [version, list(internal), gauss],
    }
    (tmp / STATE).write_text(json.dumps(record))  # written last: its presence marks a complete folder
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
    for callback in list(_AFTER_SAVE):
        callback(folder)


def load_checkpoint(
    folder: Path,
    expected_fingerprint: str,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    rng: random.Random,
) -> dict[str, Any] | None:
    """Restore model, optimizer and RNGs from ``folder`` and return its ``state``; None when there
    is no complete checkpoint with this fingerprint (then nothing is touched)."""
    folder = Path(folder)
    for candidate in (folder, folder.with_name(folder.name + ".tmp")):
        if (candidate / STATE).is_file() and (candidate / TENSORS).is_file():
            break
    else:
        return None
    record = json.loads((candidate / STATE).read_text())
    if record.get("fingerprint") != expected_fingerprint:
        return None
    tensors = load_file(str(candidate / TENSORS))
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    optim_state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, pid, name = key.split(".", 2)
            optim_state.setdefault(int(pid), {})[name] = value
    for pid, rest in record["optimizer"]["state"].items():
        optim_state.setdefault(int(pid), {}).update(rest)
    # load_state_dict moves the tensors to the parameters' device
    optimizer.load_state_dict({"state": optim_state, "param_groups": record["optimizer"]["param_groups"]})
    torch.set_rng_state(tensors["rng.torch"])
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda"])
    version, internal, gauss = record["rng_python"]
    rng.setstate((version, tuple(internal), gauss))
    return record
