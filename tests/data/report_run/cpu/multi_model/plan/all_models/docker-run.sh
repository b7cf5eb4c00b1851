#!/bin/sh
# Serves this plan's server with TF Serving's docker image.
exec docker run --rm --name tfs-bench-all-models -p 127.0.0.1:36150:8500 -p 127.0.0.1:36151:8501 -v /work/main/saved_models/tiny_cnn:/models/tiny_cnn:ro -v /work/main/saved_models/mobilenet_v2_small:/models/mobilenet_v2_small:ro -v /tmp/fixture_run/cpu/multi_model/plan/all_models/docker:/models/config:ro tensorflow/serving:latest --model_config_file=/models/config/models.config --monitoring_config_file=/models/config/monitoring.config
