#!/bin/sh
# Serves this plan's server with TF Serving's docker image.
exec docker run --rm --name tfs-bench-tiny-cnn -p 127.0.0.1:34416:8500 -p 127.0.0.1:34417:8501 -v /work/main/saved_models/tiny_cnn:/models/tiny_cnn:ro -v /tmp/fixture_run/cpu/framework/tiny_cnn/batching/plan/tiny_cnn/docker:/models/config:ro tensorflow/serving:latest --model_config_file=/models/config/models.config --monitoring_config_file=/models/config/monitoring.config --enable_batching=true --batching_parameters_file=/models/config/batching.config
