"""``mxt train``: fine-tune a model on catalog data; re-running with the same --output resumes."""
from __future__ import annotations

import json
from pathlib import Path

import click

from mxt_sdk.cli.common import command_options, config_help, device_option, set_option
from mxt_sdk.config_overrides import apply_overrides
from mxt_sdk.extractor import Extractor
from mxt_sdk.training.layout import default_run_dir


@click.command()
@click.option("--config", "config_path", required=True, help=config_help())
@click.option("--train", "train_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Training data in any registered reader format.")
@click.option("--val", "val_path", type=click.Path(exists=True, dir_okay=False), help="Validation data.")
@click.option("--output", required=True, type=click.Path(file_okay=False),
              help="Model folder to write: only what extraction needs.")
@click.option("--run-dir", type=click.Path(file_okay=False),
              help="Run folder for checkpoints, caches, logs and metrics (default: OUTPUT.run beside OUTPUT); "
                   "a re-run with the same one resumes.")
@click.option("--max-steps", type=int, help="Stop after this many optimizer steps (overrides epochs).")
@click.option("--epochs", type=float, help="Number of passes over the training data.")
@click.option("--batch-size", type=int, help="Examples per step per process.")
@click.option("--images", "image_root", type=click.Path(exists=True, file_okay=False),
              help="Folder that relative image paths are resolved under (default: the data file's folder).")
@click.option("--reader", help="Force a reader instead of detecting the format (see `mxt plugins`).")
@click.option("--seed", type=int, help="Seed of the initial weights, data order and dropout (training.seed).")
@click.option("--force-resume", is_flag=True,
              help="Resume the run in the run folder even though it was made with another config or other data.")
@device_option("the config's training.device")
@set_option
@command_options
def train(config_path, train_path, val_path, output, run_dir, max_steps, epochs, batch_size, image_root, reader,
          seed, force_resume, device, overrides) -> None:
    """Train on TRAIN (distant supervision: catalog values are the labels) and save to OUTPUT.

    --set overrides apply first, then --seed, --max-steps, --epochs, --batch-size and --device (training.device);
    the values used are recorded in OUTPUT/config.json."""
    options = {"seed": seed, "max_steps": max_steps, "epochs": epochs, "batch_size": batch_size, "device": device}
    options = [f"training.{key}={value}" for key, value in options.items() if value is not None]
    extractor = Extractor.from_config(apply_overrides(config_path, [*overrides, *options]))
    result = extractor.fit(train_path, val_path, output_dir=output, image_root=image_root, reader=reader,
                           run_dir=run_dir, force_resume=force_resume)
    run = Path(run_dir) if run_dir else default_run_dir(output)
    click.echo(json.dumps({"output": str(Path(output).resolve()), "run_dir": str(run.resolve()),
                           **result.__dict__}, indent=2))
