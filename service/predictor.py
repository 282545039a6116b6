"""Trained models kept loaded in the API process (least recently used dropped first), and the dynamic
batching of student requests.

Each loaded model gets a ``Batcher``. Requests from concurrent clients for the same model wait up to
``batch_window_ms`` in its queue and are then tagged together, in one ``Tagger.predict`` call: the
student batches internally, so 32 one-sentence requests cost about as much CPU as one request of 32
sentences, far less than 32 requests run alone (each pays the per-call overhead of encoding, the
runtime and a thread hop). Every request still gets exactly its own results, in its order.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from tagdistill.tagger import Tagger

# The unit of tagging work: POST /predict tags a large request in pieces of about this many characters
# (between which it may end), and a batch holds at most this many.
PIECE_CHARS = 20_000


@dataclass
class _Pending:
    """One request's piece of work in a batcher's queue."""

    inputs: list  # texts or token lists
    chars: int  # their size in characters
    arrived: float  # event loop time
    future: asyncio.Future = field(repr=False)  # -> (its results, how many requests shared the batch)


class Batcher:
    """Gathers the pieces of work of concurrent requests for one loaded model into shared
    ``Tagger.predict`` calls.

    A piece that finds the model idle (nothing queued, gathered or being tagged) is tagged at once: a
    lone client never waits the window for company that is not coming. A piece that finds the model busy
    queues; when the running batch ends, the next one starts with the oldest waiting piece and takes
    the pieces that arrive within ``window_s`` of that piece's arrival, closing early once it holds
    ``max_inputs`` inputs or ``max_chars`` characters (a piece that would overflow it starts the next
    batch). So batches form exactly when requests come faster than the model tags them. The
    characters bound keeps one batch no longer to tag than one piece of a large request.

    Only small pieces are batched: one of more than half ``max_inputs`` inputs or a tenth of
    ``max_chars`` characters is tagged alone at once, in a thread of its own, as without batching. It
    is a batch by itself already, and in the queue it would hold up the small requests batched after
    it: with one client sending 10 texts of 19,000 characters beside 32 one-sentence clients, batching
    every piece cut the light clients' requests/s from 174 to 96 (docs/BENCHMARKS.md).

    Only the event loop touches the queue: no lock is needed. The consumer task (``_drain``) runs
    only while there is work and ends when the queue is empty, so an idle or evicted model holds no
    task. ``window_s`` 0: no batching, every piece is tagged alone as it comes.
    """

    def __init__(self, tagger: Tagger, window_s: float, max_inputs: int, max_chars: int) -> None:
        self.tagger = tagger
        self.window_s = window_s
        self.max_inputs = max_inputs
        self.max_chars = max_chars
        self.solo_inputs, self.solo_chars = max_inputs // 2, max_chars // 10  # pieces above: alone
        self._queue: deque[_Pending] = deque()
        self._arrived: asyncio.Event | None = None  # made on the event loop, on first use
        self._consumer: asyncio.Task | None = None  # _drain, while there is work (a reference keeps it)

    async def predict(self, inputs: list, chars: int) -> tuple[list[dict[str, Any]], int]:
        """``Tagger.predict(inputs)``, tagged with whatever other requests sent meanwhile; also how
        many requests (this one included) shared the call. Cancelling the caller (a time limit, a
        client gone) drops its piece if its batch has not started yet."""
        if self.window_s <= 0 or len(inputs) > self.solo_inputs or chars > self.solo_chars:
            return await anyio.to_thread.run_sync(self.tagger.predict, inputs), 1
        if self._arrived is None:
            self._arrived = asyncio.Event()
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        idle = self._consumer is None  # nothing queued, nothing being gathered or tagged
        # An idle model's piece "arrived" a window ago: its batch closes with what is already there.
        self._queue.append(_Pending(inputs, chars, loop.time() - (self.window_s if idle else 0), future))
        self._arrived.set()
        if self._consumer is None:
            self._consumer = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._queue:
                if self._queue[0].future.done():  # its caller gave up: no window is kept open for it
                    self._queue.popleft()
                    continue
                batch = await self._collect()
                # A piece whose caller gave up while it waited (its future cancelled) is not tagged.
                batch = [p for p in batch if not p.future.done()]
                if batch:
                    await self._run(batch)
        finally:
            # No await between the empty queue above and this: a piece queued from now on finds no
            # consumer and starts one.
            self._consumer = None

    async def _collect(self) -> list[_Pending]:
        """The oldest piece and those that join it within the window (see the class)."""
        loop = asyncio.get_running_loop()
        first = self._queue.popleft()
        batch, inputs, chars = [first], len(first.inputs), first.chars
        # The window counts from the oldest piece's arrival, as in model servers: pieces that queued
        # while the previous batch ran have waited enough, and go at once with what is there.
        deadline = first.arrived + self.window_s
        while inputs < self.max_inputs and chars < self.max_chars:
            if not self._queue:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                self._arrived.clear()
                try:  # a deque and an Event rather than asyncio.Queue: a timed-out get cannot lose an item
                    await asyncio.wait_for(self._arrived.wait(), remaining)
                except asyncio.TimeoutError:  # (not the builtin TimeoutError before Python 3.11)
                    break
                continue
            following = self._queue[0]
            if following.future.done():  # its caller gave up: it takes no room
                self._queue.popleft()
                continue
            if inputs + len(following.inputs) > self.max_inputs or chars + following.chars > self.max_chars:
                break  # it opens the next batch
            self._queue.popleft()
            batch.append(following)
            inputs += len(following.inputs)
            chars += following.chars
        return batch

    async def _run(self, batch: list[_Pending]) -> None:
        """Tag the batch in a worker thread (the event loop keeps serving) and hand each caller its slice."""
        joined = [item for p in batch for item in p.inputs]
        try:
            results = await anyio.to_thread.run_sync(self.tagger.predict, joined)
        except Exception as exc:
            if len(batch) == 1:
                _settle(batch[0].future, error=exc)
                return
            # One piece's failure must not be its neighbours': tag each alone, so only it fails.
            for p in batch:
                await self._run([p])
            return
        start = 0
        for p in batch:
            end = start + len(p.inputs)
            _settle(p.future, (results[start:end], len(batch)))
            start = end


def _settle(future: asyncio.Future, value: Any = None, error: Exception | None = None) -> None:
    """Give a caller its answer, unless it has stopped waiting (cancelled)."""
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)


@dataclass
class Loaded:
    """A model in the cache: the tagger, and the batcher its student requests go through."""

    tagger: Tagger
    batcher: Batcher


class ModelCache:
    def __init__(self, size: int, window_ms: float, max_inputs: int, max_chars: int = PIECE_CHARS) -> None:
        """``size`` models at most; their batchers gather for ``window_ms`` (0: no batching) up to
        ``max_inputs`` inputs and ``max_chars`` characters."""
        self.size = size
        self.window_s = window_ms / 1000
        self.max_inputs = max_inputs
        self.max_chars = max_chars
        self._models: OrderedDict[Path, Loaded] = OrderedDict()
        self._loading: dict[Path, threading.Lock] = {}  # one per folder being loaded
        self._lock = threading.Lock()

    async def fetch(self, path: Path) -> tuple[Loaded, float | None]:
        """``get`` from the event loop: a loaded model at once, without the hop to a worker thread
        that a load needs (and that costs a request about 0.1 ms, more on a busy machine)."""
        with self._lock:  # never held for long: loads happen outside it
            if (cached := self._cached(path)) is not None:
                return cached, None
        return await anyio.to_thread.run_sync(self.get, path)

    def get(self, path: Path) -> tuple[Loaded, float | None]:
        """The model in ``path`` (a student or teacher folder), loaded on first use, and the
        milliseconds its load took when this call loaded it (None when it was already loaded)."""
        with self._lock:
            if (cached := self._cached(path)) is not None:
                return cached, None
            loading = self._loading.setdefault(path, threading.Lock())
        # Outside the cache's lock, so a slow load does not hold up the loaded models; under the
        # folder's own lock, so that the first requests of a burst wait for one load rather than each
        # loading the model again (and each making its own batcher).
        with loading:
            with self._lock:
                if (cached := self._cached(path)) is not None:
                    return cached, None
            started = time.perf_counter()
            try:
                tagger = Tagger.load(path)
            except BaseException:
                with self._lock:
                    self._loading.pop(path, None)
                raise
            load_ms = round((time.perf_counter() - started) * 1000, 1)
            entry = Loaded(tagger, Batcher(tagger, self.window_s, self.max_inputs, self.max_chars))
            with self._lock:  # cached before the folder's lock goes: a later request finds the entry
                self._models[path] = entry
                self._models.move_to_end(path)
                self._loading.pop(path, None)
                while len(self._models) > self.size:
                    # an evicted model's batcher finishes what it has queued, then its task ends
                    self._models.popitem(last=False)
        return entry, load_ms

    def _cached(self, path: Path) -> Loaded | None:
        entry = self._models.get(path)
        if entry is not None:
            self._models.move_to_end(path)
        return entry
