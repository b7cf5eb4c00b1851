"""The background ticker: ticks until stopped, joins, and never hides a failure."""

import threading

import pytest

from tfs_bench.ticker import Ticker
from tfs_bench.ticker import TickerError


def test_it_ticks_until_stopped_and_its_thread_ends():
    ticks = []
    third = threading.Event()

    def tick():
        ticks.append(threading.current_thread().name)
        if len(ticks) == 3:
            third.set()

    ticker = Ticker("t-ticks", 0.001, tick)
    ticker.start()
    assert third.wait(10)
    ticker.stop()
    assert not ticker.running
    assert set(ticks) == {"t-ticks"} and len(ticks) >= 3
    count = len(ticks)
    ticker.stop()  # idempotent, and no tick after stop
    assert len(ticks) == count


def test_final_tick_runs_once_more_at_stop():
    ticks = []
    ticker = Ticker("t-final", 3600, lambda: ticks.append(1), final_tick=True)
    ticker.start()
    ticker.stop()  # wakes the hour-long wait at once
    assert ticks == [1]
    plain = Ticker("t-plain", 3600, lambda: ticks.append(2))
    plain.start()
    plain.stop()
    assert ticks == [1]


def test_a_failing_tick_is_raised_by_stop():
    def tick():
        raise RuntimeError("sensor broke")

    ticker = Ticker("t-fail", 0.001, tick)
    ticker.start()
    ticker._thread.join(10)  # the failure ends the thread by itself
    with pytest.raises(TickerError, match="sensor broke") as raised:
        ticker.stop()
    assert isinstance(raised.value.__cause__, RuntimeError)


def test_a_hung_tick_is_reported_and_a_later_stop_completes():
    entered, release = threading.Event(), threading.Event()

    def tick():
        entered.set()
        release.wait(10)

    ticker = Ticker("t-hung", 0.001, tick, stop_timeout_s=0.05)
    ticker.start()
    assert entered.wait(10)
    with pytest.raises(TickerError, match="did not stop within 0.05 s"):
        ticker.stop()
    release.set()
    ticker.stop()
    assert not ticker.running


def test_it_runs_once_and_checks_its_interval():
    ticker = Ticker("t-once", 1, lambda: None)
    ticker.start()
    with pytest.raises(TickerError, match="runs once"):
        ticker.start()
    ticker.stop()
    with pytest.raises(ValueError, match="interval_s"):
        Ticker("t-bad", 0, lambda: None)
