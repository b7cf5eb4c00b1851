"""The load generator's library API against real embedded-server subprocesses.

One module-scoped server serves half_plus_two under two names (gRPC and REST); a second one,
batching with a long timeout so that requests wait, is started for the outstanding-cap test.
"""

import dataclasses
import itertools
import json
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2

from load_support import MODEL
from load_support import QUICK_CRITERIA
from load_support import QUICK_POLICY
from load_support import SECOND_NAME
from load_support import max_in_flight
from load_support import measured_dirs
from load_support import run_records
from load_support import run_summary
from server_support import log_tail
from server_support import start_embedded
from server_support import write_config
from tfs_bench.export import known_answer
from tfs_bench.launch.ports import free_port
from tfs_bench.load import request_bodies
from tfs_bench.errors import ConfigError
from tfs_bench.errors import LoadError
from tfs_bench.errors import ModelError
from tfs_bench.load.config import LoadConfig
from tfs_bench.load.run_files import read_manifest
from tfs_bench.load.run_files import read_summary
from tfs_bench.load.run_files import read_windows
from tfs_bench.load.driver import LoadObserver
from tfs_bench.load.driver import find_peak
from tfs_bench.load.driver import perseus_ramp
from tfs_bench.load.driver import run_load
from tfs_bench.load.driver import sweep_concurrency
from tfs_bench.load.driver import sweep_rates
from tfs_bench.load.request_bodies import InputSpec
from tfs_bench.load.schedule import ArrivalSchedule
from tfs_bench.load.schedule import TenantLoad
from tfs_bench.load.schedule import TrafficMix
from tfs_bench.load.search import SearchError
from tfs_bench.load.transport import PREDICT_METHOD
from tfs_bench.load.windows import WindowPolicy
from tfs_bench.load.windows import records_between


@pytest.fixture
def server(two_name_server):
    """The load tests' shared server (tests/conftest.py)."""
    return two_name_server


# Searches whose path depends on probes passing allow late sends (still measured and reported).
LENIENT = dataclasses.replace(QUICK_CRITERIA, max_late_fraction=0.5)


@pytest.fixture(scope="module")
def slow_server(known_answer_dir, tmp_path_factory):
    """Batches wait 200 ms to fill, so every request takes about that long."""
    tmp = tmp_path_factory.mktemp("slow_server")
    batching = write_config(
        tmp / "batching.config",
        "max_batch_size { value: 64 } batch_timeout_micros { value: 200000 } num_batch_threads { value: 1 }",
    )
    server = start_embedded(
        [
            f"--model_name={MODEL}",
            f"--model_base_path={known_answer_dir / MODEL}",
            "--enable_batching",
            f"--batching_parameters_file={batching}",
        ],
        tmp,
        [MODEL],
        rest=False,
    )
    yield server
    assert server.stop() == 0, log_tail(server)


def grpc_target(server) -> str:
    return server.grpc_target


def quick_config(target: str, out: Path, mix: TrafficMix, **overrides) -> LoadConfig:
    fields = dict(mix=mix, targets=(target,), output_dir=str(out), policy=QUICK_POLICY, criteria=QUICK_CRITERIA)
    return LoadConfig(**{**fields, **overrides})


def open_mix(rate_rps: float, model: str = MODEL, seed: int = 0) -> TrafficMix:
    return TrafficMix((TenantLoad(model, model, rate_rps=rate_rps, arrival="constant", seed=seed),))


def closed_mix(concurrency: int, model: str = MODEL) -> TrafficMix:
    return TrafficMix((TenantLoad(model, model, concurrency=concurrency),))


def assert_windows_recount(run_dir: Path, records) -> None:
    """Every window's counts equal a recount of the raw records that completed in it."""
    windows = read_windows(run_dir)
    for k, window in enumerate(windows[1:], start=1):
        assert window.start_ns == windows[k - 1].end_ns  # contiguous: every record is counted once
    for window in windows:
        members = records_between(records, window.start_ns, window.end_ns)
        for tenant, summary in window.tenants.items():
            own = [r for r in members if r.tenant == tenant]
            assert summary.requests == sum(r.ok for r in own)
            assert summary.dropped == sum(r.dropped for r in own)
            threshold_ns = round(summary.late_threshold_ms * 1e6)  # the tenant's timing bound
            assert summary.late == sum(r.late(threshold_ns) for r in own)
            assert summary.errors == sum(not r.ok and not r.dropped for r in own)


