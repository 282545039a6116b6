"""Trained models kept loaded in the API process, least recently used dropped first."""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

from tagdistill.tagger import Tagger


class ModelCache:
    def __init__(self, size: int) -> None:
        self.size = size
        self._models: OrderedDict[Path, Tagger] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, path: Path) -> Tagger:
        """The model in ``path`` (a student or teacher folder), loaded on first use."""
        with self._lock:
            if path in self._models:
                self._models.move_to_end(path)
                return self._models[path]
        tagger = Tagger.load(path)  # outside the lock: a slow load does not hold up cached models
        with self._lock:
            self._models[path] = tagger
            self._models.move_to_end(path)
            while len(self._models) > self.size:
                self._models.popitem(last=False)
        return tagger
