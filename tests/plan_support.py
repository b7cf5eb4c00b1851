"""A model card for planner tests: only the GPU footprint matters to a plan."""

from tfs_bench.export import modelcard

GIB = 2**30


def model_card(name: str, gpu_peak_bytes: int | None) -> modelcard.ModelCard:
    footprint = modelcard.Footprint(
        load_time_s=1.0,
        peak_rss_bytes=GIB,
        rss_increase_bytes=GIB // 2,
        gpu_peak_bytes=gpu_peak_bytes,
        device="gpu" if gpu_peak_bytes is not None else "cpu",
    )
    return modelcard.ModelCard(
        model=name, export_name=name, version=1, input_encoding="float32", signature_name="serving_default",
        inputs=(modelcard.TensorInfo("images", "float32", (-1, 8, 8, 3)),),
        outputs=(modelcard.TensorInfo("probabilities", "float32", (-1, 10)),),
        parameters=10, flops_per_image=20, savedmodel_bytes=100, savedmodel_sha256="0" * 64,
        export_key="k", weights="random(seed=0)", exported_at="2026-01-01T00:00:00+00:00",
        export_time_s=1.0, footprint=footprint, versions={},
    )
