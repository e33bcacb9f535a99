"""The image feature cache's chunks encoded by Ray Data actors (optional extra ``mxt-sdk[ray]``).

With ``training.image_cache_ray_actors: N`` (N > 0), training hands the chunks of its feature cache
(:mod:`mxt_sdk.training.feature_cache`) that are not on disk yet to ``ray.data``: a dataset of chunk
numbers is mapped through :class:`ChunkEncoderActor` by ``map_batches`` with N actors. Each actor builds the
model's image encoders from the run's config once, checks that its weights are the training process's (the
SHA-256 of :func:`~mxt_sdk.training.feature_cache.encoder_digest`; a config whose encoders are not
reproducible from it, e.g. weights loaded from a folder, is refused with that error), then encodes one chunk
per call and writes it into the cache's staging folder. The training process then joins the chunks as
usual. Ray does the scheduling, retries and placement; a killed build resumes from the chunks on disk, as
the in-process build does.

Every worker must read the images (``image_root``) and write the run folder: on several machines, both live
on storage they share. ``ray.init()`` is called without arguments when Ray is not initialised yet, so
``RAY_ADDRESS`` picks the cluster.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from mxt_sdk.config import MXTConfig
from mxt_sdk.images.batching import ImageLoader
from mxt_sdk.images.fetch import UrlPolicy
from mxt_sdk.storage import read_json, write_json
from mxt_sdk.training.feature_cache import ChunkEncoder, encode_chunk, encoder_digest

__all__ = ["ChunkEncoderActor", "ray_chunk_encoder"]

#: the references and chunk folders of a build, written for the actors beside the chunks
PLAN_FILE = "ray-chunks.json"


class ChunkEncoderActor:
    """A Ray Data callable class: builds the image encoders once, then encodes the chunks it is given."""

    def __init__(self, config: dict[str, Any], digest: str, image_root: str | None, plan: str,
                 chunk_images: int, batch_size: int):
        import torch

        from mxt_sdk.model.mxt import MXTModel

        parsed = MXTConfig.model_validate(config)
        self.model = MXTModel(parsed.model).eval()
        found = encoder_digest(self.model)
        if found != digest:
            raise RuntimeError(f"this worker's image encoders (SHA-256 {found[:12]}) are not the training "
                               f"process's ({digest[:12]}): their weights do not come from the config alone; "
                               "build the feature cache in the training process (training.image_cache_ray_actors: 0)")
        extraction = parsed.extraction
        self.loader = ImageLoader(self.model.preprocessing(), Path(image_root) if image_root else None,
                                  extraction.max_image_pixels, UrlPolicy.from_extraction(extraction))
        self.chunk_images, self.batch_size = chunk_images, batch_size
        written = read_json(Path(plan))
        self.references, self.folders = written["references"], [Path(folder) for folder in written["folders"]]
        self.device = torch.device("cpu")

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[int]]:
        numbers = [int(number) for number in batch["chunk"]]
        for number in numbers:
            encode_chunk(self.model, self.loader, self.references, number, self.folders[number], self.chunk_images,
                         self.batch_size, self.device)
        return {"chunk": numbers}


def ray_chunk_encoder(config: MXTConfig, model_digest: str, image_root: Path | None, actors: int,
                      batch_size: int, num_cpus: float = 1) -> ChunkEncoder:
    """The :class:`~mxt_sdk.training.feature_cache.ChunkEncoder` that runs ``actors`` Ray Data actors of
    ``num_cpus`` each (see the module docstring)."""
    import ray

    def encode(references: list[str], folders: list[Path], todo: list[int], chunk_images: int) -> None:
        plan = folders[0].parent / PLAN_FILE
        write_json(plan, {"references": references, "folders": [str(folder) for folder in folders]})
        if not ray.is_initialized():
            ray.init()
        done = ray.data.from_items([{"chunk": number} for number in todo]).map_batches(
            ChunkEncoderActor, batch_size=1, concurrency=actors, num_cpus=num_cpus,
            fn_constructor_kwargs={"config": config.model_dump(mode="json"), "digest": model_digest,
                                   "image_root": str(image_root) if image_root else None, "plan": str(plan),
                                   "chunk_images": chunk_images, "batch_size": batch_size},
        ).take_all()
        if sorted(row["chunk"] for row in done) != sorted(todo):
            raise RuntimeError("Ray Data returned another set of chunks than it was given")
    return encode
