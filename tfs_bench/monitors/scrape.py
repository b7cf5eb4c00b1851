"""Timestamped snapshots of a server's Prometheus page, taken by the driver at window boundaries.

A scrape that fails (refused, timed out, HTTP error, unparsable page) gives a snapshot marked
missing with the reason; it never raises, so a server that stops answering costs the windows
around it their breakdown, not the run.
"""

from __future__ import annotations

import http.client
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable

from tfs_bench import addresses
from tfs_bench.monitors.samples import MetricsSnapshot
from tfs_bench.prometheus import PrometheusParseError, parse_prometheus_text

DEFAULT_METRICS_PATH = "/monitoring/prometheus/metrics"
DEFAULT_TIMEOUT_S = 2.0


def metrics_url(host: str, rest_port: int, path: str = DEFAULT_METRICS_PATH) -> str:
    """TF Serving serves Prometheus text on its REST port only, at the monitoring config's path."""
    return addresses.Address(host.strip("[]"), rest_port).url(path)


class MetricsScraper:
    """Fetches `url` with a short timeout; `clock` returns nanoseconds."""

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        clock: Callable[[], int] = time.perf_counter_ns,
    ):
        scheme = urllib.parse.urlsplit(url).scheme
        if scheme not in ("http", "https"):
            raise ValueError(f"metrics URL must be http or https, got {url!r}")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        self.url = url
        self._timeout_s = timeout_s
        self._clock = clock

    def scrape(self) -> MetricsSnapshot:
        requested_ns = self._clock()
        try:
            # No proxy: the server is on the benchmark's network, and a proxy would time it too.
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
            with opener.open(self.url, timeout=self._timeout_s) as response:
                body = response.read()
            received_ns = self._clock()
            samples = parse_prometheus_text(body.decode("utf-8"))
        except urllib.error.HTTPError as e:
            return self._missing(requested_ns, f"HTTP {e.code} {e.reason}")
        except urllib.error.URLError as e:
            return self._missing(requested_ns, f"cannot reach the server: {e.reason}")
        except (OSError, http.client.HTTPException, UnicodeDecodeError, PrometheusParseError) as e:
            # timeouts, resets, malformed responses, pages that are not Prometheus text
            return self._missing(requested_ns, f"{type(e).__name__}: {e}")
        return MetricsSnapshot(self.url, requested_ns, received_ns, samples)

    def _missing(self, requested_ns: int, reason: str) -> MetricsSnapshot:
        return MetricsSnapshot(self.url, requested_ns, self._clock(), None, error=reason)