# ----------------------------------------------------------------------------- metadata and errors


@pytest.mark.parametrize("protocol", ["grpc", "rest"])
def test_request_inputs_come_from_the_servers_metadata(server, protocol):
    target = server.grpc_target if protocol == "grpc" else server.rest_address
    signatures = request_bodies.fetch_signatures(protocol, target, MODEL, 10)

    assert signatures["serving_default"] == (InputSpec("x", "DT_FLOAT", (-1, 3)),)
    assert signatures["times_two"] == (InputSpec("x", "DT_FLOAT", (-1, 3)),)


@pytest.mark.parametrize("protocol", ["grpc", "rest"])
def test_an_unknown_model_is_named_with_the_servers_not_found(server, tmp_path, protocol):
    target = server.grpc_target if protocol == "grpc" else server.rest_address
    config = quick_config(target, tmp_path / "run", closed_mix(1, "no_such_model"), protocol=protocol)
    with pytest.raises(ModelError) as info:
        run_load(config)
    message = str(info.value)
    assert "'no_such_model'" in message and "NOT_FOUND" in message
    assert "Servable not found for request: Latest(no_such_model)" in message
    assert not (tmp_path / "run").exists()  # nothing claimed before the run could start


def test_an_unknown_signature_lists_the_models_signatures(server, tmp_path):
    config = quick_config(grpc_target(server), tmp_path / "run", closed_mix(1), signature_name="nope")
    with pytest.raises(ModelError, match="no signature 'nope'; it has: serving_default, times_two"):
        request_bodies.prepare(config)


def test_an_unreachable_target_fails_fast_and_says_so(tmp_path):
    target = f"127.0.0.1:{free_port()}"  # nothing listens there
    config = quick_config(target, tmp_path / "run", closed_mix(1), connect_timeout_s=3)
    started = time.monotonic()
    with pytest.raises(LoadError, match=f"cannot reach target {target}"):
        run_load(config)
    assert time.monotonic() - started < 3


# ----------------------------------------------------------------------------- closed loop


@pytest.mark.slow
def test_closed_loop_records_every_request_exactly_and_the_answers_are_right(server, tmp_path):
    config = quick_config(grpc_target(server), tmp_path / "run", closed_mix(2))
    result = run_load(config)

    run_dir = Path(config.output_dir)
    records = run_records(run_dir)
    summary = run_summary(run_dir)
    assert len(records) == summary["workers"][0]["rows"] > 0
    assert read_summary(run_dir).result == result and read_manifest(run_dir).config == config
    assert {r.status_code for r in records} == {"OK"}
    assert max_in_flight(records) == 2
    # Each slot's next request is intended when its previous one completed.
    done_times = {r.done_ns for r in records}
    assert sum(r.intended_ns not in done_times for r in records) == 2
    assert_windows_recount(run_dir, records)
    pooled = [r for r in records if result.windows[result.pooled_windows[0]].start_ns <= r.done_ns < result.windows[-1].end_ns]
    assert result.aggregate.requests == len(pooled)
    assert result.aggregate.offered_rate_rps is None

    # A sample: the very bytes the workers sent, answered by the server as y = 0.5x + 3.
    body = request_bodies.prepare(config)[MODEL].bodies[0]
    with grpc.insecure_channel(server.grpc_target) as channel:
        reply = channel.unary_unary(PREDICT_METHOD)(body, timeout=10)
    x = tf.make_ndarray(predict_pb2.PredictRequest.FromString(body).inputs["x"])
    y = tf.make_ndarray(predict_pb2.PredictResponse.FromString(reply).outputs["y"])
    np.testing.assert_allclose(y, known_answer.expected_output(x, version=2), rtol=1e-6)
    assert {r.response_bytes for r in records} == {len(reply)}


