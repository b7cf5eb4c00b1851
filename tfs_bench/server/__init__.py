"""The embedded TF-Serving-compatible model server (`python -m tfs_bench.server`).

Modules, by what each produces: `options` (validated server options), `model_config` (validated
model entries), `servables` (loaded SavedModel versions), `models` (the version lifecycle),
`tensors` (TensorProto codec), `predict` (protocol-independent Predict), `grpc_service` and `rest`
(the two front ends), `devices` (thread pools and GPU memory), `warmup`, and `app` (lifecycle).
Nothing here imports TensorFlow at package import time.
"""
