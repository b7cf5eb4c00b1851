import pytest

from tfs_bench.plan import docker_deploy


def test_image_names():
    assert docker_deploy.image_name("2.19.0", gpu=False) == "tensorflow/serving:2.19.0"
    assert docker_deploy.image_name("2.19.0", gpu=True) == "tensorflow/serving:2.19.0-gpu"
    assert docker_deploy.image_name("latest-gpu", gpu=True) == "tensorflow/serving:latest-gpu"
    with pytest.raises(ValueError, match="invalid docker image tag"):
        docker_deploy.image_name("x;rm -rf /", gpu=False)


def test_compose_yaml_quotes_every_scalar():
    import yaml

    services = [{"name": "a", "image": "img:1", "command": ["--x=1"], "ports": ["1:2"], "cpuset": "0-1",
                 "volumes": [], "deploy": {"n": [{"count": "all", "capabilities": ["gpu"]}]}}]
    assert yaml.safe_load(docker_deploy.compose_yaml(services)) == {
        "services": {"a": {"image": "img:1", "command": ["--x=1"], "ports": ["1:2"], "cpuset": "0-1",
                           "volumes": [], "deploy": {"n": [{"count": "all", "capabilities": ["gpu"]}]}}}}
