#!/bin/sh
# Serves this plan's server with TF Serving's docker image.
exec docker run --rm --name tfs-bench-tiny-cnn -p 127.0.0.1:46214:8500 -p 127.0.0.1:46215:8501 -v /work/main/saved_models/tiny_cnn:/models/tiny_cnn:ro -v /tmp/fixture_run/cpu/reference/tiny_cnn/plan/tiny_cnn/docker:/models/config:ro tensorflow/serving:latest --model_config_file=/models/config/models.config --monitoring_config_file=/models/config/monitoring.config
