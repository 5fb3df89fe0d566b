"""A bounded queue between a producer (decoding frames) and a consumer (the model): :class:`Prefetch`."""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")
_ITEM, _DONE, _ERROR = range(3)
CLOSE_TIMEOUT = 20.0  # seconds close() waits for a producer stuck in a read


class Prefetch(Generic[T]):
    """The items of ``source``, produced by a background thread at most ``size`` items ahead of the reader.

    Decoding then overlaps the work on the items while memory stays bounded by ``size``. With
    ``drop_oldest`` a full queue drops its oldest item (counted in ``dropped``) instead of making the
    producer wait: for sources that do not wait (a camera, a live stream), so the reader is never more than
    ``size`` items behind. An error of the producer is raised to the reader; ``close()`` (or leaving the
    ``with`` block) stops the producer and closes ``source``.
    """

    def __init__(self, source: Iterable[T], size: int, drop_oldest: bool = False) -> None:
        if size < 1:
            raise ValueError(f"size must be at least 1, got {size}")
        self.dropped, self._drop = 0, drop_oldest
        self._queue: queue.Queue = queue.Queue(maxsize=size)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, args=(iter(source),), daemon=True)
        self._thread.start()

    def _produce(self, items: Iterator[T]) -> None:
        try:
            for item in items:
                if not self._put((_ITEM, item), may_drop=self._drop):
                    return
            self._put((_DONE, None))
        except BaseException as err:  # handed to the reader
            self._put((_ERROR, err))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    def _put(self, entry: tuple, may_drop: bool = False) -> bool:
        """Queue ``entry``; False when the reader closed first."""
        while not self._stop.is_set():
            try:
                self._queue.put(entry, block=not may_drop, timeout=0.05)
                return True
            except queue.Full:
                if may_drop:
                    self._drop_oldest()
        return False

    def _drop_oldest(self) -> None:
        try:
            self._queue.get_nowait()
            self.dropped += 1
        except queue.Empty:  # the reader took it meanwhile
            pass

    def __iter__(self) -> Prefetch[T]:
        return self

    def __next__(self) -> T:
        kind, value = self._queue.get()
        if kind == _ITEM:
            return value
        self._queue.put((kind, value))  # every later call ends the same way
        if kind == _ERROR:
            raise value
        raise StopIteration

    def close(self) -> None:
        """Stop the producer (it finishes the item it is making) and drop what is queued."""
        self._stop.set()
        deadline = time.monotonic() + CLOSE_TIMEOUT
        while self._thread.is_alive() and time.monotonic() < deadline:  # a stuck read: left to the daemon
            with contextlib.suppress(queue.Empty):
                self._queue.get(timeout=0.05)

    def __enter__(self) -> Prefetch[T]:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
