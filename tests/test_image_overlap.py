"""Extraction decodes the next chunk's images while the model answers the current one, and decodes a
chunk's images on several threads where asked; neither changes a single output row."""
from __future__ import annotations

import threading

import pytest
import torch

from conftest import tiny_config
from mxt_sdk import Extractor
from mxt_sdk.images import batching
from mxt_sdk.inference import engine as engine_module


@pytest.fixture(scope="module")
def extractor():
    torch.manual_seed(0)
    return Extractor.from_config(tiny_config(["mag", "xattn"]))


def _catalog(products, copies: int):
    return [p.model_copy(update={"id": f"{p.id}-{n}"}) for n in range(copies) for p in products]


def test_the_next_chunk_is_decoded_while_the_model_answers(extractor, products, image_dir, monkeypatch):
    loads, second_chunk_loaded = [], threading.Event()
    original_load, original_generate = batching.ImageLoader.load, type(extractor.model).generate

    def load(self, references):
        loads.append(len(references))
        if len(loads) == 2:
            second_chunk_loaded.set()
        return original_load(self, references)

    def generate(self, *args, **kwargs):
        # answering chunk 1: chunk 2's images must be on their way without our help
        if len(loads) <= 2 and not second_chunk_loaded.is_set():
            assert second_chunk_loaded.wait(timeout=30), "chunk 2 was not decoded while chunk 1 ran"
        return original_generate(self, *args, **kwargs)

    monkeypatch.setattr(batching.ImageLoader, "load", load)
    monkeypatch.setattr(type(extractor.model), "generate", generate)
    rows = extractor.extract(_catalog(products, 2), ["color"], batch_size=4, image_root=image_dir)
    assert len(rows) == 10 and loads == [4, 4, 2]


def test_threads_and_overlap_change_no_row(extractor, products, image_dir, monkeypatch):
    catalog = _catalog(products, 3)
    before = [r.model_dump() for r in extractor.extract(catalog, ["color", "material"], batch_size=4,
                                                        image_root=image_dir)]
    monkeypatch.setattr(engine_module, "decode_threads", lambda device: 4)
    threads = []
    original = batching.ImageLoader._decode

    def decode(self, reference):
        threads.append(threading.current_thread().name)
        return original(self, reference)

    monkeypatch.setattr(batching.ImageLoader, "_decode", decode)
    after = [r.model_dump() for r in extractor.extract(catalog, ["color", "material"], batch_size=4,
                                                       image_root=image_dir)]
    assert after == before
    assert any(name.startswith("mxt-decode") for name in threads)
    assert sum(r["image_used"] for r in after) > 0
