"""The main job: one flagfile to a run directory with every measurement of an experiment.

`python -m tfs_bench.run --flagfile=configs/quickstart.flags` exports what is missing, plans each
placement on each device present, launches the servers, measures, tears down, and writes
`runs/<timestamp>-<name>/` (manifest.json, steps.jsonl, one directory per measurement). Modules:
`experiment` (the flags as a `RunSpec`, and the ordered `Step`s it asks for: pure), `machine`
(what this host is and which devices it has), `manifest` (manifest.json), `journal`
(steps.jsonl: what finished, for `--resume`), `progress` (the printed progress and ETA), `runner`
(executes the steps).
"""
