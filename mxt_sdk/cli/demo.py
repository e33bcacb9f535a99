"""``mxt demo``: train and evaluate on a built-in synthetic multimodal catalog."""
from __future__ import annotations

import click

from mxt_sdk.cli.common import command_options, device_option
from mxt_sdk.experiments.demo import DemoSettings, run_demo


@click.command()
@click.option("--output", default="mxt-demo", show_default=True, type=click.Path(file_okay=False),
              help="Folder for the data, models, predictions, plots and report.")
@click.option("--quick", is_flag=True, help="CI-sized run: 300 products, 60 training steps per model.")
@click.option("--products", type=int, help="Training products (default 2000; 300 with --quick).")
@click.option("--steps", type=click.IntRange(min=1), help="Training steps of each model (default 600; 60 with --quick).")
@click.option("--max-minutes", type=click.FloatRange(min=0, min_open=True),
              help="Safety stop: end a model's training after this many minutes (default 10; 1.5 with --quick).")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the catalog and of both models.")
@device_option("auto")
@command_options
def demo(output, quick, products, steps, max_minutes, seed, device) -> None:
    """Build a synthetic catalog, train MXT and a text-only baseline on it, evaluate, report."""
    settings = DemoSettings.quick() if quick else DemoSettings()
    settings.seed = seed
    if device:
        settings.device = device
    if products:
        settings.train_products, settings.test_products = products, max(20, products // 5)
    if steps:
        settings.steps = steps
    if max_minutes:
        settings.max_seconds = max_minutes * 60
    click.echo(run_demo(output, settings)["summary"])
    click.echo(f"Everything is in {output}/ (report: {output}/report.md; open {output}/evaluation/report.html "
               "in a browser to see the products)")
