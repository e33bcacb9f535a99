"""The saved-model folder: ``config.json``, ``model.safetensors``, ``tokenizer/``, ``metadata.json``, the
optional canonicalizer and image prior files, ``checksums.json`` (:mod:`mxt_sdk.model.checksums`) and the
model card, ``README.md`` and ``card.json`` (:mod:`mxt_sdk.model.card`).

No pickle anywhere: tensors go to safetensors, everything else to JSON or tokenizer files.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_model

from mxt_sdk._version import __version__
from mxt_sdk.config import MXTConfig
from mxt_sdk.data.metadata import CatalogMetadata
from mxt_sdk.errors import ConfigError, MXTError, PluginNotInstalledError, describe_validation_errors
from mxt_sdk.evaluation.thresholds import Thresholds
from mxt_sdk.inference import image_prior as prior_files
from mxt_sdk.inference import span_prior as span_prior_files
from mxt_sdk.inference import text_prior as text_prior_files
from mxt_sdk.inference.image_prior import ImageValuePrior
from mxt_sdk.inference.span_prior import SpanPrior
from mxt_sdk.inference.text_prior import TextValuePrior
from mxt_sdk.model.card import CARD_FILE, FACTS_FILE, ModelCard, write_card
from mxt_sdk.model.checksums import CHECKSUMS_FILE, write_checksums
from mxt_sdk.model.mxt import ENCODER_SLOTS, MXTModel
from mxt_sdk.plugins import manager
from mxt_sdk.plugins.components import Canonicalizer, Normalizer
from mxt_sdk.storage import is_complete, read_json, save_weights, staged_update, write_json

FORMAT_VERSION = 1
CONFIG_FILE, WEIGHTS_FILE, METADATA_FILE, NORMALIZERS_FILE, THRESHOLDS_FILE, TOKENIZER_DIR = (
    "config.json", "model.safetensors", "metadata.json", "normalizers.json", "thresholds.json", "tokenizer")
CANONICALIZER_DIR = "canonicalizer"  # canonicalizers save into <model>/canonicalizer/ by convention

#: every entry a save may write; a re-save removes the ones it does not write this time
MODEL_FILES = frozenset({CONFIG_FILE, WEIGHTS_FILE, METADATA_FILE, NORMALIZERS_FILE, THRESHOLDS_FILE,
                         TOKENIZER_DIR, CANONICALIZER_DIR, prior_files.WEIGHTS_FILE, prior_files.INDEX_FILE,
                         text_prior_files.WEIGHTS_FILE, text_prior_files.INDEX_FILE, span_prior_files.WEIGHTS_FILE,
                         span_prior_files.INDEX_FILE, CHECKSUMS_FILE, CARD_FILE, FACTS_FILE})


@dataclass
class SavedModel:
    """Everything a model folder holds, in memory."""

    config: MXTConfig
    model: MXTModel
    metadata: CatalogMetadata | None
    normalizers: list[Normalizer]
    thresholds: Thresholds
    canonicalizer: Canonicalizer | None = None
    image_prior: ImageValuePrior | None = None
    card: ModelCard | None = None
    text_prior: TextValuePrior | None = None
    span_prior: SpanPrior | None = None


def _component_record(kind: str, name: str) -> dict[str, Any]:
    info = manager.get_component(kind, name)
    dist = manager.plugin_distribution(info.plugin)
    return {"kind": kind, "name": info.name, "plugin": info.plugin,
            "distribution": dist[0] if dist else None, "version": dist[1] if dist else None}


def _used_components(config: MXTConfig) -> list[dict[str, Any]]:
    model = config.model
    used = [_component_record("generators", model.generator.name)]
    used += [_component_record("image_encoders", getattr(model, slot).name)
             for slot in ENCODER_SLOTS if getattr(model, slot) is not None]
    used += [_component_record("fusions", spec.name) for spec in model.fusions]
    if config.extraction.canonicalizer is not None:
        used.append(_component_record("canonicalizers", config.extraction.canonicalizer.name))
    return used


def save_folder(directory: Path, saved: SavedModel) -> None:
    """Write the model files into ``directory`` (other entries, e.g. checkpoints, are kept).

    Files are written aside and moved in; the ``.complete`` marker is written last."""
    import timm
    import transformers

    config, model, metadata, normalizers = saved.config, saved.model, saved.metadata, saved.normalizers
    with staged_update(Path(directory), MODEL_FILES) as staging:
        write_json(staging / CONFIG_FILE, {
            "format_version": FORMAT_VERSION,
            "mxt_sdk_version": __version__,
            "config": config.model_dump(mode="json"),
            "components": _used_components(config),
            "component_states": model.export_states(),
            "library_versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                                 "timm": timm.__version__},
        })
        save_weights(model, staging / WEIGHTS_FILE)
        tokenizer = model.generator.tokenizer
        if tokenizer is not None:
            model.generator.save_tokenizer(staging / TOKENIZER_DIR)
        if metadata is not None:
            write_json(staging / METADATA_FILE, metadata.model_dump(mode="json"))
        write_json(staging / THRESHOLDS_FILE, saved.thresholds.model_dump(mode="json"))
        if saved.canonicalizer is not None:
            saved.canonicalizer.save(staging)
        if saved.image_prior is not None:
            saved.image_prior.save(staging)
        for prior in (saved.text_prior, saved.span_prior):
            if prior is not None:
                prior.save(staging)
        if normalizers:
            write_json(staging / NORMALIZERS_FILE, [
                {"name": n.name, "options": n.options.model_dump(mode="json"), "state": n.get_state(),
                 **{k: v for k, v in _component_record("normalizers", n.name).items() if k != "name"}}
                for n in normalizers])
        write_checksums(staging)  # over every file written above; the card below is not covered
        write_card(staging, saved.card or ModelCard(), config, metadata)


@contextlib.contextmanager
def _damaged(path: Path, field: str | None = None) -> Iterator[None]:
    """Turn any failure to read ``path`` (its ``field``) into a ConfigError that names them."""
    try:
        yield
    except MXTError:
        raise
    except Exception as exc:  # noqa: BLE001 (any parse/shape/IO failure of a damaged file)
        reason = describe_validation_errors(exc) if hasattr(exc, "errors") else f"{type(exc).__name__}: {exc}"
        where = f"{path}, field {field!r}" if field else str(path)
        raise ConfigError(f"damaged model folder: {where}: {reason}. Save the model again or restore the "
                          "folder from a copy.") from None


def _read_part(path: Path) -> Any:
    """A JSON file of the folder, with errors naming it."""
    with _damaged(path):
        return read_json(path)


def _field(data: Any, field: str, path: Path) -> Any:
    if not isinstance(data, dict) or field not in data:
        raise ConfigError(f"damaged model folder: {path} has no field {field!r}. Save the model again.")
    return data[field]


def _check_installed(components: list[dict[str, Any]], where: Path) -> None:
    for record in components:
        try:
            manager.get_component(record["kind"], record["name"])
        except KeyError:
            source = record.get("distribution") or f"the plugin {record.get('plugin')!r}"
            raise PluginNotInstalledError(
                f"{where} needs the {manager.KINDS[record['kind']].label} {record['name']!r} from plugin "
                f"{record.get('plugin')!r}, which is not installed here (or is blocked by "
                f"MXT_DISABLE_PLUGINS). Install {source} and load again."
            ) from None


def _load_normalizers(path: Path) -> list[Normalizer]:
    if not path.is_file():
        return []
    records = read_json(path)
    _check_installed(records, path)
    normalizers = []
    for record in records:
        normalizer = manager.create("normalizers", record["name"], record["options"])
        normalizer.set_state(record["state"])
        normalizers.append(normalizer)
    return normalizers


def load_folder(directory: Path) -> SavedModel:
    """Rebuild config, model (weights loaded, nothing downloaded), metadata and fitted normalizers."""
    directory = Path(directory)
    config_path = directory / CONFIG_FILE
    if not config_path.is_file():
        raise ConfigError(f"{str(directory)!r} is not a saved mxt_sdk model: it has no {CONFIG_FILE}.")
    if not is_complete(directory):
        raise ConfigError(
            f"{str(directory)!r} is an incomplete model folder (its .complete marker is missing: a save "
            "was interrupted). Save the model again, or restore the folder from a copy."
        )
    saved = _read_part(config_path)
    if _field(saved, "format_version", config_path) != FORMAT_VERSION:
        raise ConfigError(f"{config_path} has format_version {saved['format_version']!r}; "
                          f"this mxt_sdk reads version {FORMAT_VERSION}.")
    with _damaged(config_path, "components"):
        _check_installed(_field(saved, "components", config_path), config_path)
    with _damaged(config_path, "config"):
        config = MXTConfig.model_validate(_field(saved, "config", config_path))
    with _damaged(config_path, "component_states"):
        model = MXTModel(config.model, saved=_field(saved, "component_states", config_path))
    if (directory / TOKENIZER_DIR).is_dir():
        with _damaged(directory / TOKENIZER_DIR):
            model.generator.load_tokenizer(directory / TOKENIZER_DIR)
    if not (directory / WEIGHTS_FILE).is_file():
        raise ConfigError(f"damaged model folder: {directory / WEIGHTS_FILE} is missing. Save the model again.")
    with _damaged(directory / WEIGHTS_FILE):
        load_model(model, str(directory / WEIGHTS_FILE), strict=True)
    metadata = None
    if (directory / METADATA_FILE).is_file():
        with _damaged(directory / METADATA_FILE):
            metadata = CatalogMetadata.model_validate(_read_part(directory / METADATA_FILE))
    canonicalizer = None
    spec = config.extraction.canonicalizer
    if spec is not None and (directory / CANONICALIZER_DIR).is_dir():
        with _damaged(directory / CANONICALIZER_DIR):
            canonicalizer = manager.create("canonicalizers", spec.name, spec.options)
            canonicalizer.load(directory)
    thresholds = Thresholds()
    if (directory / THRESHOLDS_FILE).is_file():
        with _damaged(directory / THRESHOLDS_FILE):
            thresholds = Thresholds.model_validate(_read_part(directory / THRESHOLDS_FILE))
    with _damaged(directory / NORMALIZERS_FILE):
        normalizers = _load_normalizers(directory / NORMALIZERS_FILE)
    with _damaged(directory / prior_files.WEIGHTS_FILE):
        image_prior = ImageValuePrior.load(directory)
    with _damaged(directory / text_prior_files.WEIGHTS_FILE):
        text_prior = TextValuePrior.load(directory)
    with _damaged(directory / span_prior_files.WEIGHTS_FILE):
        span_prior = SpanPrior.load(directory)
    with _damaged(directory / FACTS_FILE):
        card = ModelCard.load(directory)
    return SavedModel(config, model, metadata, normalizers, thresholds, canonicalizer, image_prior, card, text_prior,
                      span_prior)
