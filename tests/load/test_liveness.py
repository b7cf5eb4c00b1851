"""ServerWatch: a server counts as gone only after a full deadline of nothing but UNAVAILABLE."""

import pytest

from tfs_bench.load.liveness import ServerWatch
from tfs_bench.load.records import RequestRecord

S = 1_000_000_000


def done_at(seconds: float, status: str = "OK") -> RequestRecord:
    done_ns = round(seconds * S)
    if status == "DROPPED":
        return RequestRecord("m", "m", done_ns, None, done_ns, 1, status, 0, 0)
    return RequestRecord("m", "m", done_ns - 1000, done_ns - 1000, done_ns, 1, status, 8, 0)


def test_a_server_that_answers_is_never_gone():
    watch = ServerWatch(patience_s=2)
    watch.observe([done_at(t / 10) for t in range(100)])
    assert watch.gone(now_ns=100 * S) is None and watch.failing_since_ns is None


def test_gone_exactly_one_patience_after_the_first_unavailable_and_not_before():
    watch = ServerWatch(patience_s=2)
    watch.observe([done_at(1.0), done_at(3.0, "UNAVAILABLE"), done_at(3.5, "UNAVAILABLE"), done_at(4.9, "UNAVAILABLE")])
    assert watch.failing_since_ns == 3 * S
    assert watch.gone(now_ns=5 * S - 1) is None
    assert watch.gone(now_ns=5 * S) == (
        "the server stopped answering: all 3 requests done in the last 2.0 s ended UNAVAILABLE "
        "(connection refused or lost), none got an answer"
    )


@pytest.mark.parametrize("status", ["OK", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED"])
def test_any_other_answer_after_the_failures_starts_the_wait_again(status):
    # A hung server (DEADLINE_EXCEEDED) or one refusing load is still there: its windows are judged.
    watch = ServerWatch(patience_s=2)
    watch.observe([done_at(1.0, "UNAVAILABLE"), done_at(2.0, status), done_at(2.5, "UNAVAILABLE")])
    assert watch.gone(now_ns=round(4.4 * S)) is None
    assert watch.gone(now_ns=round(4.5 * S)).startswith("the server stopped answering: all 1 requests")


def test_records_arrive_out_of_order_across_workers():
    # Worker 1's answer at 2.0 s is read after worker 0's failures from 1.0 and 3.0 s.
    watch = ServerWatch(patience_s=2)
    watch.observe([done_at(1.0, "UNAVAILABLE"), done_at(3.0, "UNAVAILABLE")])
    watch.observe([done_at(2.0)])
    # The answer ends the streak; the failure at 3.0 s, read before it, is forgotten, so the wait
    # starts again at the next failure: the verdict comes later, never sooner.
    assert watch.gone(now_ns=round(4.9 * S)) is None
    watch.observe([done_at(3.5, "UNAVAILABLE")])
    assert watch.gone(now_ns=round(5.4 * S)) is None
    assert watch.gone(now_ns=round(5.5 * S)) is not None


def test_an_answer_older_than_the_failures_does_not_reset_them():
    watch = ServerWatch(patience_s=2)
    watch.observe([done_at(3.0, "UNAVAILABLE")])
    watch.observe([done_at(2.0)])  # done before the failures began: late news, not an answer
    assert watch.gone(now_ns=5 * S) is not None


def test_a_failure_older_than_the_last_answer_is_ignored():
    watch = ServerWatch(patience_s=2)
    watch.observe([done_at(5.0)])
    watch.observe([done_at(1.0, "UNAVAILABLE")])
    assert watch.gone(now_ns=100 * S) is None


def test_dropped_requests_say_nothing_about_the_server():
    watch = ServerWatch(patience_s=2)
    watch.observe([done_at(1.0, "UNAVAILABLE"), done_at(2.0, "DROPPED")])
    assert watch.gone(now_ns=3 * S) is not None


@pytest.mark.parametrize("patience_s", [0, -1.0])
def test_patience_must_be_positive(patience_s):
    with pytest.raises(ValueError, match=f"patience_s must be > 0, got {patience_s}"):
        ServerWatch(patience_s)
