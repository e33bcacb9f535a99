"""Ablations: model variants as config transformations, and the runner that trains and evaluates each
on the same data, seed and number of training steps (a seconds cap is only a safety stop).

A variant is a function from a base config (as a plain dict, ``MXTConfig.model_dump()``) to the
variant's config, plus a one-line description; ``per-type`` also trains one model per product type
(:mod:`mxt_sdk.experiments.per_type`). :func:`run_ablation` runs the variants one after the other into one output
folder and compares them with :mod:`mxt_sdk.experiments.ablation_table`; a variant that fails is recorded with its
error and the others still run. :func:`train_and_evaluate` is the single-variant step, also used by
``mxt demo``.
"""
from __future__ import annotations

import copy
import difflib
import logging
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mxt_sdk import progress as bars
from mxt_sdk.config import MXTConfig, load_config
from mxt_sdk.data.readers import load_products
from mxt_sdk.errors import ConfigError
from mxt_sdk.experiments.ablation_table import build_table, markdown
from mxt_sdk.experiments.per_type import train_and_evaluate_per_type
from mxt_sdk.experiments.runs import AblationData, VariantRun, fit_budgeted, stop_note
from mxt_sdk.plugins import manager
from mxt_sdk.storage import write_json, write_text

__all__ = ["Variant", "VARIANTS", "DEFAULT_VARIANTS", "AblationData", "VariantRun", "get_variant",
           "variant_config", "components", "describe_data", "fit_budgeted", "train_and_evaluate", "run_ablation"]

log = logging.getLogger("mxt_sdk.ablation")

ABLATION_FILE, TABLE_FILE = "ablation.json", "ablation.md"


# --------------------------------------------------------------------------- variants
@dataclass(frozen=True)
class Variant:
    """A named config transformation. ``transform`` receives a deep copy of the base config dict and
    returns the variant's dict; it raises :class:`ConfigError` when the base config does not allow it."""

    name: str
    description: str
    transform: Callable[[dict[str, Any]], dict[str, Any]]
    per_type: bool = False


def _fusion_names(config: dict[str, Any]) -> list[str]:
    return [fusion["name"] for fusion in config["model"]["fusions"]]


def _require_fusion(config: dict[str, Any], fusion: str, variant: str) -> None:
    if fusion not in _fusion_names(config):
        present = ", ".join(_fusion_names(config)) or "none"
        raise ConfigError(f"Variant {variant!r} changes the {fusion!r} fusion, but the config has no such "
                          f"fusion (its fusions: {present}).")


def _as_configured(config: dict[str, Any]) -> dict[str, Any]:
    return config


def _mag_to_concat(config: dict[str, Any]) -> dict[str, Any]:
    _require_fusion(config, "mag", "no-mag")
    model = config["model"]
    model["fusions"] = [{"name": "concat", "options": {}} if f["name"] == "mag" else f for f in model["fusions"]]
    return config


def _without_xattn(config: dict[str, Any]) -> dict[str, Any]:
    _require_fusion(config, "xattn", "no-xattn")
    model = config["model"]
    model["fusions"] = [f for f in model["fusions"] if f["name"] != "xattn"]
    model["regional_encoder"] = None
    return config


def _text_only(config: dict[str, Any]) -> dict[str, Any]:
    config["model"].update(global_encoder=None, regional_encoder=None, fusions=[])
    config["training"]["image_prior"] = None  # it reads the image encoder
    return config


def _text_only_with_prior(config: dict[str, Any]) -> dict[str, Any]:
    """Text-only generator; the config's global image features (the regional encoder's pooled pass when
    the two slots share a network) kept for the image prior alone."""
    model = config["model"]
    encoder = model["global_encoder"] or model["regional_encoder"]
    if encoder is None or config["training"]["image_prior"] is None:
        raise ConfigError("Variant 'text-only-prior' needs a config with an image encoder and training.image_prior.")
    encoder = copy.deepcopy(encoder)
    if encoder["name"] == "timm":
        options = encoder["options"] = dict(encoder.get("options") or {})
        options.pop("grid", None)
        options["pool"] = True
    elif encoder["name"] == "xception":
        raise ConfigError("Variant 'text-only-prior' needs a global (pooled) encoder; the config's only encoder is "
                          "the regional 'xception'.")
    model.update(global_encoder=encoder, regional_encoder=None, fusions=[])
    return config


def _without_prior(config: dict[str, Any]) -> dict[str, Any]:
    config["training"]["image_prior"] = None
    return config


def _free_generation(config: dict[str, Any]) -> dict[str, Any]:
    """No known-value chooser, no span chooser, no prior: every answer is generated."""
    config["extraction"].update(choose_among_known=0, choose_text_span=None)
    return _without_prior(config)


