"""The embedded TF-Serving-compatible server."""
