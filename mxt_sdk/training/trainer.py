"""Fine-tuning by distant supervision, on one process or many (``torchrun`` / ``accelerate launch``).

Flow: products staged on disk in Arrow chunks -> label cleaning in passes that keep only counts
(normalizer plugins, fitted on the training labels) -> example shards -> tokenizer
(trained here when the generator has none) -> the generation bound from the distinct answers
(:mod:`mxt_sdk.training.prepare`; cached in the run folder) -> an accelerate training loop over the
memory-mapped examples, each batch tokenized as it is drawn (AdamW, linear warmup and decay, gradient
accumulation, autocast on GPU) with validation loss every ``eval_every`` steps, best weights kept,
optional early stopping, and crash-safe checkpoints that ``fit`` resumes from. The catalog metadata
(pairs and values, for the saved model) is counted after the last step.
"""
from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from accelerate import Accelerator, DataLoaderConfiguration
from accelerate.utils import DistributedDataParallelKwargs, gather_object, set_seed

from mxt_sdk.config import TrainingConfig
from mxt_sdk.devices import mixed_precision_for, training_device
from mxt_sdk.images.batching import ImageLoader
from mxt_sdk.images.fetch import UrlPolicy
from mxt_sdk.training.budget_bar import BudgetBar
from mxt_sdk.images.probe import check_images_load
from mxt_sdk.training.periodic import CheckpointSchedule
from mxt_sdk.training.feature_cache import FeatureCache, build_feature_cache, encoder_digest, encoders_frozen
from mxt_sdk.training.image_prior_fit import check_image_prior
from mxt_sdk.training.priors import fit_priors
from mxt_sdk.training.layout import METRICS_FILE, SUMMARY_FILE, run_log
from mxt_sdk.training.length_pools import product_groups
from mxt_sdk.training.loaders import example_loader
from mxt_sdk.training.optimizer import training_optimizer
from mxt_sdk.training.summary import RunProfile, TrainingResult, synchronizer, timed
from mxt_sdk.plugins import manager
from mxt_sdk.storage import write_json
from mxt_sdk.training import checkpoints
from mxt_sdk.training.prepare import CLEANING_FILE, prepare_data
from mxt_sdk.training.staging import ProductTable, StagedData, stage_data
from mxt_sdk.types import Product

if TYPE_CHECKING:
    import datasets

log = logging.getLogger("mxt_sdk.training")



def linear_warmup_decay(progress: float, warmup_ratio: float) -> float:
    """Learning-rate multiplier: linear warm-up over the first ``warmup_ratio`` of the run, then linear
    decay to 0 at its end (transformers' linear schedule; ``progress`` = steps done / planned steps)."""
    if warmup_ratio > 0 and progress < warmup_ratio:
        return progress / warmup_ratio
    return max(0.0, (1.0 - progress) / max(1.0 - warmup_ratio, 1e-9))


