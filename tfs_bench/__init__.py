"""tfs_bench: what serving CNNs on TensorFlow Serving costs, dedicated versus shared."""

__version__ = "0.1.0"
