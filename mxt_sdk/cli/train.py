"""``mxt train``: fine-tune a model on catalog data; re-running with the same --output resumes."""
from __future__ import annotations

import json
from pathlib import Path

import click

from mxt_sdk.cli.common import setup_logging
from mxt_sdk.extractor import Extractor


@click.command()
@click.option("--config", "config_path", required=True,
              help="Model/training YAML, or a built-in config name (tiny-cpu, mxt-base).")
@click.option("--train", "train_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Training data in any registered reader format.")
@click.option("--val", "val_path", type=click.Path(exists=True, dir_okay=False), help="Validation data.")
@click.option("--output", required=True, type=click.Path(file_okay=False),
              help="Model folder to write (checkpoints, logs and metrics go inside it).")
@click.option("--max-steps", type=int, help="Stop after this many optimizer steps (overrides epochs).")
@click.option("--epochs", type=float, help="Number of passes over the training data.")
@click.option("--batch-size", type=int, help="Examples per step per process.")
@click.option("--images", "image_root", type=click.Path(exists=True, file_okay=False),
              help="Folder that relative image paths are resolved under (default: the data file's folder).")
@click.option("--reader", help="Force a reader instead of detecting the format (see `mxt plugins`).")
def train(config_path, train_path, val_path, output, max_steps, epochs, batch_size, image_root, reader) -> None:
    """Train on TRAIN (distant supervision: catalog values are the labels) and save to OUTPUT."""
    setup_logging()
    overrides = {k: v for k, v in {"max_steps": max_steps, "epochs": epochs, "batch_size": batch_size}.items()
                 if v is not None}
    extractor = Extractor.from_config(config_path)
    result = extractor.fit(train_path, val_path, output_dir=output, image_root=image_root, reader=reader,
                           **overrides)
    click.echo(json.dumps({"output": str(Path(output).resolve()), **result.__dict__}, indent=2))
