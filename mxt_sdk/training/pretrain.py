"""Self-supervised pretraining of the generator on unlabeled catalog text (``mxt pretrain``).

texts (:mod:`mxt_sdk.data.texts`) -> a tokenizer trained on them, plus 100 sentinel tokens ->
token ids cut to ``model.max_input_tokens`` -> per step, ``batch_size`` texts noised with
:mod:`mxt_sdk.training.span_corruption` -> the generator's own ``embed -> encode -> loss`` (no
image, no fusion) -> AdamW, linear warm-up and decay by steps -> the generator written as a folder
its ``from_pretrained`` option loads (:meth:`~mxt_sdk.Generator.export_pretrained`).

Which texts a step uses and how they are noised depend only on the seed and the step number, so a
run resumed from a checkpoint (:mod:`mxt_sdk.training.checkpoints`) goes on exactly as the
uninterrupted run would have.
"""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mxt_sdk.config import MXTConfig, load_config
from mxt_sdk.data.prompt import CONTEXT_MARKER, QUESTION_MARKER
from mxt_sdk.data.texts import check_tokenizer, read_texts
from mxt_sdk.devices import mixed_precision_for, resolve_device
from mxt_sdk.errors import ConfigError
from mxt_sdk.evaluation.plots import line_plot
from mxt_sdk.model.numerics import autocast
from mxt_sdk.plugins import manager
from mxt_sdk.plugins.components import Generator
from mxt_sdk.storage import staged_update, write_json
from mxt_sdk.training import checkpoints
from mxt_sdk.training.budget_bar import BudgetBar
from mxt_sdk.training.length_pools import epoch_order, length_sorted_batches
from mxt_sdk.training.span_corruption import OBJECTIVES, corrupt
from mxt_sdk.training.trainer import linear_warmup_decay

__all__ = ["pretrain", "PretrainResult", "SENTINELS", "DEFAULT_STEPS"]

log = logging.getLogger("mxt_sdk.training")

SENTINELS = [f"<extra_id_{i}>" for i in range(100)]  # T5's names; ids follow the trained pieces
DEFAULT_STEPS = 5000  # about 24 CPU minutes at mxt-cpu's size, batch 32, 50k titles (docs/training.md)
CHECKPOINT_EVERY = 200
METRICS_FILE, SUMMARY_FILE, CURVE_FILE = "metrics.jsonl", "pretrain.json", "loss.png"
NOISE_DENSITY, MEAN_SPAN = 0.15, 3.0
POOL_BATCHES = 50  # batches whose texts are grouped by length (Batches)


@dataclass
class PretrainResult:
    """What a run did; also written to ``<output>/pretrain.json`` with the settings."""

    output: str
    steps: int
    planned_steps: int
    resumed_from_step: int | None
    texts: int
    vocabulary: int
    pieces_per_word: float | None
    final_loss: float | None
    steps_per_second: float
    stopped_by_time: bool


def build_generator(config: MXTConfig, vocab_size: int | None) -> Generator:
    """The config's generator, its ``tokenizer_vocab_size`` (``vocab_size`` or the config's) made
    room in for the sentinels, so that the vocabulary with them is that size."""
    spec = config.model.generator
    options = dict(spec.options)
    fields = manager.get_component("generators", spec.name).cls.Options.model_fields
    if "tokenizer_vocab_size" not in fields and vocab_size is not None:
        raise ConfigError(f"Generator {spec.name!r} has no tokenizer_vocab_size option; drop --vocab-size.")
    if "tokenizer_vocab_size" in fields:
        vocab_size = vocab_size or options.get("tokenizer_vocab_size") or fields["tokenizer_vocab_size"].default
        options["tokenizer_vocab_size"] = max(vocab_size - len(SENTINELS), 1)
    try:
        return manager.create("generators", spec.name, options)
    except ConfigError as exc:
        raise ConfigError(f"{exc} (pretraining keeps {len(SENTINELS)} of the vocabulary's {vocab_size} ids for "
                          "sentinel tokens)" if vocab_size else str(exc)) from None


