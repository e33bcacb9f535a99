import io

import pytest
from PIL import Image

from mxt_sdk.errors import ImageError
from mxt_sdk.images.io import Preprocessing, load_image, resolve_image_path, to_pixels


def _save(image, path, **kwargs):
    image.save(path, **kwargs)
    return path.name


@pytest.mark.parametrize("mode,fmt", [("CMYK", "JPEG"), ("P", "PNG"), ("RGBA", "PNG"), ("L", "PNG"),
                                      ("LA", "PNG"), ("I;16", "PNG")])
def test_every_mode_is_converted_to_rgb(tmp_path, mode, fmt):
    name = _save(Image.new(mode, (40, 30)), tmp_path / f"x.{fmt.lower()}", format=fmt)
    image = load_image(name, tmp_path)
    assert image.mode == "RGB" and image.size == (40, 30)


def test_transparent_pixels_are_flattened_on_white(tmp_path):
    name = _save(Image.new("RGBA", (4, 4), (0, 0, 0, 0)), tmp_path / "clear.png")
    assert load_image(name, tmp_path).getpixel((0, 0)) == (255, 255, 255)


def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    name = _save(Image.new("L", (3000, 3000)), tmp_path / "big.png")
    with pytest.raises(ImageError, match="decompression bomb"):
        load_image(name, tmp_path, max_pixels=1_000_000)


def test_truncated_image_is_an_error(tmp_path):
    buffer = io.BytesIO()
    Image.effect_noise((200, 200), 50).convert("RGB").save(buffer, format="JPEG")
    (tmp_path / "cut.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(ImageError, match="truncated|corrupt"):
        load_image("cut.jpg", tmp_path)


def test_not_an_image_and_missing_file_are_errors(tmp_path):
    (tmp_path / "text.jpg").write_text("hello")
    with pytest.raises(ImageError, match="not a readable image"):
        load_image("text.jpg", tmp_path)
    with pytest.raises(ImageError, match="not found"):
        load_image("absent.jpg", tmp_path)


def test_paths_may_not_escape_the_root(tmp_path):
    with pytest.raises(ImageError, match="escapes"):
        resolve_image_path("../secret.jpg", tmp_path / "images")
    with pytest.raises(ImageError, match="escapes"):
        resolve_image_path("/etc/passwd", tmp_path)
    assert resolve_image_path("a/b.jpg", tmp_path) == (tmp_path / "a" / "b.jpg").resolve()


def test_unsupported_scheme_is_an_error(tmp_path):
    with pytest.raises(ImageError, match="unsupported image location"):
        load_image("s3://bucket/x.jpg", tmp_path)


def test_preprocessing_resizes_crops_and_normalises():
    prep = Preprocessing(input_size=(3, 32, 48), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), crop_pct=1.0)
    pixels = to_pixels(Image.new("RGB", (300, 100), (255, 0, 0)), prep)
    assert pixels.shape == (3, 32, 48)
    assert pixels[0].min() == pytest.approx(1.0) and pixels[1].max() == pytest.approx(-1.0)
