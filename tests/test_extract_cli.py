"""`mxt extract`: one row per requested pair for every record, bad ones included, good ones unaffected."""
from __future__ import annotations

import io
import json

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from conftest import tiny_config
from mxt_sdk import Extractor
from mxt_sdk.cli import main

GOOD = [
    {"id": "g1", "product_type": "dress", "title": "Red cotton dress", "image": "red.jpg"},
    {"id": "g2", "product_type": "mug", "title": "Blue mug", "image": "palette.png"},
    {"id": "g3", "product_type": "mug", "title": "Mug without photo"},
    {"id": "g4", "product_type": "shoe", "title": "Yellow pump", "image": "yellow_cmyk.jpg"},
    {"id": "g5", "product_type": "bag", "title": "Clear bag", "image": "green.png"},
]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("model")
    Extractor.from_config(tiny_config(["mag", "xattn"])).save_pretrained(folder)
    return folder


def _run(*args):
    result = CliRunner().invoke(main, ["extract", *map(str, args)])
    return result


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_bad_records_and_images_become_error_rows_and_good_ones_are_unchanged(model_dir, image_dir, tmp_path):
    Image.new("P", (30, 30)).save(image_dir / "palette.png")
    (image_dir / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 garbage")
    buffer = io.BytesIO()
    Image.effect_noise((120, 120), 40).convert("RGB").save(buffer, format="JPEG")
    (image_dir / "truncated.jpg").write_bytes(buffer.getvalue()[:600])
    Image.new("L", (9000, 6000)).save(image_dir / "bomb.png")
    bad = [
        '{"id": "broken json", ',
        json.dumps({"id": "no-title", "product_type": "mug"}),
        json.dumps({"id": "missing-image", "product_type": "mug", "title": "Mug", "image": "absent.jpg"}),
        json.dumps({"id": "corrupt", "product_type": "mug", "title": "Mug", "image": "corrupt.jpg"}),
        json.dumps({"id": "truncated", "product_type": "mug", "title": "Mug", "image": "truncated.jpg"}),
        json.dumps({"id": "bomb", "product_type": "mug", "title": "Mug", "image": "bomb.png"}),
        json.dumps({"id": "escape", "product_type": "mug", "title": "Mug", "image": "../../../etc/hosts"}),
        json.dumps({"id": "long", "product_type": "mug", "title": "Mug " * 2000}),
    ]
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text("\n".join([json.dumps(GOOD[0]), *bad[:4], json.dumps(GOOD[1]), *bad[4:],
                                *map(json.dumps, GOOD[2:])]) + "\n")
    clean = tmp_path / "clean.jsonl"
    clean.write_text("\n".join(map(json.dumps, GOOD)) + "\n")

    result = _run("--model", model_dir, "--input", mixed, "--output", tmp_path / "mixed-out.jsonl",
                  "--attributes", "color,material", "--images", image_dir, "--batch-size", "3")
    assert result.exit_code == 4, result.output  # finished with error rows
    rows = _rows(tmp_path / "mixed-out.jsonl")
    assert len(rows) == 2 * (len(GOOD) + len(bad))
    errors = {row["product_id"]: row["error"] for row in rows if row["error"]}
    assert "line 2 of mixed.jsonl" in errors["line 2 of mixed.jsonl"]
    assert "title" in errors["no-title"]
    assert "not found" in errors["missing-image"]
    assert "corrupt" in errors["corrupt"] or "not a readable image" in errors["corrupt"]
    assert "truncated" in errors["truncated"] or "corrupt" in errors["truncated"]
    assert "decompression bomb" in errors["bomb"]
    assert "escapes the image root" in errors["escape"]
    assert "long" not in errors  # over-long text is truncated, not an error
    summary = json.loads(result.stdout[result.stdout.index("{"):])
    assert summary["rows"] == len(rows) and summary["errors"] == len([r for r in rows if r["error"]])
    assert summary["truncated_inputs"] == 2  # the over-long record, once per attribute

    assert _run("--model", model_dir, "--input", clean, "--output", tmp_path / "clean-out.jsonl",
                "--attributes", "color,material", "--images", image_dir, "--batch-size", "3").exit_code == 0
    good_ids = {g["id"] for g in GOOD}
    mine, reference = [r for r in rows if r["product_id"] in good_ids], _rows(tmp_path / "clean-out.jsonl")
    # Same values and flags; confidences agree to float rounding (batches are composed differently).
    assert [{**r, "confidence": None} for r in mine] == [{**r, "confidence": None} for r in reference]
    assert [r["confidence"] for r in mine] == pytest.approx([r["confidence"] for r in reference], rel=1e-4)


def test_exit_status_is_3_when_nothing_could_be_answered(model_dir, tmp_path):
    only_bad = tmp_path / "bad.jsonl"
    only_bad.write_text('{"id": 1}\nnot json\n')
    result = _run("--model", model_dir, "--input", only_bad, "--output", tmp_path / "out.jsonl",
                  "--attributes", "color", "--reader", "products")
    assert result.exit_code == 3
    assert len(_rows(tmp_path / "out.jsonl")) == 2
