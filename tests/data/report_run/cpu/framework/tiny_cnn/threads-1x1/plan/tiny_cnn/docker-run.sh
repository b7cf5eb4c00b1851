#!/bin/sh
# Serves this plan's server with TF Serving's docker image.
exec docker run --rm --name tfs-bench-tiny-cnn -p 127.0.0.1:40868:8500 -p 127.0.0.1:40869:8501 -v /work/main/saved_models/tiny_cnn:/models/tiny_cnn:ro -v /tmp/fixture_run/cpu/framework/tiny_cnn/threads-1x1/plan/tiny_cnn/docker:/models/config:ro tensorflow/serving:latest --model_config_file=/models/config/models.config --monitoring_config_file=/models/config/monitoring.config --tensorflow_intra_op_parallelism=1 --tensorflow_inter_op_parallelism=1
