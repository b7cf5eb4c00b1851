"""The load stage: traffic against servers, request records, windows, verdicts, peak searches."""
