"""The load stage's monitors: CPU, GPU and server metrics, sampled while load runs.

- `samples`: the frozen sample, window and breakdown records, with their JSON forms.
- `cpu`, `gpu`: one sample of the machine, server process trees and load generator (psutil),
  and of each GPU (NVML).
- `sampling`: `ResourceMonitor`, the background thread that samples both every interval.
- `clipping`: pure clipping of samples to measurement windows.
- `scrape`: timestamped snapshots of a server's Prometheus page.
- `breakdown`: pure per-window deltas of server metrics and the client/server latency breakdown.
"""
