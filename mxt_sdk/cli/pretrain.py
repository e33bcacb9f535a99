"""``mxt pretrain``: self-supervised pretraining of the generator on unlabeled catalog text;
re-running with the same --output resumes."""
from __future__ import annotations

import json

import click

from mxt_sdk.cli.common import command_options, config_help, device_option, set_option
from mxt_sdk.config_overrides import apply_overrides
from mxt_sdk.training.pretrain import CHECKPOINT_EVERY, DEFAULT_STEPS, pretrain as run_pretraining
from mxt_sdk.training.span_corruption import OBJECTIVES


@click.command()
@click.option("--input", "inputs", required=True, multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Product file in any reader format, or a .txt file with one text per line; repeatable.")
@click.option("--output", required=True, type=click.Path(file_okay=False),
              help="Folder to write the pretrained generator to (checkpoints and metrics go inside it).")
@click.option("--config", "config_path", default="tiny-cpu", show_default=True,
              help=config_help("Config whose generator is pretrained (its size; training section: lr, "
                               "warm-up, batch)"))
@click.option("--steps", type=click.IntRange(min=1), default=DEFAULT_STEPS, show_default=True,
              help="Optimizer steps; the learning-rate schedule follows them.")
@click.option("--batch-size", type=click.IntRange(min=1), help="Texts per step (default: the config's).")
@click.option("--seed", type=int, help="Seed of the initial weights, data order and noise (default: the config's).")
@click.option("--vocab-size", type=click.IntRange(min=1),
              help="Size of the tokenizer trained on the text, 100 sentinel tokens included (default: the "
                   "config's tokenizer_vocab_size).")
@click.option("--objective", type=click.Choice(OBJECTIVES), default="reconstruct", show_default=True,
              help="Target of a noised text: the whole text (reconstruct) or only its dropped spans (span, T5).")
@click.option("--max-seconds", type=float, help="Safety stop for this invocation; run again to go on.")
@click.option("--checkpoint-every", type=click.IntRange(min=1), default=CHECKPOINT_EVERY, show_default=True,
              help="Steps between checkpoints (a re-run resumes from the latest).")
@click.option("--reader", help="Force a reader instead of detecting each file's format (see `mxt plugins`).")
@device_option("the config's training.device")
@set_option
@command_options
def pretrain(inputs, output, config_path, steps, batch_size, seed, vocab_size, objective, max_seconds,
             checkpoint_every, reader, device, overrides) -> None:
    """Pretrain the generator on the text of INPUT files (no labels needed) and write it to OUTPUT.

    A training config then starts from it with
    `generator: {name: t5, options: {from_pretrained: OUTPUT}}`.
    """
    result = run_pretraining(inputs, output, apply_overrides(config_path, overrides), steps=steps, batch_size=batch_size, seed=seed,
                             vocab_size=vocab_size, objective=objective, max_seconds=max_seconds, reader=reader,
                             checkpoint_every=checkpoint_every, device=device)
    click.echo(json.dumps(result.__dict__, indent=2))
