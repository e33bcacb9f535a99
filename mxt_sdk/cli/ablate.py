"""``mxt ablate``: train model variants on the same data and steps, evaluate each, compare them."""
from __future__ import annotations

from pathlib import Path

import click

from mxt_sdk.cli import exits
from mxt_sdk.cli.common import command_options, config_help, device_option, set_option
from mxt_sdk.config_overrides import apply_overrides
from mxt_sdk.experiments.ablation import DEFAULT_VARIANTS, VARIANTS, AblationData, run_ablation

_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)
_EPILOG = "\b\nVariants (docs/evaluation.md, section Ablations):\n" + "\n".join(
    f"  {v.name:<10} {v.description}" for v in VARIANTS.values())


@click.command(epilog=_EPILOG)
@click.option("--config", "config_path", required=True, help=config_help("Base model config"))
@click.option("--train", "train", required=True, type=_FILE, help="Training data (any reader format).")
@click.option("--test", "test", required=True, type=_FILE, help="Labelled test data every variant is scored on.")
@click.option("--val", "val", type=_FILE, help="Validation data (best checkpoint by validation loss).")
@click.option("--variants", default=",".join(DEFAULT_VARIANTS), show_default=True,
              help="Comma-separated variants to run, in order.")
@click.option("--reference", default="text-only", show_default=True,
              help="The variant the others' recall@90P improvement is measured against.")
@click.option("--steps-per-variant", "steps", default=300, show_default=True, type=click.IntRange(min=0),
              help="Optimizer steps of each variant, the same for all (0: train as the config says).")
@click.option("--max-seconds-per-variant", "max_seconds", type=click.FloatRange(min=0, min_open=True),
              help="Safety stop: end a variant's training after this many seconds (noted in the table; its "
                   "numbers are then not comparable).")
@click.option("--output", default="ablation", show_default=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the models, reports, ablation.json and ablation.md (must not hold an ablation).")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of every variant.")
@click.option("--images", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Image root for relative image paths (default: each data file's folder).")
@click.option("--precision", default=0.9, show_default=True, type=click.FloatRange(0.0, 1.0, min_open=True),
              help="Target precision of recall@P.")
@device_option("the config's training.device and extraction.device")
@set_option
@command_options
def ablate(config_path, train, test, val, variants, reference, steps, max_seconds, output, seed, images,
           precision, device, overrides) -> None:
    """Train each variant with the same data, seed and steps, evaluate it on --test, and print
    a table of recall@P improvements over --reference for the top-5/10/15 attributes by test support,
    plus absolute numbers. A failing variant is recorded in the table; the others still run (exit
    status 4; 3 when every variant failed). --set overrides apply to the base config, then --device (training
    and evaluation of every variant)."""
    if device is not None:
        overrides = [*overrides, f"training.device={device}", f"extraction.device={device}"]
    names = [name.strip() for name in variants.split(",") if name.strip()]
    result = run_ablation(apply_overrides(config_path, overrides), AblationData(train, test, val, images), output, variants=names,
                          reference=reference, steps=steps or None, max_seconds=max_seconds, seed=seed,
                          precision=precision)
    click.echo(result["markdown"])
    click.echo(f"Written: {output / 'ablation.json'}, {output / 'ablation.md'}")
    statuses = [entry["status"] for entry in result["variants"].values()]
    exits.finish(sum(status != "ok" for status in statuses), len(statuses), "variants")
