"""A training run whose images mostly fail to load stops at once with one clear error."""
from __future__ import annotations

import json
import logging
import time

import pytest

from conftest import tiny_config
from mxt_sdk import Extractor
from mxt_sdk.errors import ImageError
from mxt_sdk.experiments.synthetic import write_catalog
from mxt_sdk.images.batching import ImageLoader
from mxt_sdk.images.probe import PROBE_IMAGES, check_images_load


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    return write_catalog(tmp_path_factory.mktemp("catalog"), train_size=80, test_size=4, image_size=32)


def _extractor() -> Extractor:
    config = tiny_config(["mag", "xattn"])
    return Extractor.from_config({**config, "training": {"batch_size": 8, "eval_every": 100, "normalizers": ["text"]}})


def _first_product_id(path) -> str:
    return json.loads(path.read_text().splitlines()[0])["id"]


def test_a_wrong_image_root_stops_the_run_before_training_with_one_error(catalog, tmp_path):
    wrong = tmp_path / "not-the-images"
    wrong.mkdir()
    started = time.perf_counter()
    with pytest.raises(ImageError) as caught:
        _extractor().fit(catalog["train"], output_dir=tmp_path / "model", image_root=wrong, max_steps=2)
    assert time.perf_counter() - started < 60
    message = str(caught.value)
    assert f"{PROBE_IMAGES} of the first {PROBE_IMAGES} distinct images failed to load" in message
    assert str(wrong.resolve()) in message
    assert f"product {_first_product_id(catalog['train'])!r}" in message and "image file not found" in message
    assert not (tmp_path / "model" / "model.safetensors").exists()


def test_a_symlinked_image_folder_outside_the_root_stops_the_run(catalog, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "images").symlink_to(catalog["train"].parent / "images", target_is_directory=True)
    with pytest.raises(ImageError, match="escapes the image root"):
        _extractor().fit(catalog["train"], output_dir=tmp_path / "model", image_root=root, max_steps=2)


def test_a_few_bad_images_are_skipped_and_the_run_goes_on(catalog, tmp_path, caplog):
    data = tmp_path / "data"
    data.mkdir()
    lines = catalog["train"].read_text().splitlines()
    broken = [json.loads(line) for line in lines[:3]]
    for product in broken:
        product["image"] = "images/missing.png"
    (data / "train.jsonl").write_text("\n".join([*map(json.dumps, broken), *lines[3:]]) + "\n")
    with caplog.at_level(logging.INFO, logger="mxt_sdk"):
        result = _extractor().fit(data / "train.jsonl", output_dir=tmp_path / "model", image_root=catalog["train"].parent,
                                  max_steps=1)
    assert result.steps == 1
    assert any("Image check: 63 of the first 64 distinct images load" in r.getMessage() for r in caplog.records)


def test_the_threshold_is_more_than_half_of_the_images_tried(image_dir):
    loader = ImageLoader({"global": {"input_size": (3, 16, 16)}}, image_dir, 10_000_000)
    good, bad = ["red.jpg", "blue.png"], ["none-1.jpg", "none-2.jpg", "none-3.jpg"]
    records = [(ref, f"product {i}") for i, ref in enumerate([*good, None, *bad[:2], "red.jpg"])]
    assert check_images_load(loader, records) == (2, 4)  # half fail: bad images, skipped later
    with pytest.raises(ImageError, match=r"3 of the first 5 distinct images .* First failure: product 3, "
                                         r"image 'none-1.jpg': image file not found"):
        check_images_load(loader, [(ref, f"product {i}") for i, ref in enumerate([*good, None, *bad])])
    assert check_images_load(loader, [(None, "product 0")]) == (0, 0)
    assert check_images_load(loader, ((ref, "p") for ref in [*good, *bad]), sample=2) == (0, 2)  # read lazily
