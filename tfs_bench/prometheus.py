"""Parses Prometheus text exposition pages, as scraped from TF Serving or the embedded server.

The load generator scrapes at window boundaries and subtracts two parses to get per-window
deltas, so a page becomes a flat mapping from (metric name, label set) to value. A histogram's
`le` bound is an ordinary label here: `name_bucket{..., le="18"}` is one sample.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from tfs_bench.errors import TfsBenchError

SampleKey = tuple[str, frozenset[tuple[str, str]]]

_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\\n]|\\.)*)"\s*')
_ESCAPE = re.compile(r"\\(.)")
_UNESCAPED = {"n": "\n", "\\": "\\", '"': '"'}


class PrometheusParseError(TfsBenchError, ValueError):
    """A scraped page is not valid Prometheus text format; the message names the line."""


def sample_key(name: str, labels: Mapping[str, str] | None = None) -> SampleKey:
    """The key `parse_prometheus_text` uses for one sample."""
    return name, frozenset((labels or {}).items())


def parse_prometheus_text(text: str) -> dict[SampleKey, float]:
    """Maps each sample of a text-format page to its value; `# HELP`/`# TYPE` lines are skipped.

    Raises PrometheusParseError on a malformed line or a sample that appears twice.
    """
    samples: dict[SampleKey, float] = {}
    for line_number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            key, value = _parse_sample(line)
        except ValueError as e:
            raise PrometheusParseError(f"line {line_number}: {e}: {line!r}") from None
        if key in samples:
            raise PrometheusParseError(f"line {line_number}: duplicate sample: {line!r}")
        samples[key] = value
    return samples


def _parse_sample(line: str) -> tuple[SampleKey, float]:
    match = _METRIC_NAME.match(line)
    if match is None:
        raise ValueError("no metric name")
    name = match.group()
    position = match.end()
    labels: dict[str, str] = {}
    if line.startswith("{", position):
        labels, position = _parse_labels(line, position + 1)
    fields = line[position:].split()
    if len(fields) not in (1, 2):  # value, optionally followed by a timestamp
        raise ValueError("expected a value and an optional timestamp")
    return (name, frozenset(labels.items())), _parse_value(fields[0])


def _parse_labels(line: str, position: int) -> tuple[dict[str, str], int]:
    labels: dict[str, str] = {}
    while True:
        if line.startswith("}", position):
            return labels, position + 1
        match = _LABEL.match(line, position)
        if match is None:
            raise ValueError("malformed label set")
        label_name, raw_value = match.groups()
        if label_name in labels:
            raise ValueError(f"label {label_name} given twice")
        labels[label_name] = _ESCAPE.sub(lambda m: _UNESCAPED.get(m[1], "\\" + m[1]), raw_value)
        position = match.end()
        if line.startswith(",", position):
            position += 1
        elif not line.startswith("}", position):
            raise ValueError("malformed label set")


def _parse_value(text: str) -> float:
    try:
        # Accepts Prometheus' +Inf/-Inf/NaN and also "inf"/"nan", which TF Serving prints for a
        # non-finite histogram sum.
        return float(text)
    except ValueError:
        raise ValueError(f"bad sample value {text!r}") from None
