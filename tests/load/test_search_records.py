"""The search's result records: every invariant refused on its own, and read back from JSON."""

import pytest

from conftest import exactly
from tfs_bench.load.search import STOP_MAX_PASSES
from tfs_bench.load.search import STOP_NO_GAIN
from tfs_bench.load.search import JudgedProbe
from tfs_bench.load.search import PeakResult
from tfs_bench.load.search import ProbeOutcome
from tfs_bench.load.search import RampResult

VALID = ProbeOutcome(True, (), 100.0, 5.0)
INVALID = ProbeOutcome(False, ("unstable",), 90.0, 5.0)
PASS_10 = JudgedProbe(10.0, VALID, True, ())
PASS_20 = JudgedProbe(20.0, VALID, True, ())
FAIL_40 = JudgedProbe(40.0, INVALID, False, ("unstable",))
INVALID_PASS = JudgedProbe(30.0, INVALID, False, ("unstable",))

PROBE_RULE = "a probe passes exactly when it has no failures"
RAMP_BEST = "the best pass of a ramp is one of its VALID passes"
PEAK_LOWER = "the peak is the rate of one of the search's passing probes"
PEAK_BRACKET = "a peak is bracketed exactly when it has an upper, failing probe"
PEAK_UPPER = "the upper end of a peak's bracket is one of the search's failing probes"


@pytest.mark.parametrize("passed, failures", [(True, ("slow",)), (False, ())])
def test_a_probe_passes_exactly_when_it_has_no_failures(passed, failures):
    with pytest.raises(ValueError, match=exactly(PROBE_RULE)):
        JudgedProbe(1.0, VALID, passed, failures)
    assert JudgedProbe(1.0, INVALID, False, ["unstable"]).failures == ("unstable",)


def test_a_ramp_needs_its_best_pass_among_its_valid_passes():
    assert RampResult([PASS_10, PASS_20], PASS_20, True, STOP_NO_GAIN).passes == (PASS_10, PASS_20)
    assert RampResult((PASS_10,), PASS_10, False, STOP_MAX_PASSES).stop_reason == STOP_MAX_PASSES
    with pytest.raises(ValueError, match=exactly(RAMP_BEST)):
        RampResult((PASS_10,), PASS_20, True, STOP_NO_GAIN)  # not one of the passes
    with pytest.raises(ValueError, match=exactly(RAMP_BEST)):
        RampResult((PASS_10, INVALID_PASS), INVALID_PASS, True, STOP_NO_GAIN)  # one, but INVALID


def test_a_ramp_stops_for_a_known_reason():
    with pytest.raises(ValueError, match=exactly(
        "ramp stop_reason must be 'no_gain' or 'max_passes', got 'tired'"
    )):
        RampResult((PASS_10,), PASS_10, True, "tired")


@pytest.mark.parametrize(
    "fields, message",
    [
        (dict(peak_rps=20.0, lower=PASS_20, probes=(PASS_10, FAIL_40)), PEAK_LOWER),  # lower not probed
        (dict(peak_rps=40.0, lower=FAIL_40, upper=None, bracketed=False), PEAK_LOWER),  # lower failed
        (dict(peak_rps=21.0), PEAK_LOWER),  # the peak is not the lower probe's rate
        (dict(upper=None), PEAK_BRACKET),  # bracketed without an upper probe
        (dict(bracketed=False), PEAK_BRACKET),  # an upper probe but not bracketed
        (dict(upper=JudgedProbe(80.0, INVALID, False, ("unstable",))), PEAK_UPPER),  # upper not probed
        (dict(upper=PASS_10, probes=(PASS_10, PASS_20)), PEAK_UPPER),  # upper passed
    ],
)
def test_each_rule_of_a_peak_is_refused_on_its_own(fields, message):
    good = dict(peak_rps=20.0, lower=PASS_20, upper=FAIL_40, bracketed=True, precision=0.05,
                probes=(PASS_10, PASS_20, FAIL_40))
    PeakResult(**good)
    with pytest.raises(ValueError, match=exactly(message)):
        PeakResult(**{**good, **fields})


def test_an_unbracketed_peak_has_no_upper_probe():
    peak = PeakResult(20.0, PASS_20, None, False, 0.05, [PASS_10, PASS_20])
    assert peak.probes == (PASS_10, PASS_20)
    assert PeakResult.from_json(peak.to_json()) == peak
    assert peak.to_json()["upper_rate_rps"] is None


def test_results_read_back_equal_and_name_a_rate_no_probe_has():
    peak = PeakResult(20.0, PASS_20, FAIL_40, True, 0.05, (PASS_10, PASS_20, FAIL_40))
    ramp = RampResult((PASS_10, PASS_20), PASS_20, True, STOP_NO_GAIN)
    assert PeakResult.from_json(peak.to_json()) == peak
    assert RampResult.from_json(ramp.to_json()) == ramp
    assert JudgedProbe.from_json(FAIL_40.to_json()) == FAIL_40
    with pytest.raises(ValueError, match=exactly("the peak's lower end names rate 7.0, which 0 probes have (not 1)")):
        PeakResult.from_json({**peak.to_json(), "lower_rate_rps": 7.0})
    with pytest.raises(ValueError, match=exactly("the peak's upper end names rate 8.0, which 0 probes have (not 1)")):
        PeakResult.from_json({**peak.to_json(), "upper_rate_rps": 8.0})
    twice = {**ramp.to_json(), "passes": [PASS_20.to_json(), PASS_20.to_json()]}
    with pytest.raises(ValueError, match=exactly("the ramp's best pass names rate 20.0, which 2 probes have (not 1)")):
        RampResult.from_json(twice)
    with pytest.raises(ValueError, match=exactly("the ramp's best pass names rate 30.0, which 0 probes have (not 1)")):
        RampResult.from_json({**ramp.to_json(), "best_rate_rps": 30.0})
