#!/bin/sh
# Serves this plan's server with TF Serving's docker image.
exec docker run --rm --name tfs-bench-tiny-cnn-uint8 -p 127.0.0.1:59310:8500 -p 127.0.0.1:59311:8501 -v /work/main/saved_models/tiny_cnn_uint8:/models/tiny_cnn_uint8:ro -v /tmp/fixture_run/cpu/framework/tiny_cnn/uint8/plan/tiny_cnn_uint8/docker:/models/config:ro tensorflow/serving:latest --model_config_file=/models/config/models.config --monitoring_config_file=/models/config/monitoring.config