class Trainer:
    """Trains ``extractor.model`` in place and writes the model folder to ``output``; checkpoints, the
    data caches, ``metrics.jsonl``, ``train.log`` and ``cleaning.json`` go to ``run_dir`` (default:
    ``output`` itself, the layout of folders written before the two were split)."""

    def __init__(self, extractor, config: TrainingConfig, output: Path, image_root: Path | None = None,
                 run_dir: Path | None = None):
        self.extractor, self.config, self.output = extractor, config, Path(output)
        self.run_dir = Path(run_dir) if run_dir is not None else self.output
        self.image_root = image_root
        device = training_device(config.device)
        self.accelerator = Accelerator(
            gradient_accumulation_steps=config.gradient_accumulation_steps,
            mixed_precision=mixed_precision_for(config.mixed_precision, device),
            cpu=device.type == "cpu",
            kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
            dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
        )
        self.profile = RunProfile(synchronizer(self.accelerator.device))

    # ----------------------------------------------------------------- data
    @timed("staging")
    def stage(self, train: Iterable[Product | dict[str, Any]] | str | Path,
              val: Iterable[Product | dict[str, Any]] | str | Path | None, reader: str | None = None,
              rejected_log: Path | None = None) -> StagedData:
        """Read the data once into ``<run>/cache/data`` (:mod:`mxt_sdk.training.staging`), fingerprinted
        on the way; the main process writes, the others read what it wrote."""
        with self.accelerator.main_process_first():
            if self.accelerator.is_main_process:
                return stage_data(train, val, self.run_dir, reader, rejected_log)
            return StagedData.load(self.run_dir)

    @timed("prepare")
    def _prepare(self, train: ProductTable, val: ProductTable | None) -> dict[str, Any]:
        return prepare_data(self.extractor, self.config, self.run_dir, self.accelerator, train, val)

    def _image_loader(self) -> ImageLoader:
        """Decodes the run's images under its image root, for the model's encoders."""
        extraction = self.extractor.config.extraction
        return ImageLoader(self.extractor.model.preprocessing(), self.image_root, extraction.max_image_pixels,
                           UrlPolicy.from_extraction(extraction))

    def _check_images(self, train: ProductTable) -> None:
        """Stop now, with one error, when most of the first distinct images of ``train`` do not load
        (:func:`~mxt_sdk.images.probe.check_images_load`); nothing to check for a text-only model."""
        if self.extractor.model.uses_images:
            check_images_load(self._image_loader(),
                              ((fields.get("image"), f"product {fields.get('id')!r}") for fields in train.records()))

    @timed("image_features")
    def _image_source(self, data: dict[str, Any]) -> ImageLoader | FeatureCache | None:
        """Where batches get their images from: features cached once per image when the encoders
        are frozen (``cache_image_features``), decoded pixels otherwise; None for a text-only model."""
        model = self.extractor.model
        if not model.uses_images:
            return None
        loader = self._image_loader()
        def references():  # streamed from the example shards, never a list of every example's image
            return (ref for shards in data["images"].values() for ref in shards.column("image"))

        if not (self.config.cache_image_features and encoders_frozen(model) and any(references())):
            return loader
        model.to(self.accelerator.device)
        encoder = None
        if self.config.image_cache_ray_actors:
            from mxt_sdk.training.feature_cache_ray import ray_chunk_encoder  # Ray is an optional extra

            encoder = ray_chunk_encoder(self.extractor.config, encoder_digest(model), self.image_root,
                                        self.config.image_cache_ray_actors, self.config.batch_size)
        with self.accelerator.main_process_first():
            return build_feature_cache(model, references(), loader, self.run_dir / "cache" / "image-features",
                                       batch_size=self.config.batch_size, device=self.accelerator.device,
                                       encoder=encoder)

    def _loader(self, data: dict[str, Any], split: str, shuffle: bool,
                images: ImageLoader | FeatureCache | None) -> torch.utils.data.DataLoader:
        """Batches of ``split``; with ``context_encoding: per_product`` a product's examples come together."""
        bounds = (product_groups(data["images"][split].column("product_row"))
                  if self.extractor.model.per_product else None)
        return example_loader(data[split], self.config, self.extractor.model.generator.tokenizer.pad_token_id, images,
                              self.accelerator.device, shuffle, bounds)

    # ----------------------------------------------------------------- loop pieces
    def _loss(self, model, batch) -> torch.Tensor:
        with self.accelerator.autocast():
            return model(batch["input_ids"], batch["attention_mask"], batch["labels"],
                         batch["images"], batch["image_index"])

    @torch.no_grad()
    def _validation_loss(self, model, loader) -> float:
        model.eval()
        totals = torch.zeros(2, device=self.accelerator.device)
        for batch in loader:
            tokens = (batch["labels"] != -100).sum()
            totals += torch.stack([self._loss(model, batch).float() * tokens, tokens.float()])
        model.train()
        totals = self.accelerator.reduce(totals, reduction="sum")
        return float(totals[0] / totals[1].clamp_min(1))

    def _metrics(self, record: dict[str, Any]) -> None:
        if self.accelerator.is_main_process:
            with open(self.run_dir / METRICS_FILE, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")

    def _freeze_encoders(self) -> None:
        for encoder in self.extractor.model.encoders.values():
            encoder.requires_grad_(False)
            if hasattr(encoder.options, "freeze"):
                encoder.options.freeze = True
        for slot in ("global_encoder", "regional_encoder"):
            spec = getattr(self.extractor.config.model, slot)
            if spec is not None and "freeze" in manager.get_component("image_encoders", spec.name).cls.Options.model_fields:
                spec.options["freeze"] = True

    # ----------------------------------------------------------------- fit
    def fit(self, train: ProductTable | Iterable[Product], val: ProductTable | Iterable[Product] | None) -> TrainingResult:
        """Train on ``train`` (staged by :meth:`stage`, or any iterable of products, staged here) and
        validate on ``val``; write the model folder and the run folder."""
        accelerator = self.accelerator
        self.output.mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with run_log(self.run_dir, accelerator.is_main_process):
            if accelerator.is_main_process:  # a crash's leftovers (see mxt_sdk.storage)
                checkpoints.recover_run_folder(self.run_dir, self.output)
            accelerator.wait_for_everyone()
            try:
                if not isinstance(train, ProductTable):
                    staged = self.stage(train, val)
                    train, val = staged.train, staged.val
                return self._fit(train, val)
            finally:
                accelerator.free_memory()

    def _fit(self, train: ProductTable, val: ProductTable | None) -> TrainingResult:
        config, accelerator = self.config, self.accelerator
        set_seed(config.seed)
        if config.freeze_image_encoders:
            self._freeze_encoders()
        if config.image_prior is not None:
            check_image_prior(self.extractor.model)
        self._check_images(train)  # seconds, before the data is prepared: a wrong image root stops here
        # a model folder written before run folders existed holds its own checkpoints: resume from those
        latest = checkpoints.latest_checkpoint(self.run_dir) or checkpoints.latest_checkpoint(self.output)
        generator = self.extractor.model.generator
        if latest is not None and generator.needs_tokenizer_training and (latest / "tokenizer").is_dir():
            generator.load_tokenizer(latest / "tokenizer")  # the tokenizer the checkpoint was trained with
        data = self._prepare(train, val)
        log.info("Processes: num_processes=%d (%s), device %s", accelerator.num_processes,
                 accelerator.distributed_type, accelerator.device)
        log.info("Training on %d examples (%d products), validating on %d examples; inputs are cut to %d "
                 "tokens as batches are drawn (counted at the end)", len(data["train"]), len(train),
                 len(data["val"] or []), self.extractor.config.model.max_input_tokens)
        model = self.extractor.model.train()
        optimizer = training_optimizer(model, config)
        parameters = [p for group in optimizer.param_groups for p in group["params"]]
        images = self._image_source(data)
        train_loader = self._loader(data, "train", shuffle=True, images=images)
        val_loader = self._loader(data, "val", shuffle=False, images=images) if data["val"] is not None else None
        model, optimizer, train_loader = accelerator.prepare(model, optimizer, train_loader)
        if val_loader is not None:
            val_loader = accelerator.prepare(val_loader)
        steps_per_epoch = max(1, math.ceil(len(train_loader) / config.gradient_accumulation_steps))
        total_steps = config.max_steps or math.ceil(config.epochs * steps_per_epoch)
        # By steps only, never by the clock: the same seed and steps give the same model.
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: linear_warmup_decay(min(step / total_steps, 1.0), config.warmup_ratio))

        state = {"step": 0, "epoch": 0, "batches_in_epoch": 0, "train_seconds": 0.0, "best_val_loss": None,
                 "best_step": None, "first_val_loss": None, "last_val_loss": None, "evals_without_improvement": 0}
        resumed_from = None
        if latest is not None:
            state = checkpoints.load_checkpoint(latest, accelerator.unwrap_model(model), optimizer, scheduler,
                                                accelerator.process_index)
            resumed_from = state["step"]
            log.info("Resuming from checkpoint %s (step %d of %d)", latest.name, state["step"], total_steps)
        else:
            log.info("Starting from step 0 of %d (%d steps per epoch)", total_steps, steps_per_epoch)

        unwrapped = accelerator.unwrap_model(model)
        seconds_before = state["train_seconds"]
        progress = BudgetBar(total_steps, state["step"], max_seconds=config.max_train_seconds,
                             seconds_before=seconds_before, enabled=accelerator.is_main_process)
        examples_seen, started, running_loss, running_count, last_loss = 0, time.perf_counter(), 0.0, 0, None
        truncated = 0  # inputs cut in the batches this process draws in this run
        stop = state["step"] >= total_steps
        self._schedule = CheckpointSchedule(config.checkpoint_every, config.checkpoint_every_minutes, accelerator)
        while not stop:
            train_loader.set_epoch(state["epoch"])
            skip = state["batches_in_epoch"]
            batches = accelerator.skip_first_batches(train_loader, skip) if skip else train_loader
            for batch in self.profile.batches(batches):
                with accelerator.accumulate(model):
                    with self.profile.part("forward"):
                        loss = self._loss(model, batch)
                    with self.profile.part("backward_optimizer"):
                        accelerator.backward(loss)
                        if accelerator.sync_gradients and config.max_grad_norm:
                            accelerator.clip_grad_norm_(parameters, config.max_grad_norm)
                        optimizer.step()
                        optimizer.zero_grad()
                state["batches_in_epoch"] += 1
                examples_seen += batch["input_ids"].size(0) * accelerator.num_processes
                running_loss += float(loss.detach())
                running_count += 1
                truncated += batch["truncated"]
                if batch["image_errors"]:
                    log.warning("Unreadable images (trained without them): %s", "; ".join(batch["image_errors"][:3]))
                if not accelerator.sync_gradients:
                    continue
                state["step"] += 1
                state["train_seconds"] = seconds_before + time.perf_counter() - started
                scheduler.step()
                step = state["step"]
                if step % config.log_every == 0 or step == total_steps:
                    rate = examples_seen / max(time.perf_counter() - started, 1e-9)
                    record = {"step": step, "train_loss": running_loss / max(running_count, 1),
                              "lr": scheduler.get_last_lr()[0], "examples_per_second": rate}
                    self._metrics(record)
                    last_loss = record["train_loss"]
                    running_loss, running_count = 0.0, 0
                progress.update(step, state["train_seconds"],
                                examples_seen / max(time.perf_counter() - started, 1e-9), last_loss)
                out_of_time = self._out_of_time(state)
                if out_of_time:
                    state["stopped_by_time"] = step < total_steps
                    log.info("Time budget of %.0f s reached at step %d of %d", config.max_train_seconds, step,
                             total_steps)
                if step % config.eval_every == 0 or step == total_steps or out_of_time:
                    stop = self._evaluate(model, val_loader, state, unwrapped) or step >= total_steps or out_of_time
                    self._checkpoint(unwrapped, optimizer, scheduler, state)
                elif self._schedule.due(step):  # between evaluations, also without validation data
                    self._checkpoint(unwrapped, optimizer, scheduler, state)
                if stop or step >= total_steps:
                    stop = True
                    break
            else:
                state["epoch"] += 1
                state["batches_in_epoch"] = 0
        progress.close(state["step"])
        elapsed = time.perf_counter() - started
        truncated = int(accelerator.reduce(torch.tensor(truncated, device=accelerator.device), reduction="sum"))
        log.info("%d of the %d examples drawn in this run had their input cut to %d tokens", truncated, examples_seen,
                 self.extractor.config.model.max_input_tokens)
        if accelerator.is_main_process:
            fit_priors(self.extractor, unwrapped, data, images, self.profile, accelerator.device)
        result = self._finish(unwrapped, data, state, resumed_from, examples_seen / max(elapsed, 1e-9), truncated)
        self.profile.summarize(result, self.run_dir / SUMMARY_FILE if accelerator.is_main_process else None)
        return result

    def _out_of_time(self, state: dict[str, Any]) -> bool:
        """Whether the time budget (training time summed over resumed runs) is spent; all
        processes decide together."""
        if self.config.max_train_seconds is None:
            return False
        spent = torch.tensor(float(state["train_seconds"] >= self.config.max_train_seconds),
                             device=self.accelerator.device)
        return bool(self.accelerator.reduce(spent, reduction="sum") > 0)

    @timed("evaluation")
    def _evaluate(self, model, val_loader, state: dict[str, Any], unwrapped) -> bool:
        """Validation loss, best-weights bookkeeping and early stopping; True means stop."""
        if val_loader is None:
            return False
        val_loss = self._validation_loss(model, val_loader)
        state["last_val_loss"] = val_loss
        if state["first_val_loss"] is None:
            state["first_val_loss"] = val_loss
        improved = state["best_val_loss"] is None or val_loss < state["best_val_loss"]
        if improved:
            state.update(best_val_loss=val_loss, best_step=state["step"], evals_without_improvement=0)
            if self.accelerator.is_main_process:
                checkpoints.save_best_weights(self.run_dir, unwrapped, {"step": state["step"], "val_loss": val_loss})
        else:
            state["evals_without_improvement"] += 1
        self._metrics({"step": state["step"], "val_loss": val_loss, "best_val_loss": state["best_val_loss"]})
        log.info("step %d: validation loss %.4f (best %.4f at step %d)", state["step"], val_loss,
                 state["best_val_loss"], state["best_step"])
        patience = self.config.early_stopping_patience
        if patience and state["evals_without_improvement"] >= patience:
            log.info("Early stopping: no improvement in %d evaluations", patience)
            state["stopped_early"] = True
            return True
        return False

    @timed("checkpoints")
    def _checkpoint(self, unwrapped, optimizer, scheduler, state: dict[str, Any]) -> None:
        rng_states = gather_object([checkpoints.rng_state()])
        if self.accelerator.is_main_process:
            folder = checkpoints.checkpoint_dir(self.run_dir, state["step"])
            checkpoints.save_checkpoint(folder, unwrapped, optimizer, scheduler, dict(state), rng_states,
                                        unwrapped.generator.save_tokenizer)
            checkpoints.prune_checkpoints(self.run_dir, self.config.keep_checkpoints)
            log.info("Saved checkpoint %s", folder.name)
        self.accelerator.wait_for_everyone()
        self._schedule.saved()

    @timed("finish")
    def _finish(self, unwrapped, data: dict[str, Any], state: dict[str, Any], resumed_from: int | None,
                rate: float, truncated: int) -> TrainingResult:
        best = checkpoints.load_best_weights(self.run_dir, unwrapped)
        if best is not None:
            log.info("Keeping the best weights: step %d, validation loss %.4f", best["step"], best["val_loss"])
        self.extractor.model = unwrapped.eval()
        with self.accelerator.main_process_first():  # counted (or read) now: only the saved model needs it
            metadata = data["metadata"]()
        metadata.max_answer_tokens = data["max_answer_tokens"]
        log.info("Catalog metadata: %d (product type, attribute) pairs, %d distinct values", len(metadata.values),
                 sum(len(values) for values in metadata.values.values()))
        self.extractor.metadata = metadata
        self.extractor.normalizers = data["normalizers"]
        spec = self.extractor.config.extraction.canonicalizer
        if spec is not None:
            self.extractor.set_canonicalizer(spec.name, **spec.options)
        if self.accelerator.is_main_process:
            self.extractor.save_pretrained(self.output)
            write_json(self.run_dir / CLEANING_FILE, data["cleaning"])
            log.info("Model saved to %s", self.output)
        self.accelerator.wait_for_everyone()
        return TrainingResult(
            steps=state["step"], resumed_from_step=resumed_from, first_val_loss=state["first_val_loss"],
            best_val_loss=state["best_val_loss"], best_step=state["best_step"],
            final_val_loss=state["last_val_loss"], examples_per_second=rate,
            truncated_examples=truncated, stopped_early=bool(state.get("stopped_early")),
            stopped_by_time=bool(state.get("stopped_by_time")),
        )
