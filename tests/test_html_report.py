"""The HTML evaluation report: every row and product is there, every image resolves offline, and a
headless Chromium (where the system has one) renders it with its filters working."""
from __future__ import annotations

import base64
import io
import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch
from PIL import Image

from conftest import tiny_config
from mxt_sdk import Extractor
from mxt_sdk.evaluation.html_report import render_html
from mxt_sdk.experiments.synthetic import write_catalog


class _Page(HTMLParser):
    """Collects the images, the gallery rows (with their data attributes) and the cards of a page."""

    def __init__(self):
        super().__init__()
        self.images, self.rows, self.cards, self.text, self.external = [], [], [], [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs["src"])
        if tag == "tr" and "row" in (attrs.get("class") or "").split():
            self.rows.append(attrs)
        if tag == "div" and attrs.get("class") == "card":
            self.cards.append(attrs["data-product"])
        for key in ("src", "href"):
            if attrs.get(key) and not attrs[key].startswith(("data:", "#")):
                self.external.append(attrs[key])

    def handle_data(self, data):
        self.text.append(data)


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    folder = tmp_path_factory.mktemp("html")
    paths = write_catalog(folder / "data", train_size=12, test_size=8, image_size=32)
    # one product whose photo is missing: it must still have its card, with the reason instead of a photo
    lines = paths["test"].read_text().splitlines()
    broken = json.loads(lines[0])
    broken["image"] = "images/absent.png"
    paths["test"].write_text("\n".join([json.dumps(broken), *lines[1:]]) + "\n")
    torch.manual_seed(0)
    extractor = Extractor.from_config(tiny_config(["mag"]))  # untrained: the page, not the answers, is tested
    extractor.evaluate(paths["test"], precision=0.5, output=folder / "eval" / "report.json",
                       image_root=paths["train"].parent)
    return folder / "eval", paths


def test_the_page_holds_every_row_and_product_and_only_embedded_images(evaluated):
    folder, paths = evaluated
    page = _Page()
    page.feed((folder / "report.html").read_text(encoding="utf-8"))
    rows = [json.loads(line) for line in (folder / "report.predictions.jsonl").read_text().splitlines()]
    products = [json.loads(line) for line in paths["test"].read_text().splitlines()]
    assert len(page.rows) == len(rows) > 0
    assert page.cards == [p["id"] for p in products]
    assert [(r["data-pair"], r["data-outcome"]) for r in page.rows] == [
        (f"{r['product_type']} / {r['attribute']}", "right" if r["correct"] else "wrong") for r in rows]
    assert page.external == []  # nothing to fetch: the page opens offline
    text = " ".join(page.text)
    for product in products:
        assert product["title"] in text
    assert "image file not found" in text  # the missing photo says why
    photos = [src for src in page.images if src.startswith("data:image/jpeg")]
    curves = [src for src in page.images if src.startswith("data:image/png")]
    assert len(photos) == len(products) - 1 and curves
    for src in page.images:
        header, data = src.split(",", 1)
        assert header.endswith(";base64")
        Image.open(io.BytesIO(base64.b64decode(data))).verify()


def test_the_gallery_is_capped_and_says_so(evaluated):
    folder, _ = evaluated
    report = json.loads((folder / "report.json").read_text())
    rows = [json.loads(line) for line in (folder / "report.predictions.jsonl").read_text().splitlines()]
    page = _Page()
    page.feed(render_html(report, rows, {}, None, max_products=3))
    assert len(page.cards) == 3 and "The first 3 of 8 products are shown" in " ".join(page.text)


def _browser() -> str | None:
    return next((path for name in ("chromium-headless-shell", "chromium", "chromium-browser", "google-chrome")
                 if (path := shutil.which(name))), None)


@pytest.mark.skipif(_browser() is None, reason="no headless Chromium installed (apt install chromium-headless-shell)")
def test_headless_chromium_renders_it_and_its_filters_run(evaluated, tmp_path):
    folder, _ = evaluated
    page = (folder / "report.html").resolve()
    common = [_browser(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
              f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*common, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    rows = len((folder / "report.predictions.jsonl").read_text().splitlines())
    assert f"{rows} rows of 8 products shown" in dom.stdout  # the inline script ran
    shot = tmp_path / "shot.png"
    done = subprocess.run([*common, f"--screenshot={shot}", "--window-size=1200,900", page.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    with Image.open(shot) as image:
        assert image.size == (1200, 900) and sum(1 for count in image.convert("L").histogram() if count) > 10  # not blank