@pytest.mark.slow
def test_a_concurrency_sweep_runs_each_level_in_its_own_directory(server, tmp_path):
    policy = dataclasses.replace(QUICK_POLICY, max_windows=3)
    config = quick_config(grpc_target(server), tmp_path / "sweep", closed_mix(1), policy=policy)
    results = sweep_concurrency(config, (1, 3))

    summary = run_summary(tmp_path / "sweep")
    assert summary["kind"] == "sweep" and measured_dirs(tmp_path / "sweep") == ["concurrency-1", "concurrency-3"]
    assert [run.result for run in read_summary(tmp_path / "sweep").measurements] == list(results)
    for level, result in zip((1, 3), results):
        records = run_records(tmp_path / "sweep" / f"concurrency-{level}")
        assert max_in_flight(records) == level
        assert run_summary(tmp_path / "sweep" / f"concurrency-{level}")["result"] == result.to_json()


@pytest.mark.slow
def test_a_rate_sweep_runs_each_offered_rate_in_its_own_directory(server, tmp_path):
    config = quick_config(grpc_target(server), tmp_path / "rates", open_mix(1.0))
    results = sweep_rates(config, (40.0, 80.0), tenant=MODEL)

    summary = read_summary(tmp_path / "rates")
    assert summary.kind == "rate_sweep" and measured_dirs(tmp_path / "rates") == ["rate-40rps", "rate-80rps"]
    assert [(run.rate_rps, run.result) for run in summary.measurements] == [(40.0, results[0]), (80.0, results[1])]
    assert [r.tenants[MODEL].pooled.offered_rate_rps for r in results] == pytest.approx([40.0, 80.0])
    assert all(r.verdict.valid for r in results), [r.verdict for r in results]


def test_a_rate_sweep_of_a_closed_loop_mix_is_refused_before_any_file_is_written(server, tmp_path):
    config = quick_config(grpc_target(server), tmp_path / "rates", closed_mix(1))
    with pytest.raises(ConfigError):
        sweep_rates(config, (40.0,))
    assert not (tmp_path / "rates").exists()


# ----------------------------------------------------------------------------- open loop


