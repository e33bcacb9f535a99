"""``mxt extract``: stream predictions for a product file into JSONL, one line per (product, attribute)."""
from __future__ import annotations

import json
import time
from itertools import chain, islice
from pathlib import Path

import click
from mxt_sdk import progress
from mxt_sdk.cli import exits
from mxt_sdk.cli.common import command_options, device_option, model_options
from mxt_sdk.data.readers import read_products
from mxt_sdk.extractor import Extractor
from mxt_sdk.faults import crash_point
from mxt_sdk.inference.engine import make_requests
from mxt_sdk.inference.resume import cut, resume_point


@click.command()
@model_options
@click.option("--input", "input_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Products in any registered reader format.")
@click.option("--output", required=True, type=click.Path(dir_okay=False), help="JSONL file of predictions.")
@click.option("--attributes", help="Comma-separated attributes to ask of every product "
                                   "(default: those training saw for each product type).")
@click.option("--batch-size", type=int, help="Examples per generation batch.")
@device_option("the model config's extraction.device")
@click.option("--images", "image_root", type=click.Path(exists=True, file_okay=False),
              help="Folder relative image paths resolve under (default: the input file's folder).")
@click.option("--dtype", type=click.Choice(["auto", "fp32", "bf16", "int8"]),
              help="Numeric mode (default: the model config's extraction.dtype, i.e. auto: bf16 on CUDA, "
                   "fp32 on CPU). bf16 and int8 are faster and may change a few answers; see docs/extraction.md.")
@click.option("--reader", help="Force a reader instead of detecting the format.")
@click.option("--on-image-error", type=click.Choice(["error", "text_only"]), default="error", show_default=True,
              help="For a product whose image cannot be read: error rows, or answer from the text.")
@click.option("--allow-urls", is_flag=True,
              help="Download http(s) image URLs (public addresses only; see docs/extraction.md#image-safety).")
@click.option("--threshold", type=click.FloatRange(0, 1),
              help="Accept answers whose confidence reaches this number instead of the calibrated thresholds.")
@click.option("--overwrite", is_flag=True, help="Replace OUTPUT if it exists.")
@click.option("--resume", is_flag=True,
              help="Continue an interrupted extraction into OUTPUT: keep its whole rows, append the rest.")
@command_options
def extract(model, revision, input_path, output, attributes, batch_size, device, image_root, dtype, reader,
            on_image_error, allow_urls, threshold, overwrite, resume) -> None:
    """Extract attribute values for every product of INPUT into OUTPUT.

    Every requested (product, attribute) gets exactly one output line; a bad record or image gives
    lines whose "error" says why, and the job goes on. An existing OUTPUT is never replaced without
    --overwrite; --resume keeps its whole rows and appends the products not yet written. Exit status 0
    when every pair was answered, 4 when some lines carry an error (counted in the summary), 3 when no
    pair could be answered.
    """
    if overwrite and resume:
        raise click.UsageError("--overwrite and --resume exclude each other.")
    if Path(output).exists() and not (overwrite or resume):
        raise click.UsageError(f"{output} exists; pass --overwrite to replace it, or --resume to continue it.")
    extractor = Extractor.from_pretrained(model, revision=revision, device=device)
    if allow_urls:
        extractor.config.extraction.allow_urls = True
    asked = [a.strip() for a in attributes.split(",") if a.strip()] if attributes else None
    root = image_root if image_root is not None else Path(input_path).parent
    chunk = batch_size or extractor.config.extraction.batch_size
    skip = 0
    if resume and Path(output).exists():
        requests = make_requests(read_products(input_path, reader), asked, extractor.metadata)
        skip, offset = resume_point(Path(output), requests, chunk)
        cut(Path(output), offset)
        click.echo(f"Resuming after {skip} records ({offset} bytes of {output} kept).", err=True)
    records = iter(read_products(input_path, reader))
    records = chain(list(islice(records, 1)), records)  # an unreadable file fails here, before OUTPUT opens
    rows = errors = 0
    started = time.perf_counter()
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    mode = "a" if resume else "w"
    with open(output, mode, encoding="utf-8") as handle, progress.bar(unit="row", desc="Extracting") as bar:
        for prediction in extractor.iter_extract(records, asked, batch_size=chunk, image_root=root,
                                                 on_image_error=on_image_error, dtype=dtype, skip_records=skip,
                                                 threshold=threshold):
            handle.write(json.dumps(prediction.model_dump(), ensure_ascii=False) + "\n")
            crash_point("extract.row")
            rows += 1
            errors += prediction.error is not None
            bar.update(1)
    seconds = time.perf_counter() - started
    summary = {"resumed_after_records": skip, "rows": rows, "errors": errors, "answered": rows - errors,
               "truncated_inputs": extractor.last_run_stats.get("truncated_inputs", 0), "seconds": round(seconds, 2),
               "rows_per_second": round(rows / seconds, 2) if seconds else None, "output": str(output)}
    click.echo(json.dumps(summary, indent=2))
    exits.finish(errors, rows)
