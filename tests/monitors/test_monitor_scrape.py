"""Scraping a real HTTP endpoint on 127.0.0.1; failures give missing snapshots, never exceptions."""

import http.server
import json
import math
import socket
import threading

import pytest

from tfs_bench.errors import ConfigError
from tfs_bench.monitors.samples import MetricsSnapshot
from tfs_bench.monitors.scrape import DEFAULT_METRICS_PATH, MetricsScraper, metrics_url
from tfs_bench.prometheus import parse_prometheus_text

PAGE = """# TYPE :tensorflow:serving:request_count counter
:tensorflow:serving:request_count{model_name="m",status="OK"} 12
# TYPE :tensorflow:serving:request_latency histogram
:tensorflow:serving:request_latency_sum{model_name="m",API="predict",entrypoint="GRPC"} 1.23457e+06
:tensorflow:serving:request_latency_count{model_name="m",API="predict",entrypoint="GRPC"} 12
:tensorflow:serving:batching_session:queuing_latency_sum{thread_pool_name="p"} nan
"""
BAD_PATH = "/not-prometheus"


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = {DEFAULT_METRICS_PATH: PAGE, BAD_PATH: "<html>hello</html>\n"}.get(self.path)
        if body is None:
            self.send_error(404, "Not Found")
            return
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def server_port():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), name="test-metrics-server")
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        thread.join(10)
        server.server_close()
        assert not thread.is_alive()


def fake_clock(*ticks):
    it = iter(ticks)
    return lambda: next(it)


def test_scrape_returns_the_parsed_page_with_its_times(server_port):
    scraper = MetricsScraper(metrics_url("127.0.0.1", server_port), clock=fake_clock(1_000, 3_000))
    snapshot = scraper.scrape()

    assert not snapshot.missing and snapshot.error is None
    assert (snapshot.requested_ns, snapshot.received_ns, snapshot.t_ns) == (1_000, 3_000, 2_000)
    assert snapshot.url == f"http://127.0.0.1:{server_port}/monitoring/prometheus/metrics"
    assert dict(snapshot.samples).keys() == parse_prometheus_text(PAGE).keys()

    restored = MetricsSnapshot.from_json(json.loads(json.dumps(snapshot.to_json(), allow_nan=False)))
    nan_key = (
        ":tensorflow:serving:batching_session:queuing_latency_sum",
        frozenset({("thread_pool_name", "p")}),
    )
    assert math.isnan(restored.samples[nan_key])  # NaN != NaN: compare it apart
    assert {k: v for k, v in restored.samples.items() if k != nan_key} == {
        k: v for k, v in snapshot.samples.items() if k != nan_key
    }


def test_http_error_is_a_missing_snapshot(server_port):
    snapshot = MetricsScraper(f"http://127.0.0.1:{server_port}/nothing/here").scrape()

    assert snapshot.missing and snapshot.samples is None
    assert snapshot.error == "HTTP 404 Not Found"


def test_a_page_that_is_not_prometheus_text_is_a_missing_snapshot(server_port):
    snapshot = MetricsScraper(f"http://127.0.0.1:{server_port}{BAD_PATH}").scrape()

    assert snapshot.missing and snapshot.error.startswith("PrometheusParseError: line 1:")


def test_refused_connection_is_a_missing_snapshot():
    with socket.socket() as bound:  # bound but not listening: connections are refused
        bound.bind(("127.0.0.1", 0))
        snapshot = MetricsScraper(metrics_url("127.0.0.1", bound.getsockname()[1])).scrape()

    assert snapshot.missing and snapshot.error.startswith("cannot reach the server:")
    assert "refused" in snapshot.error.lower()


def test_a_server_that_never_answers_times_out_as_missing():
    with socket.socket() as silent:  # listening, so the connection is made, but nobody answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        snapshot = MetricsScraper(metrics_url("127.0.0.1", silent.getsockname()[1]), timeout_s=0.2).scrape()

    assert snapshot.missing and "timed out" in snapshot.error


def test_metrics_url_and_validation():
    assert metrics_url("localhost", 8501) == "http://localhost:8501/monitoring/prometheus/metrics"
    assert metrics_url("::1", 9000, "metrics") == "http://[::1]:9000/metrics"
    with pytest.raises(ConfigError, match="port of"):
        metrics_url("localhost", 0)
    with pytest.raises(ValueError, match="http or https"):
        MetricsScraper("file:///etc/passwd")
