#!/bin/sh
# Serves this plan's server with TF Serving's docker image.
exec docker run --rm --name tfs-bench-mobilenet-v2-small -p 127.0.0.1:39102:8500 -p 127.0.0.1:39103:8501 -v /work/main/saved_models/mobilenet_v2_small:/models/mobilenet_v2_small:ro -v /tmp/fixture_run/cpu/multi_process/plan/mobilenet_v2_small/docker:/models/config:ro --cpuset-cpus=1 tensorflow/serving:latest --model_config_file=/models/config/models.config --monitoring_config_file=/models/config/monitoring.config --tensorflow_intra_op_parallelism=1 --tensorflow_inter_op_parallelism=1
