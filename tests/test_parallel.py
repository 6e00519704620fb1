"""Threads of :func:`kompot.parallel.thread_map`: order, bounded look-ahead, context, nesting."""

import threading
import time
from contextvars import ContextVar

import numpy as np
import pytest

from kompot import parallel

_marker: ContextVar[str] = ContextVar("test_marker", default="unset")


def test_results_come_in_the_items_order_whatever_finishes_first():
    rng = np.random.default_rng(0)
    delays = rng.uniform(0, 0.01, 40)

    def slow_square(i):
        time.sleep(delays[i])
        return i * i

    assert list(parallel.thread_map(slow_square, range(40), threads=4)) == [i * i for i in range(40)]


def test_it_runs_in_several_threads_and_looks_ahead_at_most_twice_the_threads():
    started, names = [], set()

    def record(i):
        started.append(i)
        names.add(threading.current_thread().name)
        time.sleep(0.005)
        return i

    results = parallel.thread_map(record, range(30), threads=3)
    assert next(results) == 0
    time.sleep(0.05)  # let the threads run ahead as far as they may
    assert len(started) <= 2 * 3 + 1
    assert list(results) == list(range(1, 30))
    assert len(names) == 3


def test_threads_see_the_callers_context_and_do_not_nest():
    token = _marker.set("caller's")
    try:
        seen = list(parallel.thread_map(lambda _: (_marker.get(), parallel.thread_count()),
                                        range(4), threads=2))
    finally:
        _marker.reset(token)
    assert seen == [("caller's", 1)] * 4
    assert parallel.thread_count() == parallel.available_cores()  # outside: all the cores


def test_one_thread_is_a_plain_loop_in_this_thread():
    here = threading.current_thread().name
    assert list(parallel.thread_map(lambda i: threading.current_thread().name, range(3),
                                    threads=1)) == [here] * 3


def test_an_error_in_a_thread_reaches_the_caller():
    def fail_at_five(i):
        if i == 5:
            raise ValueError("item 5")
        return i

    with pytest.raises(ValueError, match="item 5"):
        list(parallel.thread_map(fail_at_five, range(10), threads=2))