def _prepare_tokenizer(generator: Generator, texts: list[str], latest: Path | None) -> float | None:
    """The checkpoint's tokenizer when resuming; else one trained on ``texts`` when the generator
    learns its tokenizer from data. Sentinels are added either way. Returns pieces per word."""
    ratio = None
    if latest is not None:
        generator.load_tokenizer(latest / "tokenizer")
    elif generator.needs_tokenizer_training:
        markers = [f"{QUESTION_MARKER} {CONTEXT_MARKER}"] * max(1, len(texts) // 20)  # the prompt's words
        generator.train_tokenizer(iter(texts + markers))
        ratio = check_tokenizer(generator.tokenizer, texts)
        log.info("Trained a %d-piece tokenizer: %.2f pieces per word", len(generator.tokenizer), ratio)
    generator.add_special_tokens(SENTINELS)
    return ratio


class Batches:
    """Step ``s``'s batch, a pure function of the step. Texts are drawn from an endless stream of
    seeded epoch shuffles in pools of ``POOL_BATCHES`` batches; a pool's texts are sorted by length
    and cut into batches, which its steps take in a seeded order (texts of a batch have about the
    same length, so little of it is padding; :mod:`mxt_sdk.training.length_pools`, as fine-tuning's). Each text is noised with a generator seeded by ``(seed, s)``."""

    def __init__(self, sequences: Sequence[list[int]], batch_size: int, seed: int, sentinels: list[int],
                 eos_id: int, pad_id: int, objective: str):
        self.sequences, self.batch_size, self.seed = sequences, batch_size, seed
        self.sentinels, self.eos_id, self.pad_id, self.objective = sentinels, eos_id, pad_id, objective
        self._order: tuple[int, np.ndarray] | None = None
        self._pool: tuple[int, list[list[list[int]]]] | None = None

    def _text(self, position: int) -> list[int]:
        epoch, index = divmod(position, len(self.sequences))
        if self._order is None or self._order[0] != epoch:
            self._order = (epoch, epoch_order(self.seed, epoch, len(self.sequences)))
        return self.sequences[self._order[1][index]]

    def texts(self, step: int) -> list[list[int]]:
        """The token ids of step ``step``'s texts, before noising."""
        pool, slot = divmod(step, POOL_BATCHES)
        if self._pool is None or self._pool[0] != pool:
            size = POOL_BATCHES * self.batch_size
            texts = [self._text(pool * size + i) for i in range(size)]
            self._pool = (pool, length_sorted_batches(texts, [len(t) for t in texts], self.batch_size,
                                                      np.random.default_rng([self.seed, 2, pool])))
        return self._pool[1][slot]

    def __call__(self, step: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, 1, step])
        pairs = [corrupt(text, self.sentinels, self.eos_id, rng, self.objective, NOISE_DENSITY, MEAN_SPAN)
                 for text in self.texts(step)]
        return {"input_ids": _pad([p[0] for p in pairs], self.pad_id), "labels": _pad([p[1] for p in pairs], -100)}


def _pad(rows: list[list[int]], value: int) -> torch.Tensor:
    out = torch.full((len(rows), max(map(len, rows))), value, dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, :len(row)] = torch.tensor(row, dtype=torch.long)
    return out


def _tokenized(tokenizer, texts: list[str], limit: int) -> list[list[int]]:
    """Token ids of each text (no EOS), cut to ``limit``; texts with no token are left out."""
    ids = []
    for start in range(0, len(texts), 1000):
        ids += [row[:limit] for row in tokenizer(texts[start:start + 1000], add_special_tokens=False)["input_ids"]]
    return [row for row in ids if row]