def _with_generator(name: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def transform(config: dict[str, Any]) -> dict[str, Any]:
        manager.get_component("generators", name)  # not installed: the error lists the generators there are
        config["model"]["generator"]["name"] = name
        return config

    return transform


VARIANTS: dict[str, Variant] = {v.name: v for v in (
    Variant("mxt", "the config as given (MXT: MAG + cross-attention)", _as_configured),
    Variant("no-mag", "the 'mag' fusion replaced by 'concat' (image vector as an extra input token)",
            _mag_to_concat),
    Variant("no-xattn", "without the 'xattn' cross-attention fusion and the regional image encoder",
            _without_xattn),
    Variant("mxt-no-prior", "the config as given without the image prior (the chooser stays)", _without_prior),
    Variant("mxt-generated", "the config as given, every answer generated: no known-value or span chooser, "
                             "no image prior", _free_generation),
    Variant("text-only", "no image encoders and no fusions (so no image prior; the chooser stays)", _text_only),
    Variant("text-only-prior", "text-only generator (no fusions) with the image prior on the config's frozen "
                               "pooled image vector; the chooser stays", _text_only_with_prior),
    Variant("text-only-generated", "text-only, every answer generated: no known-value or span chooser",
            lambda config: _free_generation(_text_only(config))),
    Variant("per-type", "the config as given, one model per product type (steps split by examples)",
            _as_configured, per_type=True),
    Variant("span", "baseline: generator 'span' (extractive) with the config's generator options",
            _with_generator("span")),
    Variant("classify", "baseline: generator 'classify' (closed value set) with the config's generator options",
            _with_generator("classify")),
)}
DEFAULT_VARIANTS = tuple(VARIANTS)


def get_variant(name: str) -> Variant:
    """The variant called ``name``; :class:`ConfigError` naming the known ones otherwise."""
    if name in VARIANTS:
        return VARIANTS[name]
    close = difflib.get_close_matches(name, list(VARIANTS), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ConfigError(f"No ablation variant named {name!r}.{hint} Available variants: {', '.join(VARIANTS)}.")


def variant_config(name: str, base: str | Path | dict[str, Any] | MXTConfig) -> MXTConfig:
    """The validated config of variant ``name`` built from ``base`` (path, built-in name, dict, config)."""
    variant = get_variant(name)
    return load_config(variant.transform(copy.deepcopy(load_config(base).model_dump())))


def components(config: MXTConfig) -> dict[str, str]:
    """What decides a variant's answers, for the ablation table: the generator, the fusions that read the
    photo, the known-value chooser, the span binding and the image and text priors (as configured: an image
    prior is only fitted where the training products have photos)."""
    extraction, model = config.extraction, config.model
    has_prior = config.training.image_prior is not None and (model.global_encoder or model.regional_encoder)
    return {
        "generator": model.generator.name,
        "fusions": ", ".join(f.name for f in model.fusions) or "none",
        "known-value chooser": f"<= {extraction.choose_among_known} values" if extraction.choose_among_known else "off",
        "span binding": f"pairs stating >= {extraction.choose_text_span:.0%}"
                        if extraction.choose_text_span is not None else "off",
        "image prior": "on" if has_prior and extraction.choose_among_known else "off",
        "text prior": "on" if config.training.text_prior is not None and extraction.choose_among_known else "off",
    }


# --------------------------------------------------------------------------- one variant
def train_and_evaluate(config: MXTConfig, data: AblationData, model_dir: Path, report_path: Path, *,
                       steps: int | None, max_seconds: float | None = None, seed: int, per_type: bool = False,
                       precision: float = 0.9) -> VariantRun:
    """Train ``config`` on ``data.train`` into ``model_dir`` for ``steps`` steps (``None``: as the config
    says; ``max_seconds``: safety stop) and evaluate it on ``data.test`` with :meth:`Extractor.evaluate`,
    writing ``report_path`` (+ predictions, summary, plots) beside it. ``per_type``: one model per
    product type instead (see :mod:`mxt_sdk.experiments.per_type`)."""
    if per_type:
        return train_and_evaluate_per_type(config, data, model_dir, report_path, steps=steps,
                                           max_seconds=max_seconds, seed=seed, precision=precision)
    extractor, result, train_seconds = fit_budgeted(config, data.train, model_dir, val=data.val,
                                                    image_root=data.images, steps=steps, max_seconds=max_seconds,
                                                    seed=seed)
    started = time.perf_counter()
    report = extractor.evaluate(data.test, precision=precision, output=report_path, image_root=data.images)
    extractor.save_model_card(model_dir)  # the model folder's card gets the test figures
    return VariantRun(report, report_path, result.steps, train_seconds, time.perf_counter() - started,
                      stop_note(result))


def describe_data(data: AblationData) -> dict[str, dict[str, int] | None]:
    """Per split: products, those naming an image, product types, stated values (for the table's header,
    and to show when image variants have no image to use)."""
    summary: dict[str, dict[str, int] | None] = {}
    for split, path in (("train", data.train), ("val", data.val), ("test", data.test)):
        if path is None:
            summary[split] = None
            continue
        products = load_products(path, split)
        summary[split] = {"products": len(products), "with_image": sum(p.image is not None for p in products),
                          "product_types": len({p.product_type for p in products}),
                          "stated_values": sum(v is not None for p in products for v in p.attributes.values())}
    return summary


# --------------------------------------------------------------------------- the runner
def _check_names(variants: Sequence[str], reference: str) -> list[str]:
    names = list(dict.fromkeys(variants))
    if not names:
        raise ConfigError(f"No variants to run. Available variants: {', '.join(VARIANTS)}.")
    for name in names:
        get_variant(name)
    if reference not in names:
        raise ConfigError(f"The reference variant {reference!r} is not among the variants to run "
                          f"({', '.join(names)}); add it or choose another --reference.")
    return names


def _run_one(name: str, base: MXTConfig, data: AblationData, output: Path, steps: int | None,
             max_seconds: float | None, seed: int, precision: float) -> dict[str, Any]:
    """One variant's entry of ``ablation.json``; failures become ``status: failed`` with the error."""
    variant = VARIANTS[name]
    entry: dict[str, Any] = {"description": variant.description, "status": "failed"}
    folder = output / name
    started = time.perf_counter()
    try:
        config = variant_config(name, base)
        entry["config"] = config.model_dump(mode="json")["model"]
        entry["components"] = components(config)
        run = train_and_evaluate(config, data, folder / "model", folder / "report.json", steps=steps,
                                 max_seconds=max_seconds, seed=seed, per_type=variant.per_type, precision=precision)
    except Exception as exc:  # noqa: BLE001 -- one variant's failure must not lose the others
        entry["error"] = f"{type(exc).__name__}: {exc}"
        log.warning("Variant %s failed: %s\n%s", name, entry["error"], traceback.format_exc())
    else:
        entry.update(status="ok", report=str(run.report_path.relative_to(output)), steps=run.steps,
                     train_seconds=round(run.train_seconds, 2), eval_seconds=round(run.eval_seconds, 2),
                     notes=run.notes, parts=run.parts)
        entry["_report"] = run.report
    entry["wall_seconds"] = round(time.perf_counter() - started, 2)
    return entry


def run_ablation(config: str | Path | dict[str, Any] | MXTConfig, data: AblationData, output: str | Path, *,
                 variants: Sequence[str] = DEFAULT_VARIANTS, reference: str = "text-only",
                 steps: int | None = 300, max_seconds: float | None = None, seed: int = 0,
                 precision: float = 0.9, progress: bool = True) -> dict[str, Any]:
    """Train and evaluate each of ``variants`` on ``data`` with the same ``seed`` and ``steps`` optimizer
    steps each (``None``: as the config says), then compare them against ``reference``. The variants
    see the same examples in the same order; ``max_seconds`` only stops a variant early (noted in its
    entry), and each entry records its steps and wall-clock seconds.

    Writes ``<output>/<variant>/model/`` (the model folder) and ``<output>/<variant>/report.json``
    (+ predictions, summary, plots) per variant, and ``ablation.json`` (after every variant, so an
    interruption keeps what is done) and ``ablation.md``. Returns the ``ablation.json`` content with
    the Markdown table under ``"markdown"``. ``progress=False`` turns the training bars off. Unknown variant names, a reference outside ``variants`` or
    an ``output`` that already holds an ablation are errors before anything runs.
    """
    names = _check_names(variants, reference)
    base = load_config(config)
    output = Path(output)
    if (output / ABLATION_FILE).exists():
        raise ConfigError(f"{output} already holds an ablation ({ABLATION_FILE}); choose a new output "
                          "folder or delete it (models there would otherwise resume their old runs).")
    output.mkdir(parents=True, exist_ok=True)
    settings = {"train": str(data.train), "val": str(data.val) if data.val else None, "test": str(data.test),
                "images": str(data.images) if data.images else None, "variants": names,
                "reference": reference, "steps_per_variant": steps, "max_seconds_per_variant": max_seconds,
                "seed": seed, "precision": precision,
                "descriptions": {name: get_variant(name).description for name in names}}
    result: dict[str, Any] = {"settings": settings, "data": describe_data(data), "variants": {}}
    for number, name in enumerate(names, 1):
        log.info("Variant %d of %d, %s: %s (%s training steps, seed %d)", number, len(names), name,
                 VARIANTS[name].description, "config's" if steps is None else steps, seed)
        with bars.stage(f"variant {number}/{len(names)}: {name}"), bars.switched(progress):
            result["variants"][name] = _run_one(name, base, data, output, steps, max_seconds, seed, precision)
        entry = result["variants"][name]
        log.info("Variant %s: %s in %.0f s", name, entry["status"], entry["wall_seconds"])
        result["table"] = build_table(result["variants"], reference, precision)
        write_json(output / ABLATION_FILE, _public(result))
    result["markdown"] = markdown(_public(result))
    write_text(output / TABLE_FILE, result["markdown"])
    return _public(result)


def _public(result: dict[str, Any]) -> dict[str, Any]:
    """``result`` without the in-memory reports (they are in each variant's report.json)."""
    variants = {name: {k: v for k, v in entry.items() if k != "_report"} for name, entry in result["variants"].items()}
    return {**result, "variants": variants}
