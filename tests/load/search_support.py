"""A fake server for the capacity searches: probe outcomes as a function of the offered rate."""

from tfs_bench.load.search import ProbeOutcome


class FakeServer:
    """A server with a capacity: below it latency is low; above it, queues grow and runs go bad.

    `invalid_above` makes probes INVALID (e.g. unstable) beyond a rate; `over_sla_above` keeps them
    VALID but over the SLA; throughput is the rate up to the capacity, then the capacity.
    """

    def __init__(self, capacity_rps, invalid_above=float("inf"), over_sla_above=None, throughput=None):
        self.capacity_rps = capacity_rps
        self.invalid_above = invalid_above
        self.over_sla_above = capacity_rps if over_sla_above is None else over_sla_above
        self.throughput = throughput or (lambda rate: min(rate, capacity_rps))
        self.calls = []

    def __call__(self, rate):
        self.calls.append(rate)
        valid = rate <= self.invalid_above
        return ProbeOutcome(
            valid=valid,
            invalid_reasons=() if valid else ("unstable: p95 grew every window",),
            throughput_rps=self.throughput(rate),
            sla_latency_ms=100.0 if rate <= self.over_sla_above else 2000.0,
        )