def _step_loss(generator: Generator, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    input_ids, labels = batch["input_ids"], batch["labels"]
    mask = (input_ids != generator.tokenizer.pad_token_id).long()
    hidden = generator.encode(generator.embed(input_ids), mask)
    return generator.loss(hidden, mask, labels, input_ids=input_ids)


def _append_metrics(output: Path, record: dict[str, Any]) -> None:
    with open(output / METRICS_FILE, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")


def _metrics_until(output: Path, step: int) -> list[dict[str, Any]]:
    """The metrics records up to ``step``; later ones (steps a resumed run redoes) are dropped from the file."""
    path = output / METRICS_FILE
    if not path.is_file():
        return []
    records = [r for r in map(json.loads, path.read_text(encoding="utf-8").splitlines()) if r["step"] <= step]
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return records


def pretrain(inputs: Sequence[str | Path], output: str | Path, config: str | Path | dict | MXTConfig = "tiny-cpu", *,
             steps: int = DEFAULT_STEPS, batch_size: int | None = None, seed: int | None = None,
             vocab_size: int | None = None, objective: str = "reconstruct", max_seconds: float | None = None,
             reader: str | None = None, checkpoint_every: int = CHECKPOINT_EVERY, device: str | None = None,
             show_progress: bool = True) -> PretrainResult:
    """Pretrain ``config``'s generator on the texts of ``inputs`` for ``steps`` steps and write it
    to ``output``; re-running with the same ``output`` resumes from its latest checkpoint.

    ``batch_size``, ``seed``, the learning rate and its warm-up, weight decay and clipping come from
    the config's ``training`` section unless given. ``max_seconds`` stops this invocation early
    (after a checkpoint, and the folder is still written); it does not change the schedule.
    """
    if objective not in OBJECTIVES:
        raise ConfigError(f"Unknown pretraining objective {objective!r}; choose one of {', '.join(OBJECTIVES)}.")
    if steps < 1:
        raise ConfigError(f"steps must be at least 1, got {steps}.")
    config, output = load_config(config), Path(output)
    training = config.training
    batch_size, seed = batch_size or training.batch_size, training.seed if seed is None else seed
    device = resolve_device(device or training.device)
    precision = mixed_precision_for(training.mixed_precision, device)
    torch.manual_seed(seed)
    corpus = read_texts(inputs, reader)
    output.mkdir(parents=True, exist_ok=True)
    checkpoints.recover_run_folder(output)  # a crash's leftovers (see mxt_sdk.storage)
    latest = checkpoints.latest_checkpoint(output)
    generator = build_generator(config, vocab_size)
    ratio = _prepare_tokenizer(generator, corpus.texts, latest)
    tokenizer = generator.tokenizer
    sequences = _tokenized(tokenizer, corpus.texts, config.model.max_input_tokens - 1)
    log.info("Pretraining %s (%s objective) on %d texts, %.1f tokens each on average, batch %d, %d steps",
             config.model.generator.name, objective, len(sequences),
             sum(map(len, sequences)) / max(len(sequences), 1), batch_size, steps)
    batches = Batches(sequences, batch_size, seed, tokenizer.convert_tokens_to_ids(SENTINELS),
                      tokenizer.eos_token_id, tokenizer.pad_token_id, objective)

    generator.to(device).train()
    optimizer = torch.optim.AdamW(generator.parameters(), lr=training.learning_rate,
                                  weight_decay=training.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda done: linear_warmup_decay(min(done / steps, 1.0), training.warmup_ratio))
    settings = {"objective": objective, "batch_size": batch_size, "seed": seed, "noise_density": NOISE_DENSITY,
                "mean_span": MEAN_SPAN, "generator": config.model.generator.model_dump(), "inputs": corpus.files}
    state: dict[str, Any] = {"step": 0, "train_seconds": 0.0, "pieces_per_word": ratio}
    resumed_from = None
    if latest is not None:
        state = checkpoints.load_checkpoint(latest, generator, optimizer, scheduler, 0)
        resumed_from = state["step"]
        log.info("Resuming from checkpoint %s (step %d of %d)", latest.name, state["step"], steps)
    history = _metrics_until(output, state["step"])

    # max_seconds counts this invocation only, so the bar's budget starts at 0 s here
    progress = BudgetBar(steps, min(state["step"], steps), max_seconds=max_seconds, seconds_before=0.0,
                         enabled=show_progress, desc="Pretraining")
    started, seconds_before, losses, last_loss = time.perf_counter(), state["train_seconds"], [], None
    stopped_by_time, first_step = False, state["step"]
    while state["step"] < steps:
        batch = {k: v.to(device) for k, v in batches(state["step"]).items()}
        with autocast(precision, device):  # bf16 on CUDA (mixed_precision auto/bf16); else a no-op
            loss = _step_loss(generator, batch)
        loss.backward()
        if training.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(generator.parameters(), training.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        state["step"] += 1
        state["train_seconds"] = seconds_before + time.perf_counter() - started
        losses.append(float(loss.detach()))
        step = state["step"]
        stopped_by_time = max_seconds is not None and time.perf_counter() - started >= max_seconds
        if step % training.log_every == 0 or step == steps or stopped_by_time:
            record = {"step": step, "loss": sum(losses) / len(losses), "lr": scheduler.get_last_lr()[0],
                      "seconds": round(state["train_seconds"], 2)}
            history.append(record)
            _append_metrics(output, record)
            last_loss = record["loss"]
            losses = []
        elapsed = time.perf_counter() - started
        progress.update(step, elapsed, batch_size * (step - first_step) / max(elapsed, 1e-9), last_loss)
        if step % checkpoint_every == 0 or step == steps or stopped_by_time:
            _checkpoint(output, generator, optimizer, scheduler, state, training.keep_checkpoints)
        if stopped_by_time:
            log.info("Stopped after %.0f s (--max-seconds) at step %d of %d; run again to go on",
                     max_seconds, step, steps)
            break
    progress.close(state["step"])
    elapsed = time.perf_counter() - started
    result = PretrainResult(
        output=str(output.resolve()), steps=state["step"], planned_steps=steps, resumed_from_step=resumed_from,
        texts=len(sequences), vocabulary=len(tokenizer), pieces_per_word=state.get("pieces_per_word"),
        final_loss=history[-1]["loss"] if history else None,
        steps_per_second=(state["step"] - first_step) / elapsed if elapsed > 0 else 0.0,
        stopped_by_time=stopped_by_time)
    _export(output, generator, {**asdict(result), "settings": settings, "train_seconds": state["train_seconds"]})
    if history:
        line_plot([(r["step"], r["loss"]) for r in history], f"{objective} pretraining loss",
                  output / CURVE_FILE, x_label="step", y_label="loss")
    return result


def _checkpoint(output: Path, generator: Generator, optimizer, scheduler, state: dict[str, Any], keep: int) -> None:
    folder = checkpoints.checkpoint_dir(output, state["step"])
    checkpoints.save_checkpoint(folder, generator, optimizer, scheduler, dict(state), [checkpoints.rng_state()],
                                generator.save_tokenizer)
    checkpoints.prune_checkpoints(output, keep)


def _export(output: Path, generator: Generator, summary: dict[str, Any]) -> None:
    """The generator folder (its files replace those of an earlier export; checkpoints stay)."""
    with staged_update(output) as staging:
        generator.export_pretrained(staging)
        write_json(staging / SUMMARY_FILE, summary)
    log.info("Pretrained generator written to %s", output)
