"""TF Serving's Prometheus metrics, kept by the embedded server and rendered as TF Serving does.

Exported (TF Serving turns `/tensorflow/serving/x` into `:tensorflow:serving:x`):

| metric (`:tensorflow:` omitted) | kind, limits | labels |
|---|---|---|
| `serving:request_count` | counter | model_name, status |
| `serving:request_latency` (µs) | histogram 10·1.8^i, 33 | model_name, API, entrypoint |
| `serving:runtime_latency` (µs) | histogram 10·1.8^i, 33 | model_name, API, runtime |
| `serving:batching_session:queuing_latency` (µs) | histogram 100·1.2^i, 52 | thread_pool_name |
| `serving:batching_session:input_batch_size` | histogram 1·2^i, 14 | |
| `serving:batching_session:processed_batch_size` | histogram 1·2^i, 14 | |
| `serving:batching_session:padding_size` | histogram 1·2^i, 14 | execution_batch_size |
| `cc:saved_model:load_latency` (µs) | counter | model_path |
| `cc:saved_model:load_attempt_count` | counter | model_path, status |

Model load latency: TF Serving has no histogram of its own for loads; the SavedModel loader
(tensorflow/cc/saved_model/loader.cc) keeps `/tensorflow/cc/saved_model/load_latency`, a counter
labelled model_path that adds the microseconds of each successful load, next to
`load_attempt_count{model_path,status="success"}`. `observe_model_load` updates both, so the mean
load time is load_latency / load_attempt_count, as with a real server.

Format details that follow TF Serving's exporter (tensorflow_serving/util/prometheus_exporter.cc)
and TensorFlow's monitoring library rather than the Prometheus client libraries:
- Only `# TYPE` lines. Each histogram has its N finite limits, built as scale·growth^i by
  repeated multiplication (TF's ExponentialBuckets), plus a last bucket printed `le="+Inf"`.
- A sample goes to the first bucket whose limit is *greater* than it (TF's Histogram::Add uses
  upper_bound), so a value equal to a limit counts in the next bucket.
- `le` values and `_sum` print with six significant digits, as absl::StrCat(double) does (a sum of
  1234567 µs prints `1.23457e+06`); counts and counters print as integers.
- Labels print in declaration order; only `\\` and `"` are escaped in values. A metric without
  labels prints `name_sum{}`, `name_count{}`.
- Metrics print sorted by their TF name, label sets sorted by value (TF keeps std::maps). The
  metrics TF Serving registers at start-up print their `# TYPE` line before any sample; the batch
  size ones are created on first use in TF Serving, so they appear once something was batched.
"""

from __future__ import annotations

import bisect
import threading


def exponential_limits(scale: float, growth: float, count: int) -> tuple[float, ...]:
    """TF's Buckets::Exponential limits, multiplied out as TF does so they match bit for bit."""
    limits = []
    bound = scale
    for _ in range(count):
        limits.append(bound)
        bound *= growth
    return tuple(limits)


LATENCY_LIMITS_US = exponential_limits(10.0, 1.8, 33)
QUEUING_LIMITS_US = exponential_limits(100.0, 1.2, 52)
BATCH_SIZE_LIMITS = exponential_limits(1.0, 2.0, 14)


def _format_double(value: float) -> str:
    # absl::StrCat(double) prints six significant digits with %g's rules (exponent of at least two
    # digits, trailing zeros dropped).
    return "%.6g" % value


def _escape_label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _label_text(label_names: tuple[str, ...], label_values: tuple[str, ...]) -> str:
    return ",".join(
        f'{name}="{_escape_label_value(value)}"' for name, value in zip(label_names, label_values)
    )


def _prometheus_name(tf_name: str) -> str:
    return tf_name.replace("/", ":")


class _Counter:
    """Integer counter cells; callers hold the owning ServerMetrics' lock."""

    def __init__(self, tf_name: str, label_names: tuple[str, ...], created_at_start: bool = True):
        self.tf_name = tf_name
        self._name = _prometheus_name(tf_name)
        self._label_names = label_names
        self._created_at_start = created_at_start
        self._cells: dict[tuple[str, ...], int] = {}

    def increment_locked(self, label_values: tuple[str, ...], amount: int = 1) -> None:
        self._cells[label_values] = self._cells.get(label_values, 0) + amount

    def snapshot_locked(self):
        if not self._cells and not self._created_at_start:
            return None
        return list(self._cells.items())

    def render(self, snapshot, lines: list[str]) -> None:
        lines.append(f"# TYPE {self._name} counter")
        for label_values, value in sorted(snapshot):
            lines.append(f"{self._name}{{{_label_text(self._label_names, label_values)}}} {value}")


class _HistogramCell:
    __slots__ = ("counts", "sum")

    def __init__(self, num_buckets: int):
        self.counts = [0] * num_buckets
        self.sum = 0.0


