"""``mxt extract``: stream predictions for a product file into JSONL, one line per (product, attribute)."""
from __future__ import annotations

import json
import time
from pathlib import Path

import click
from mxt_sdk import progress
from mxt_sdk.cli import exits
from mxt_sdk.cli.common import command_options
from mxt_sdk.data.readers import read_products
from mxt_sdk.extractor import Extractor


@click.command()
@click.option("--model", "model_dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="Model folder written by `mxt train` / save_pretrained.")
@click.option("--input", "input_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Products in any registered reader format.")
@click.option("--output", required=True, type=click.Path(dir_okay=False), help="JSONL file of predictions.")
@click.option("--attributes", help="Comma-separated attributes to ask of every product "
                                   "(default: those training saw for each product type).")
@click.option("--batch-size", type=int, help="Examples per generation batch.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), help="Where to run the model.")
@click.option("--images", "image_root", type=click.Path(exists=True, file_okay=False),
              help="Folder relative image paths resolve under (default: the input file's folder).")
@click.option("--dtype", type=click.Choice(["auto", "fp32", "bf16", "int8"]),
              help="Numeric mode (default: the model config's extraction.dtype, i.e. auto: bf16 on CUDA, "
                   "fp32 on CPU). bf16 and int8 are faster and may change a few answers; see docs/extraction.md.")
@click.option("--reader", help="Force a reader instead of detecting the format.")
@click.option("--on-image-error", type=click.Choice(["error", "text_only"]), default="error", show_default=True,
              help="For a product whose image cannot be read: error rows, or answer from the text.")
@command_options
def extract(model_dir, input_path, output, attributes, batch_size, device, image_root, dtype, reader,
            on_image_error) -> None:
    """Extract attribute values for every product of INPUT into OUTPUT.

    Every requested (product, attribute) gets exactly one output line; a bad record or image gives
    lines whose "error" says why, and the job goes on. Exit status 0 when every pair was answered,
    4 when some lines carry an error (counted in the summary), 3 when no pair could be answered.
    """
    extractor = Extractor.from_pretrained(model_dir, device=device)
    asked = [a.strip() for a in attributes.split(",") if a.strip()] if attributes else None
    records = read_products(input_path, reader)
    root = image_root if image_root is not None else Path(input_path).parent
    rows = errors = 0
    started = time.perf_counter()
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    with open(output, "w", encoding="utf-8") as handle, progress.bar(unit="row", desc="Extracting") as bar:
        for prediction in extractor.iter_extract(records, asked, batch_size=batch_size, image_root=root,
                                                 on_image_error=on_image_error, dtype=dtype):
            handle.write(json.dumps(prediction.model_dump(), ensure_ascii=False) + "\n")
            rows += 1
            errors += prediction.error is not None
            bar.update(1)
    seconds = time.perf_counter() - started
    summary = {"rows": rows, "errors": errors, "answered": rows - errors,
               "truncated_inputs": extractor.last_run_stats.get("truncated_inputs", 0), "seconds": round(seconds, 2),
               "rows_per_second": round(rows / seconds, 2) if seconds else None, "output": str(output)}
    click.echo(json.dumps(summary, indent=2))
    exits.finish(errors, rows)
