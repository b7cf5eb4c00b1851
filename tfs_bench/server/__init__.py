"""The embedded TF-Serving-compatible model server (`python -m tfs_bench.server`).

Modules, by what each produces: `options` (validated server options), `config_files` and
`model_config` (validated config files and model entries), `servables` (loaded SavedModel
versions), `models` (the version lifecycle), `tensors` and `json_tensors` (request and response
codecs), `predict` (protocol-independent Predict), `grpc_service` and `rest` (the two front ends),
`batching` (the shared batch scheduler), `metrics` (Prometheus metrics), `devices` (thread pools and
GPU memory), `warmup`, and `app` (lifecycle). Nothing here imports TensorFlow at package import.
"""
