"""Ray Data batch extraction on a local Ray instance gives the same predictions as the plain path."""
from __future__ import annotations

import pytest
import torch

from conftest import tiny_config
from mxt_sdk import Extractor

ray = pytest.importorskip("ray", reason="the optional 'ray' extra is not installed")


@pytest.mark.parametrize("context_encoding", ["per_question", pytest.param("per_product", marks=pytest.mark.slow)])
def test_ray_path_matches_plain_extraction(tmp_path, products, image_dir, context_encoding):
    from mxt_sdk.inference.ray import extract_with_ray

    torch.manual_seed(0)
    config = tiny_config(["mag", "xattn"])
    config["model"]["context_encoding"] = context_encoding
    Extractor.from_config(config).save_pretrained(tmp_path / "model")
    records = [p.model_dump(exclude={"attributes"}) for p in products]
    plain = Extractor.from_pretrained(tmp_path / "model").extract(
        records, ["color", "material"], image_root=image_dir, batch_size=2)

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    try:
        dataset = ray.data.from_items(records)
        rows = extract_with_ray(dataset, str(tmp_path / "model"), attributes=["color", "material"],
                                image_root=str(image_dir), batch_size=2).take_all()
    finally:
        ray.shutdown()
    key = lambda r: (r["product_id"], r["attribute"])  # noqa: E731
    got = sorted(rows, key=key)
    want = sorted((p.model_dump() for p in plain), key=key)
    assert len(got) == len(want) == 2 * len(products)
    for mine, reference in zip(got, want):
        assert {k: v for k, v in mine.items() if k != "confidence"} == \
            {k: v for k, v in reference.items() if k != "confidence"}
        assert mine["confidence"] == pytest.approx(reference["confidence"], rel=1e-4, abs=1e-12)
