"""Open loop at three times the server's capacity: the generator drops instead of growing, the
server stays up with bounded memory, and serves normally afterwards (bench/overload.py measures
the same for a minute and prints the figures docs/reliability.md quotes)."""

from pathlib import Path

import pytest

from bench import bench_server
from bench import overload
from tfs_bench.export import savedmodels
from tfs_bench.plan import placement


@pytest.mark.slow
@pytest.mark.parametrize("batching", [False, True], ids=["threads", "batching"])
def test_three_times_capacity_is_dropped_not_queued_and_the_server_recovers(tmp_path, batching):
    export = savedmodels.export(savedmodels.ExportRequest("mobilenet_v2_small", str(tmp_path / "saved_models"),
                                                          measure_footprint=False))
    entry = placement.load_model_entry(export.card.export_name, str(export.version_dir.parent.absolute()))
    request = {"batching": overload.BATCHING} if batching else {}
    with bench_server.planned_server([entry], tmp_path, **request) as server:
        got = overload.overload(server, export, factor=3.0, overload_s=6.0, max_outstanding=64, work_dir=Path(tmp_path),
                                window_s=2.0, capacity_window_s=1.0, warmup_s=1.0)
        alive = server.poll() is None

    assert alive, got
    assert got["offered_rps"] == pytest.approx(3 * got["capacity_rps"], rel=0.01)
    # The excess is refused and counted, never queued without end: without batching the generator
    # DROPS what exceeds 64 in flight (requests wait for a handler thread, no error); with it the
    # server's queue (4 batches of 8) fills first and answers UNAVAILABLE, and only that.
    refused = got["dropped"] + sum(got["errors_by_code"].values())
    assert refused > 0.3 * got["scheduled"], got
    assert set(got["errors_by_code"]) == ({"UNAVAILABLE"} if batching else set()), got
    assert got["ok"] + got["dropped"] + sum(got["errors_by_code"].values()) <= got["scheduled"] + 64
    assert got["verdict"] == "INVALID"  # an overloaded run is never reported as a capacity
    memory = got["memory"]
    assert memory["generator"]["peak_mib"] - memory["generator"]["start_mib"] < 300, memory
    assert memory["server"]["peak_mib"] - memory["server"]["start_mib"] < 500, memory
    assert got["recovery_s"] is not None and got["recovery_s"] < 10, got
    assert got["throughput_after_rps"] > 0.6 * got["capacity_rps"], got
