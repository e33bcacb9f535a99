"""``mxt demo``: train and evaluate on a built-in synthetic multimodal catalog."""
from __future__ import annotations

import click

from mxt_sdk.cli.common import setup_logging
from mxt_sdk.experiments.demo import DemoSettings, run_demo


@click.command()
@click.option("--output", default="mxt-demo", show_default=True, type=click.Path(file_okay=False),
              help="Folder for the data, models, predictions, plots and report.")
@click.option("--quick", is_flag=True, help="CI-sized run: 300 products, about 40 s of training.")
@click.option("--products", type=int, help="Training products (default 2000; 300 with --quick).")
@click.option("--minutes", type=float, help="Training time budget for both models (default 3).")
@click.option("--seed", default=0, show_default=True, type=int)
def demo(output, quick, products, minutes, seed) -> None:
    """Build a synthetic catalog, train MXT and a text-only baseline on it, evaluate, report."""
    setup_logging()
    settings = DemoSettings.quick() if quick else DemoSettings()
    settings.seed = seed
    if products:
        settings.train_products, settings.test_products = products, max(20, products // 5)
    if minutes:
        settings.seconds = minutes * 60
    click.echo(run_demo(output, settings)["summary"])
    click.echo(f"Everything is in {output}/ (report: {output}/report.md)")
