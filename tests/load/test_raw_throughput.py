import pytest

from tfs_bench.load import raw_throughput
from tfs_bench.errors import ModelError


def test_raw_throughput_of_known_answer_model(known_answer_dir):
    request = raw_throughput.RawRequest(
        str(known_answer_dir / "half_plus_two" / "1"), batch_size=4, duration_s=0.5, warmup_s=0.1,
        concurrency=2, intra_op=1, inter_op=1)
    result = raw_throughput.measure_in_fresh_process(request)
    assert result.batches > 10
    assert result.images_per_s == pytest.approx(result.batches * 4 / result.duration_s)
    assert result.duration_s >= 0.5
    assert 0 < result.mean_batch_latency_ms < 1000 * result.duration_s


def test_bad_requests(tmp_path):
    with pytest.raises(ValueError, match="invalid raw throughput request"):
        raw_throughput.RawRequest("x", batch_size=0)
    with pytest.raises(ModelError, match="raw throughput of .*missing failed"):
        raw_throughput.measure_in_fresh_process(raw_throughput.RawRequest(str(tmp_path / "missing"), duration_s=0.1))