class _Histogram:
    """Histogram cells over fixed limits; callers hold the owning ServerMetrics' lock."""

    def __init__(
        self,
        tf_name: str,
        label_names: tuple[str, ...],
        limits: tuple[float, ...],
        created_at_start: bool = True,
    ):
        self.tf_name = tf_name
        self._name = _prometheus_name(tf_name)
        self._label_names = label_names
        self._limits = limits
        self._le_texts = tuple(_format_double(limit) for limit in limits) + ("+Inf",)
        self._created_at_start = created_at_start
        self._cells: dict[tuple[str, ...], _HistogramCell] = {}

    def bucket_of(self, value: float) -> int:
        """Needs no lock: the limits never change."""
        return bisect.bisect_right(self._limits, value)

    def add_locked(self, label_values: tuple[str, ...], bucket: int, value: float) -> None:
        cell = self._cells.get(label_values)
        if cell is None:
            cell = self._cells[label_values] = _HistogramCell(len(self._le_texts))
        cell.counts[bucket] += 1
        cell.sum += value

    def snapshot_locked(self):
        if not self._cells and not self._created_at_start:
            return None
        return [(labels, list(cell.counts), cell.sum) for labels, cell in self._cells.items()]

    def render(self, snapshot, lines: list[str]) -> None:
        name = self._name
        lines.append(f"# TYPE {name} histogram")
        for label_values, counts, total in sorted(snapshot):
            labels = _label_text(self._label_names, label_values)
            bucket_prefix = f"{name}_bucket{{{labels},le=" if labels else f"{name}_bucket{{le="
            cumulative = 0
            for le, count in zip(self._le_texts, counts):
                cumulative += count
                lines.append(f'{bucket_prefix}"{le}"}} {cumulative}')
            lines.append(f"{name}_sum{{{labels}}} {_format_double(total)}")
            lines.append(f"{name}_count{{{labels}}} {cumulative}")


class ServerMetrics:
    """Thread-safe TF Serving metrics; render() returns Prometheus text exposition format."""

    def __init__(self):
        self._lock = threading.Lock()
        self._request_count = _Counter(
            "/tensorflow/serving/request_count", ("model_name", "status")
        )
        self._request_latency = _Histogram(
            "/tensorflow/serving/request_latency",
            ("model_name", "API", "entrypoint"),
            LATENCY_LIMITS_US,
        )
        self._runtime_latency = _Histogram(
            "/tensorflow/serving/runtime_latency",
            ("model_name", "API", "runtime"),
            LATENCY_LIMITS_US,
        )
        self._queuing_latency = _Histogram(
            "/tensorflow/serving/batching_session/queuing_latency",
            ("thread_pool_name",),
            QUEUING_LIMITS_US,
        )
        # TF Serving creates the batching histograms on first use (function-local statics).
        self._input_batch_size = _Histogram(
            "/tensorflow/serving/batching_session/input_batch_size",
            (),
            BATCH_SIZE_LIMITS,
            created_at_start=False,
        )
        self._processed_batch_size = _Histogram(
            "/tensorflow/serving/batching_session/processed_batch_size",
            (),
            BATCH_SIZE_LIMITS,
            created_at_start=False,
        )
        self._padding_size = _Histogram(
            "/tensorflow/serving/batching_session/padding_size",
            ("execution_batch_size",),
            BATCH_SIZE_LIMITS,
            created_at_start=False,
        )
        self._load_latency = _Counter("/tensorflow/cc/saved_model/load_latency", ("model_path",))
        self._load_attempt_count = _Counter(
            "/tensorflow/cc/saved_model/load_attempt_count", ("model_path", "status")
        )
        self._families = sorted(
            (
                self._request_count,
                self._request_latency,
                self._runtime_latency,
                self._queuing_latency,
                self._input_batch_size,
                self._processed_batch_size,
                self._padding_size,
                self._load_latency,
                self._load_attempt_count,
            ),
            key=lambda family: family.tf_name,
        )

    def observe_request(
        self, model_name: str, api: str, entrypoint: str, status: str, latency_us: float | None
    ) -> None:
        """Counts a finished request; its latency only when it succeeded (status "OK")."""
        timed = status == "OK" and latency_us is not None
        bucket = self._request_latency.bucket_of(latency_us) if timed else 0
        with self._lock:
            self._request_count.increment_locked((model_name, status))
            if timed:
                self._request_latency.add_locked((model_name, api, entrypoint), bucket, latency_us)

    def observe_runtime(self, model_name: str, api: str, runtime: str, latency_us: float) -> None:
        bucket = self._runtime_latency.bucket_of(latency_us)
        with self._lock:
            self._runtime_latency.add_locked((model_name, api, runtime), bucket, latency_us)

    def observe_queuing(self, thread_pool_name: str, latency_us: float) -> None:
        bucket = self._queuing_latency.bucket_of(latency_us)
        with self._lock:
            self._queuing_latency.add_locked((thread_pool_name,), bucket, latency_us)

    def observe_batch(self, input_batch_size: int, processed_batch_size: int) -> None:
        """One processed batch: its rows before and after padding to an allowed size."""
        if not 0 <= input_batch_size <= processed_batch_size:
            raise ValueError(
                f"need 0 <= input_batch_size <= processed_batch_size, got "
                f"{input_batch_size} and {processed_batch_size}"
            )
        padding = processed_batch_size - input_batch_size
        input_bucket = self._input_batch_size.bucket_of(input_batch_size)
        processed_bucket = self._processed_batch_size.bucket_of(processed_batch_size)
        padding_bucket = self._padding_size.bucket_of(padding)
        padding_labels = (str(processed_batch_size),)
        with self._lock:
            self._input_batch_size.add_locked((), input_bucket, input_batch_size)
            self._processed_batch_size.add_locked((), processed_bucket, processed_batch_size)
            self._padding_size.add_locked(padding_labels, padding_bucket, padding)

    def observe_model_load(self, model_path: str, latency_us: float) -> None:
        """One successful SavedModel load; TF counts whole microseconds."""
        with self._lock:
            self._load_latency.increment_locked((model_path,), round(latency_us))
            self._load_attempt_count.increment_locked((model_path, "success"))

    def observe_model_load_failure(self, model_path: str) -> None:
        with self._lock:
            self._load_attempt_count.increment_locked((model_path, "fail"))

    def render(self) -> str:
        # Copy under the lock, format outside it, so that scrapes barely delay requests.
        with self._lock:
            snapshots = [(family, family.snapshot_locked()) for family in self._families]
        lines: list[str] = []
        for family, snapshot in snapshots:
            if snapshot is not None:
                family.render(snapshot, lines)
        return "\n".join(lines) + "\n"
