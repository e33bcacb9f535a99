"""``mxt evaluate`` and ``mxt calibrate``: score a model on labelled data / set its thresholds."""
from __future__ import annotations

import json
from pathlib import Path

import click

from mxt_sdk.cli import exits
from mxt_sdk.cli.common import command_options, device_option, model_options
from mxt_sdk.evaluation.prior_weight import PRIOR_WEIGHTS
from mxt_sdk.evaluation.thresholds import DEFAULT_MIN_SUPPORT
from mxt_sdk.extractor import Extractor

_data = click.option("--data", required=True, type=click.Path(exists=True, dir_okay=False),
                     help="Labelled products in any registered reader format.")
_precision = click.option("--precision", default=0.9, show_default=True, type=click.FloatRange(0, 1),
                          help="Target precision for recall@P / calibration.")
_images = click.option("--images", "image_root", type=click.Path(exists=True, file_okay=False),
                       help="Folder relative image paths resolve under (default: the data file's folder).")
_reader = click.option("--reader", help="Force a reader instead of detecting the format.")
_batch = click.option("--batch-size", type=int, help="Examples per generation batch.")
_device = device_option("the model config's extraction.device")


@click.command()
@model_options
@_data
@click.option("--output", required=True, type=click.Path(dir_okay=False),
              help="report.json to write; predictions, Markdown and plots go beside it.")
@_precision
@_images
@_reader
@_batch
@_device
@command_options
def evaluate(model, revision, data, output, precision, image_root, reader, batch_size, device) -> None:
    """Evaluate MODEL on DATA: per-pair P/R/F1, recall@P, zero-shot and value-absent slices.

    Beside OUTPUT: the predictions (JSONL), a Markdown summary, PR-curve PNGs and a self-contained
    HTML page with a gallery of the products (OUTPUT with .html). The figures also go into the model
    card (README.md) of MODEL when it is a local folder. Exit status 4 when some rows have an error,
    3 when all do."""
    extractor = Extractor.from_pretrained(model, revision=revision, device=device)
    report = extractor.evaluate(data, precision=precision, output=output, image_root=image_root, reader=reader,
                                batch_size=batch_size)
    _update_card(extractor)
    click.echo(Path(output).with_suffix(".md").read_text(encoding="utf-8"))
    click.echo(f"Report: {output} (micro F1 {report['micro']['f1']:.3f}, "
               f"macro recall@{precision:.0%}P {report['macro']['recall_at_p']:.3f}); "
               f"open {Path(output).with_suffix('.html')} in a browser to see the products")
    exits.finish(report["errors"], report["rows"])


@click.command()
@model_options
@_data
@_precision
@_images
@_reader
@_batch
@_device
@click.option("--min-support", default=DEFAULT_MIN_SUPPORT, show_default=True, type=click.IntRange(1),
              help="Labelled rows a pair needs for its own threshold; fewer: pooled over its attribute or all rows.")
@click.option("--prior-weights", default=",".join(f"{w:g}" for w in PRIOR_WEIGHTS), show_default=True,
              callback=lambda ctx, param, value: _weights(value),
              help="Prior weights to try (comma-separated; 'none': keep the model's), for its image prior and then "
                   "its text prior. Used only by a model with a prior; each weight is one pass over DATA.")
@click.option("--output", "output_dir", type=click.Path(file_okay=False),
              help="Folder to save the calibrated model in (default: MODEL itself; required when MODEL is a Hub ID).")
@command_options
def calibrate(model, revision, data, precision, image_root, reader, batch_size, min_support, prior_weights, device,
              output_dir) -> None:
    """Set per-pair confidence thresholds of MODEL reaching PRECISION on DATA and, for a model with an image or
    text prior, each prior's weight (kept unless another is clearly more accurate on DATA); saved in MODEL (or
    --output), with the figures in its model card. DATA must be held out from training."""
    extractor = Extractor.from_pretrained(model, revision=revision, device=device)
    if output_dir is None and extractor.source.is_hub:
        raise click.UsageError(f"{model} is a Hub model, whose cached files are not changed: pass --output FOLDER "
                               "to save the calibrated model there.")
    extractor.calibrate(data, precision=precision, image_root=image_root, reader=reader, batch_size=batch_size,
                        min_support=min_support, prior_weights=prior_weights)
    extractor.save_pretrained(output_dir or extractor.source.folder)
    click.echo(json.dumps(extractor.calibration_summary(), indent=2))


def _update_card(extractor: Extractor) -> None:
    """Write the latest figures into the model card of a local model folder (a Hub model's cached files
    are never changed)."""
    source = extractor.source
    if source.is_hub:
        click.echo(f"Model card not updated: {source.repo_id} is a Hub model (its cached files are not changed).",
                   err=True)
        return
    extractor.save_model_card(source.folder)
    click.echo(f"Model card updated: {source.folder / 'README.md'}", err=True)


def _weights(value: str) -> tuple[float, ...] | None:
    if value.strip().casefold() == "none":
        return None
    try:
        weights = tuple(float(part) for part in value.split(",") if part.strip())
    except ValueError:
        raise click.BadParameter(f"expected numbers separated by commas or 'none', got {value!r}") from None
    if not weights or min(weights) < 0:
        raise click.BadParameter(f"expected one or more weights of at least 0, got {value!r}")
    return weights
