"""The bounded queue between decoding and the model: order, errors, early close, dropping when behind."""

from __future__ import annotations

import threading
import time

import pytest

from visionports.utils.prefetch import Prefetch


def test_items_in_order_and_bounded_ahead() -> None:
    made = []

    def source():
        for i in range(20):
            made.append(i)
            yield i

    with Prefetch(source(), size=3) as items:
        got = []
        for item in items:
            time.sleep(0.002)
            assert len(made) - len(got) <= 3 + 1 + 1  # queued + being made + this one
            got.append(item)
    assert got == list(range(20))
    with pytest.raises(StopIteration):
        next(items)


def test_producer_error_reaches_the_reader() -> None:
    def source():
        yield 1
        raise OSError("truncated stream")

    items = Prefetch(source(), size=2)
    assert next(items) == 1
    with pytest.raises(OSError, match="truncated stream"):
        next(items)
    with pytest.raises(OSError, match="truncated stream"):  # every later call ends the same way
        next(items)


def test_close_stops_and_closes_the_source() -> None:
    closed = threading.Event()

    def endless():
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            closed.set()

    items = Prefetch(endless(), size=2)
    assert [next(items) for _ in range(3)] == [0, 1, 2]
    items.close()
    assert closed.wait(2) and not items._thread.is_alive()


def test_drop_oldest_keeps_the_reader_close_to_the_source() -> None:
    """A source that does not wait (a camera): a slow reader gets recent items; the rest are counted."""
    produced = []

    def camera():
        for i in range(200):
            produced.append(i)
            yield i

    got = []
    with Prefetch(camera(), size=4, drop_oldest=True) as items:
        for item in items:
            assert len(produced) - 1 - item <= 4 + 1  # never more than the queue behind the newest
            got.append(item)
            time.sleep(0.01)
    assert got == sorted(got) and got[-1] == 199
    assert items.dropped == 200 - len(got) > 0


def test_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="size must be at least 1"):
        Prefetch([], size=0)
