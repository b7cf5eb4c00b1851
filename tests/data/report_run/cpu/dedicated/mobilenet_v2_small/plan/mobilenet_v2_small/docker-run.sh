#!/bin/sh
# Serves this plan's server with TF Serving's docker image.
exec docker run --rm --name tfs-bench-mobilenet-v2-small -p 127.0.0.1:39292:8500 -p 127.0.0.1:39293:8501 -v /work/main/saved_models/mobilenet_v2_small:/models/mobilenet_v2_small:ro -v /tmp/fixture_run/cpu/dedicated/mobilenet_v2_small/plan/mobilenet_v2_small/docker:/models/config:ro tensorflow/serving:latest --model_config_file=/models/config/models.config --monitoring_config_file=/models/config/monitoring.config
