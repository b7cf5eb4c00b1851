"""TF Serving's rules for BatchingParameters that the planner and the embedded server both apply.

Stated once, with TF Serving's own wording (batching_session.cc), so a plan is refused for the same
reason, in the same words, as the server would refuse its batching.config.
"""

from __future__ import annotations

from collections.abc import Sequence

from tfs_bench.errors import ConfigError

# What TF Serving uses when BatchingParameters leaves max_batch_size unset.
DEFAULT_MAX_BATCH_SIZE = 1000


def check_allowed_batch_sizes(sizes: Sequence[int], max_batch_size: int) -> None:
    """Raises ConfigError unless `sizes` is empty, or increases and ends at `max_batch_size`."""
    if not sizes:
        return
    if any(isinstance(size, bool) or not isinstance(size, int) or size < 1 for size in sizes):
        raise ConfigError(f"batching parameter allowed_batch_sizes entries must be integers >= 1; got {list(sizes)}")
    if any(later <= earlier for earlier, later in zip(sizes, sizes[1:])):
        raise ConfigError(f"allowed_batch_sizes entries must be monotonically increasing; got {list(sizes)}")
    if sizes[-1] != max_batch_size:
        raise ConfigError(
            f"Last entry in allowed_batch_sizes must match max_batch_size; last entry was "
            f"{sizes[-1]}; expected {max_batch_size}"
        )
