"""`--mode=mlperf`: MLPerf LoadGen drives the suite's transport as its system under test.

    python -m tfs_bench.load --mode=mlperf --mlperf_scenario=Server --rate=200 --sla_ms=50 --models=m

LoadGen (mlcommons-loadgen) decides when each query goes out: one at a time (SingleStream),
Poisson arrivals at the target rate (Server), or everything at once (Offline); it ends the test
once its minimum duration and query count are met, and judges the run itself. The suite's side
is the system under test: each query LoadGen issues is sent with the same transport as the
load workers (gRPC Predict or REST, request bodies prepared from the model's metadata), with
at most `max_outstanding` in flight, and completed to LoadGen when the reply arrives.

The same requests are recorded as in any run (records-w0.csv: `intended_ns` when LoadGen
handed the query over, or for Offline when a slot became free, as in a closed loop), cut into
the suite's windows after the warm-up (windows.jsonl, written as each closes), and judged by the
suite's own rules (tfs_bench.load.verdict) over the last pooled windows; LoadGen's minimum
duration is raised to cover the warm-up and those windows. summary.json holds both verdicts:
the suite's `result` and LoadGen's `loadgen` (its validity and every result_* figure), and
LoadGen's logs stay in `<run>/mlperf/`. The generator here is one process (LoadGen's threads
and the sending loop), its CPU time measured per window like a worker's.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from pathlib import Path

import mlperf_loadgen as lg

from tfs_bench.cpu_priority import set_generator_priority
from tfs_bench.errors import ConfigError
from tfs_bench.errors import LoadError
from tfs_bench.load import request_bodies
from tfs_bench.load import run_files
from tfs_bench.load.config import LoadConfig
from tfs_bench.load.loadgen_log import DETAIL_LOG
from tfs_bench.load.loadgen_log import LoadGenSettings
from tfs_bench.load.loadgen_log import LoadGenVerdict
from tfs_bench.load.loadgen_log import parse_detail_log
from tfs_bench.load.records import RecordCsvWriter
from tfs_bench.load.records import RequestRecord
from tfs_bench.load.request_bodies import TenantRequests
from tfs_bench.load.transport import open_transport
from tfs_bench.load.verdict import RunResult
from tfs_bench.load.verdict import summarize_run
from tfs_bench.load.windows import GeneratorUsage
from tfs_bench.load.windows import summarize_window
from tfs_bench.load.worker import process_cpu_s

LOG_DIR = "mlperf"
_MAX_REST_THREADS = 64


@dataclasses.dataclass(frozen=True)
class MlperfOutcome:
    result: RunResult  # the suite's verdict over its own windows
    loadgen: LoadGenVerdict


def loadgen_settings(config: LoadConfig, scenario: str, rate_rps: float | None, sla_ms: float | None) -> LoadGenSettings:
    """LoadGen's settings from a run's config and the rate and SLA asked (loadgen_log's table).

    The config's one tenant is open loop at `rate_rps` for the Server scenario (its offered rate
    in the windows) and closed loop otherwise (LoadGen waits for each query, or sends them all)."""
    if config.workers != 1 or config.ray_address is not None:
        raise ConfigError("--mode=mlperf runs LoadGen in this process: leave --workers at 1 and --ray_address out")
    (load,) = _one_tenant(config)
    if load.open_loop != (scenario == "Server") or (load.open_loop and load.rate_rps != rate_rps):
        raise ConfigError(f"the {scenario} scenario's tenant must be {'open loop at the target rate' if scenario == 'Server' else 'closed loop'}")
    policy = config.policy
    return LoadGenSettings(
        scenario=scenario,
        target_qps=rate_rps,
        latency_bound_ms=sla_ms,
        latency_percentile=policy.sla_percentile,
        # Long enough for the suite's warm-up and pooled windows, so both verdicts judge the same run.
        min_duration_s=max(config.criteria.min_duration_s, policy.warmup_s + policy.stability_windows * policy.window_s),
        min_query_count=config.criteria.min_requests,
        seed=config.seed,
    )


def _one_tenant(config: LoadConfig):
    if len(config.mix.tenants) != 1:
        raise ConfigError(f"--mode=mlperf measures one model; got {len(config.mix.tenants)} tenants")
    return config.mix.tenants


def run_mlperf(config: LoadConfig, settings: LoadGenSettings, observer, invocation=None,
               label: str | None = None) -> MlperfOutcome:
    """One LoadGen test in `config.output_dir`; raises ConfigError, ModelError or LoadError."""
    label = label or f"mlperf-{settings.scenario}"
    run_files.check_output_dir(config.output_dir, config.overwrite)
    prepared = request_bodies.prepare(config)
    run_dir = run_files.claim_output_dir(config.output_dir, config.overwrite,
                                         run_files.RunManifest(config, invocation or {}, label=label))
    (load,) = _one_tenant(config)
    # Before LoadGen's threads and the sending loop's start: they inherit it (as a worker's threads do).
    priority = set_generator_priority(config.generator_priority)
    observer.run_started(label, config)
    started_at = run_files.now()
    windows = run_files.WindowLog(run_dir)
    sut = _Sut(config, prepared[load.tenant], settings.scenario == "Offline", run_dir)
    try:
        log_dir = run_dir / LOG_DIR
        log_dir.mkdir()
        with sut:
            measured = sut.run(settings, log_dir, windows, observer, label)
        verdict = parse_detail_log((log_dir / DETAIL_LOG).read_text(errors="replace"), LOG_DIR)
    except BaseException as e:
        run_files.mark_ended_early(run_dir, label, started_at, e, windows.count)
        observer.run_failed(label, e)
        raise
    finally:
        windows.close()
    if not measured.windows:
        raise LoadError(f"LoadGen's test ended before the first window closed; {run_dir} keeps its records and logs")
    result = summarize_run(sut.records, measured.windows, config.policy, config.criteria)
    workers = (run_files.WorkerTotals(0, run_files.records_path(run_dir, 0).name, len(sut.records),
                                      measured.cpu_s, priority),)
    summary = run_files.RunSummary(label, started_at, run_files.now(), measured.start_ns, measured.warmup_end_ns,
                                   run_files.STOP_LOADGEN, workers, result, loadgen=verdict)
    run_files.write_summary(run_dir, summary)
    observer.run_finished(label, result)
    return MlperfOutcome(result, verdict)


@dataclasses.dataclass(frozen=True)
class _Measured:
    start_ns: int
    warmup_end_ns: int
    windows: tuple
    cpu_s: float


class _Sut:
    """LoadGen's system under test: an asyncio loop on its own thread sends each query LoadGen issues."""

    def __init__(self, config: LoadConfig, requests: TenantRequests, offline: bool, run_dir: Path):
        self._config = config
        self._requests = requests
        self._offline = offline
        self._writer = RecordCsvWriter(run_files.records_path(run_dir, 0))
        self.records: list[RequestRecord] = []  # appended on the loop's thread only
        self._pending: list[RequestRecord] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="mlperf-sut", daemon=True)
        self._thread.start()
        self._transport = self._call(self._open())
        self._slots = asyncio.Semaphore(config.max_outstanding)
        self._inflight: set[asyncio.Task] = set()

    def _call(self, coroutine, timeout_s: float | None = None):
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout_s)

    async def _open(self):
        config = self._config
        transport = open_transport(config.protocol, self._requests.target, config.request_timeout_s,
                                   min(config.max_outstanding, _MAX_REST_THREADS))
        await transport.wait_ready(config.connect_timeout_s)
        return transport

    def __enter__(self) -> "_Sut":
        return self

    def __exit__(self, *exc) -> None:
        try:
            self._call(self._close(), timeout_s=30)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()
            self._writer.close()

    async def _close(self) -> None:
        for task in list(self._inflight):
            task.cancel()
        await asyncio.gather(*self._inflight, return_exceptions=True)
        await self._transport.close()

    # -- LoadGen's callbacks (its threads)

    def issue(self, samples) -> None:
        intended_ns = time.perf_counter_ns()
        queries = [(s.id, s.index) for s in samples]
        self._loop.call_soon_threadsafe(self._start, queries, intended_ns)

    def flush(self) -> None:
        pass  # every query is sent as it comes: nothing is held back to flush

    # -- the loop

    def _start(self, queries, intended_ns: int) -> None:
        for query_id, index in queries:
            task = self._loop.create_task(self._send(query_id, index, intended_ns))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)

    async def _send(self, query_id: int, index: int, intended_ns: int) -> None:
        requests = self._requests
        async with self._slots:
            if self._offline:
                intended_ns = time.perf_counter_ns()  # as in a closed loop: when a slot became free
            reply = await self._transport.predict(requests.bodies[index % len(requests.bodies)], requests.rest_path)
            record = RequestRecord(requests.model, requests.tenant, intended_ns, max(reply.sent_ns, intended_ns),
                                   time.perf_counter_ns(), self._config.batch_size, reply.status_code,
                                   reply.response_bytes, 0)
        self.records.append(record)
        self._pending.append(record)
        lg.QuerySamplesComplete([lg.QuerySampleResponse(query_id, 0, 0)])

    async def _windows(self, start_ns: int, windows: run_files.WindowLog, observer, label: str, closed: list) -> None:
        """Closes a window every window_s after the warm-up, while the test runs (cancelled at its end)."""
        policy = self._config.policy
        offered = self._config.mix.offered_rates_rps()
        boundary_ns = start_ns + round(policy.warmup_s * 1e9)
        cpu_s = None
        while True:
            await asyncio.sleep(max(boundary_ns - time.perf_counter_ns(), 0) / 1e9)
            now_cpu_s = process_cpu_s()
            self._flush()
            if cpu_s is not None:
                start = boundary_ns - round(policy.window_s * 1e9)
                usage = (GeneratorUsage(0, max(now_cpu_s - cpu_s, 0.0)),)
                window = summarize_window(len(closed), start, boundary_ns, self.records, offered, policy, usage)
                windows.append(window)
                observer.window_closed(label, window)
                closed.append(window)
            cpu_s = now_cpu_s
            boundary_ns += round(policy.window_s * 1e9)

    def _flush(self) -> None:
        records, self._pending = self._pending, []
        if records:
            self._writer.append(records)

    def run(self, settings: LoadGenSettings, log_dir: Path, windows: run_files.WindowLog, observer,
            label: str) -> _Measured:
        sut = lg.ConstructSUT(self.issue, self.flush)
        count = len(self._requests.bodies)
        qsl = lg.ConstructQSL(count, count, lambda indices: None, lambda indices: None)
        log_settings = lg.LogSettings()
        log_settings.log_output.outdir = str(log_dir)
        log_settings.log_output.copy_summary_to_stdout = False
        log_settings.enable_trace = False
        closed: list = []
        cpu_at_start_s = process_cpu_s()
        start_ns = time.perf_counter_ns()
        clock = asyncio.run_coroutine_threadsafe(self._windows(start_ns, windows, observer, label, closed), self._loop)
        try:
            lg.StartTestWithLogSettings(sut, qsl, settings.test_settings(lg), log_settings)
        finally:
            clock.cancel()
            lg.DestroyQSL(qsl)
            lg.DestroySUT(sut)
        self._call(self._drained())
        return _Measured(start_ns, start_ns + round(self._config.policy.warmup_s * 1e9), tuple(closed),
                         process_cpu_s() - cpu_at_start_s)

    async def _drained(self) -> None:
        await asyncio.gather(*self._inflight, return_exceptions=True)
        self._flush()
