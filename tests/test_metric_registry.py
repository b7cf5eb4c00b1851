import pytest

from tfs_bench.metric_registry import METRICS
from tfs_bench.metric_registry import Metric
from tfs_bench.metric_registry import metric


@pytest.mark.parametrize(
    "name, value, text",
    [
        ("throughput_rps", 123.456, "123.5 rps"),
        ("p99_ms", 12.3456, "12.35 ms"),
        ("late_fraction", 0.01234, "1.23%"),
        ("generator_cpu_fraction", 0.456, "45.6%"),
        ("requests", 1500, "1500"),
        ("duration_s", 15.0, "15.0 s"),
        ("p99_9_ms", None, "n/a"),
    ],
)
def test_formatting(name, value, text):
    assert metric(name).format(value) == text


def test_format_without_unit():
    assert metric("mean_ms").format(2.5, with_unit=False) == "2.50"


def test_direction():
    assert metric("throughput_rps").better(2.0, 1.0)
    assert metric("p95_ms").better(1.0, 2.0)
    assert not metric("error_rate").better(0.02, 0.01)
    with pytest.raises(ValueError, match="not a quality"):
        metric("offered_rate_rps").better(2.0, 1.0)


def test_names_carry_their_unit():
    suffixes = {"rps": "_rps", "ms": "_ms", "s": "_s", "inferences/s": "_per_s"}
    for name, m in METRICS.items():
        assert m.name == name
        if m.unit in suffixes:
            assert name.endswith(suffixes[m.unit]), name
        if m.unit == "fraction":
            assert name.endswith(("_fraction", "_rate")), name


def test_unknown_metric_and_unit():
    with pytest.raises(KeyError, match="unknown metric 'p42_ms'"):
        metric("p42_ms")
    with pytest.raises(ValueError, match="unit of x"):
        Metric("x", "furlongs", True, 1, "")


def test_the_achieved_rate_is_what_its_description_says_answered_requests_errors_in_drops_out():
    from tfs_bench.load.records import RequestRecord
    from tfs_bench.load.windows import summarize_load

    ms = 1_000_000

    def record(k, status):
        return RequestRecord("m", "m", k * ms, None if status == "DROPPED" else k * ms, k * ms + ms, 1, status, 8, 0)

    records = [record(k, "OK") for k in range(6)] + [record(6, "UNAVAILABLE"), record(7, "DROPPED"), record(8, "DROPPED")]
    load = summarize_load(records, 2_000 * ms, offered_rate_rps=4.5)
    assert load.achieved_rate_rps == 7 / 2.0  # 6 OK + 1 error, the 2 drops not
    description = metric("achieved_rate_rps").description
    assert "errors included" in description and "drops excluded" in description