class FilesAtEachWindow(LoadObserver):
    """Checks, as each window closes, that its records and its summary are already on disk."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.checked = 0

    def window_closed(self, label, window):
        on_disk = [r for r in run_records(self.run_dir) if window.start_ns <= r.done_ns < window.end_ns]
        assert len(on_disk) == window.aggregate.requests + window.aggregate.errors + window.aggregate.dropped
        assert len(read_windows(self.run_dir)) == window.index + 1
        self.checked += 1


@pytest.mark.slow
def test_open_loop_sends_on_the_seeded_schedule_at_the_offered_rate(server, tmp_path):
    config = quick_config(grpc_target(server), tmp_path / "run", open_mix(100.0, seed=5))
    files = FilesAtEachWindow(tmp_path / "run")
    result = run_load(config, files)
    assert files.checked == len(result.windows)

    run_dir = Path(config.output_dir)
    records = run_records(run_dir)
    start_ns = run_summary(run_dir)["start_ns"]
    offsets = sorted(r.intended_ns - start_ns for r in records)
    assert offsets == list(itertools.islice(ArrivalSchedule(100.0, "constant", 5).offsets_ns(), len(offsets)))
    assert all(r.sent_ns >= r.intended_ns for r in records)

    pooled = result.aggregate
    assert pooled.offered_rate_rps == pytest.approx(100.0)
    assert pooled.achieved_rate_rps == pytest.approx(100.0, rel=0.05)
    assert pooled.dropped == 0
    # How many sends were late depends on the box; that the pooled count is the records' own does not.
    first, last = result.windows[result.pooled_windows[0]], result.windows[result.pooled_windows[-1]]
    sent = [r for r in records if first.start_ns <= r.done_ns < last.end_ns and not r.dropped]
    threshold_ns = round(pooled.late_threshold_ms * 1e6)  # the pooled timing bound
    late = sum(r.late(threshold_ns) for r in sent)
    assert (pooled.sent, pooled.late) == (len(sent), late)
    assert pooled.late_fraction == late / len(sent)
    assert_windows_recount(run_dir, records)
    windows = [json.loads(line) for line in (run_dir / "windows.jsonl").read_text().splitlines()]
    assert all("late_fraction" in w["aggregate"] and w["generator"][0]["cpu_s"] > 0 for w in windows)


@pytest.mark.slow
def test_two_workers_share_the_schedule_and_their_records_combine_exactly(server, tmp_path):
    config = quick_config(grpc_target(server), tmp_path / "run", open_mix(120.0, seed=3), workers=2)
    result = run_load(config)

    run_dir = Path(config.output_dir)
    records = run_records(run_dir)
    summary = run_summary(run_dir)
    assert [w["rows"] for w in summary["workers"]] == [
        sum(r.worker == w for r in records) for w in (0, 1)
    ]
    start_ns = summary["start_ns"]
    offsets = [r.intended_ns - start_ns for r in records]
    assert len(set(offsets)) == len(offsets)  # no arrival sent twice
    schedule = ArrivalSchedule(120.0, "constant", 3)
    for worker in (0, 1):
        own = sorted(r.intended_ns - start_ns for r in records if r.worker == worker)
        assert own and own == list(itertools.islice(schedule.worker_offsets_ns(worker, 2), len(own)))
    assert all(len(w.generator) == 2 for w in result.windows)
    assert_windows_recount(run_dir, records)
    assert result.aggregate.achieved_rate_rps == pytest.approx(120.0, rel=0.05)


@pytest.mark.slow
def test_arrivals_beyond_the_outstanding_cap_are_dropped_not_delayed(slow_server, tmp_path):
    policy = WindowPolicy(window_s=0.5, window_min_requests=0, warmup_s=0.3, max_windows=3)
    config = quick_config(grpc_target(slow_server), tmp_path / "run", open_mix(50.0), max_outstanding=2, policy=policy)
    result = run_load(config)

    records = run_records(tmp_path / "run")
    dropped = [r for r in records if r.dropped]
    sent = [r for r in records if not r.dropped]
    assert max_in_flight(records) <= 2
    assert dropped and all(r.sent_ns is None and r.response_bytes == 0 for r in dropped)
    assert all(r.done_ns - r.intended_ns < 50_000_000 for r in dropped)  # dropped on arrival, not after a wait
    assert min(r.service_time_ns for r in sent if r.ok) > 100_000_000  # the server really was slow
    pooled = result.aggregate
    assert pooled.dropped > 0 and pooled.dropped_fraction > 0.5
    assert "dropped" in [r.code for r in result.verdict.reasons]
    assert_windows_recount(tmp_path / "run", records)


# ----------------------------------------------------------------------------- tenants and protocols


@pytest.mark.slow
def test_tenants_start_together_run_together_and_are_summarised_apart(server, tmp_path):
    mix = TrafficMix(
        (
            TenantLoad("open", MODEL, rate_rps=40.0, arrival="constant"),
            TenantLoad("closed", SECOND_NAME, concurrency=1),
        )
    )
    config = quick_config(grpc_target(server), tmp_path / "run", mix)
    result = run_load(config)

    records = run_records(tmp_path / "run")
    assert {(r.tenant, r.model) for r in records} == {("open", MODEL), ("closed", SECOND_NAME)}
    assert set(result.tenants) == {"open", "closed"}
    assert result.tenants["open"].pooled.offered_rate_rps == pytest.approx(40.0)
    assert result.tenants["open"].pooled.achieved_rate_rps == pytest.approx(40.0, rel=0.1)
    assert result.tenants["closed"].pooled.offered_rate_rps is None
    assert max_in_flight(records, "closed") == 1
    assert result.aggregate.requests == sum(t.pooled.requests for t in result.tenants.values())
    assert all(set(w.tenants) == {"open", "closed"} and w.tenants["open"].requests for w in result.windows)
    start_ns = run_summary(tmp_path / "run")["start_ns"]
    firsts = [min(r.intended_ns for r in records if r.tenant == t) - start_ns for t in ("open", "closed")]
    assert max(firsts) < 20_000_000  # both began on the shared start time
    assert_windows_recount(tmp_path / "run", records)


@pytest.mark.slow
def test_rest_protocol_measures_the_same_way(server, tmp_path):
    config = quick_config(server.rest_address, tmp_path / "run", closed_mix(4, SECOND_NAME), protocol="rest")
    result = run_load(config)

    records = run_records(tmp_path / "run")
    assert records and {r.status_code for r in records} == {"OK"}
    assert all(r.response_bytes > 0 and r.model == SECOND_NAME for r in records)
    assert max_in_flight(records) <= 4
    assert result.aggregate.requests > 0
    assert_windows_recount(tmp_path / "run", records)


# ----------------------------------------------------------------------------- searches


@pytest.mark.slow
def test_peak_search_probes_doubling_rates_up_to_the_cap(server, tmp_path):
    config = quick_config(grpc_target(server), tmp_path / "peak", open_mix(1.0), criteria=LENIENT)
    peak = find_peak(config, start_rps=40.0, sla_ms=1000.0, max_rate_rps=80.0)

    assert [p.rate_rps for p in peak.probes] == [40.0, 80.0]
    assert (peak.peak_rps, peak.bracketed) == (80.0, False), [p.failures for p in peak.probes]
    summary = run_summary(tmp_path / "peak")
    assert summary["kind"] == "peak" and summary["peak"]["peak_rps"] == 80.0
    assert read_summary(tmp_path / "peak").peak == peak
    assert measured_dirs(tmp_path / "peak") == ["probe-00-40rps", "probe-01-80rps"]
    for run in summary["runs"]:
        probe_dir = tmp_path / "peak" / run["dir"]
        assert run_summary(probe_dir)["result"]["aggregate"]["offered_rate_rps"] == pytest.approx(run["rate_rps"])


@pytest.mark.slow
def test_a_search_whose_first_probe_fails_says_why_and_keeps_the_probe(server, tmp_path):
    config = quick_config(grpc_target(server), tmp_path / "peak", open_mix(1.0), criteria=LENIENT)
    with pytest.raises(SearchError, match="first probe at 20 requests/s failed .*SLA percentile") as info:
        find_peak(config, start_rps=20.0, sla_ms=0.001)
    assert [p.rate_rps for p in info.value.probes] == [20.0]
    summary = run_summary(tmp_path / "peak")
    assert "first probe" in summary["error"] and measured_dirs(tmp_path / "peak") == ["probe-00-20rps"]
    assert read_summary(tmp_path / "peak").probes == info.value.probes


def test_a_search_over_a_mix_without_a_rate_to_vary_is_refused_before_anything_runs(tmp_path):
    config = quick_config(f"127.0.0.1:{free_port()}", tmp_path / "peak", closed_mix(2))
    with pytest.raises(ConfigError, match="no open-loop tenant"):
        find_peak(config, start_rps=20.0, sla_ms=100.0)
    with pytest.raises(ConfigError, match="no tenant 'other'"):
        perseus_ramp(config, qps_start=20.0, qps_delta=20.0, sla_ms=100.0, tenant="other")
    assert not (tmp_path / "peak").exists()


@pytest.mark.slow
def test_perseus_ramp_adds_qps_delta_per_pass(server, tmp_path):
    config = quick_config(grpc_target(server), tmp_path / "ramp", open_mix(1.0), criteria=LENIENT)
    ramp = perseus_ramp(config, qps_start=40.0, qps_delta=40.0, sla_ms=1000.0, patience=1, max_passes=2)

    assert [p.rate_rps for p in ramp.passes] == [40.0, 80.0]
    assert ramp.best.rate_rps == 80.0 and ramp.sla_met, [p.failures for p in ramp.passes]
    assert ramp.stop_reason == "max_passes"
    assert run_summary(tmp_path / "ramp")["ramp"]["best_rate_rps"] == 80.0
    assert read_summary(tmp_path / "ramp").ramp == ramp
