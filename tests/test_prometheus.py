import math

import pytest

from tfs_bench.prometheus import PrometheusParseError, parse_prometheus_text, sample_key


def test_parses_counters_histograms_and_empty_label_sets():
    text = (
        "# TYPE :a:count counter\n"
        ':a:count{model_name="m",status="OK"} 3\n'
        "# TYPE :a:size histogram\n"
        ':a:size_bucket{le="1"} 0\n'
        ':a:size_bucket{le="+Inf"} 2\n'
        ":a:size_sum{} 1.23457e+06\n"
        ":a:size_count{} 2\n"
    )

    assert parse_prometheus_text(text) == {
        sample_key(":a:count", {"model_name": "m", "status": "OK"}): 3.0,
        sample_key(":a:size_bucket", {"le": "1"}): 0.0,
        sample_key(":a:size_bucket", {"le": "+Inf"}): 2.0,
        sample_key(":a:size_sum"): 1234570.0,
        sample_key(":a:size_count"): 2.0,
    }


def test_unescapes_label_values_and_ignores_timestamps_and_spacing():
    text = 'up{path="C:\\\\m\\"x\\"\\n", job = "a" ,} 1 1700000000000\n\nplain 2.5\n'

    assert parse_prometheus_text(text) == {
        sample_key("up", {"path": 'C:\\m"x"\n', "job": "a"}): 1.0,
        sample_key("plain"): 2.5,
    }


def test_reads_infinities_and_nan():
    samples = parse_prometheus_text("a +Inf\nb -Inf\nc NaN\nd nan\n")

    assert samples[sample_key("a")] == math.inf
    assert samples[sample_key("b")] == -math.inf
    assert math.isnan(samples[sample_key("c")]) and math.isnan(samples[sample_key("d")])


@pytest.mark.parametrize(
    "line",
    [
        "9bad 1",
        'm{le="1" 1',
        "m{le=1} 1",
        'm{a="1",a="2"} 1',
        "m one",
        "m",
        "m 1 2 3",
    ],
)
def test_malformed_line_names_its_line_number(line):
    with pytest.raises(PrometheusParseError, match=r"^line 2: "):
        parse_prometheus_text("ok 1\n" + line + "\n")


def test_duplicate_sample_is_an_error():
    with pytest.raises(PrometheusParseError, match="line 2: duplicate sample"):
        parse_prometheus_text('m{a="1",b="2"} 1\nm{b="2",a="1"} 1\n')
