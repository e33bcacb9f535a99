"""`mxt pretrain`: span noising by hand, a pretrained folder that fine-tuning starts from, exact resume."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner
from safetensors.torch import load_file

from conftest import kill_after_first_checkpoint
from mxt_sdk import Extractor
from mxt_sdk.cli import main
from mxt_sdk.data.texts import read_texts
from mxt_sdk.errors import ConfigError
from mxt_sdk.experiments.synthetic import generate
from mxt_sdk.training import pretrain as pretraining
from mxt_sdk.training.span_corruption import apply_mask, corrupt, noise_mask

SMALL_T5 = {"name": "t5", "options": {"tokenizer": "unigram", "tokenizer_vocab_size": 500, "d_model": 32,
                                      "d_ff": 64, "num_layers": 2, "num_heads": 4, "dropout_rate": 0.0}}
TRAINING = {"learning_rate": 3e-3, "batch_size": 8, "log_every": 1, "seed": 7, "keep_checkpoints": 5}


def _config(**generator_options) -> dict:
    generator = {"name": "t5", "options": {**SMALL_T5["options"], **generator_options}}
    return {"model": {"generator": generator, "max_answer_tokens": 6}, "training": TRAINING}


@pytest.fixture(scope="module")
def titles(tmp_path_factory) -> dict[str, Path]:
    """300 synthetic products as a JSONL product file, and 50 more titles as a plain text file."""
    folder = tmp_path_factory.mktemp("texts")
    products, plain = folder / "products.jsonl", folder / "titles.txt"
    products.write_text("".join(json.dumps(item.product) + "\n" for item in generate(300, seed=3)))
    plain.write_text("".join(item.product["title"] + "\n" for item in generate(50, seed=4)))
    return {"products": products, "plain": plain}


# ----------------------------------------------------------------- span corruption
def test_spans_are_replaced_by_sentinels_and_the_target_holds_them():
    ids, mask = [5, 6, 7, 8, 9, 10], np.array([0, 1, 1, 0, 0, 1], dtype=bool)
    assert apply_mask(ids, mask, [100, 101], eos_id=1) == ([5, 100, 8, 9, 101, 1], [100, 6, 7, 101, 10, 1])
    assert apply_mask(ids, mask, [100, 101], eos_id=1, objective="reconstruct") == \
        ([5, 100, 8, 9, 101, 1], [5, 6, 7, 8, 9, 10, 1])
    with pytest.raises(ValueError, match="2 noise spans but only 1 sentinel"):
        apply_mask(ids, mask, [100], eos_id=1)


def test_noise_mask_drops_15_percent_in_spans_of_3_after_a_kept_start():
    rng = np.random.default_rng(0)
    mask = noise_mask(20, rng)  # round(20 * 0.15) = 3 tokens in round(3 / 3) = 1 span
    assert mask.sum() == 3 and not mask[0]
    starts = np.flatnonzero(mask)
    assert list(starts) == list(range(starts[0], starts[0] + 3))
    masks = [noise_mask(100, rng) for _ in range(200)]  # 15 tokens in 5 spans each time
    assert all(m.sum() == 15 and not m[0] for m in masks)
    assert all(int((m[1:] & ~m[:-1]).sum()) == 5 for m in masks)
    assert not noise_mask(1, rng).any()
    assert noise_mask(2, rng).tolist() == [False, True]


def test_corrupted_input_and_span_target_give_back_the_text():
    rng = np.random.default_rng(1)
    ids, sentinels = list(range(10, 60)), [200 + i for i in range(100)]
    inputs, labels = corrupt(ids, sentinels, eos_id=1, rng=rng)
    spans, current = {}, None
    for token in labels[:-1]:
        if token in sentinels:
            current = spans.setdefault(token, [])
        else:
            current.append(token)
    restored = [t for token in inputs[:-1] for t in (spans[token] if token in sentinels else [token])]
    assert restored == ids and inputs[-1] == labels[-1] == 1
    assert sum(len(span) for span in spans.values()) == round(50 * 0.15)


# ----------------------------------------------------------------- texts
def test_texts_come_from_product_files_and_plain_lines_once_each(titles, tmp_path):
    repeated = tmp_path / "again.txt"
    repeated.write_text(titles["plain"].read_text() + "\n\n")
    corpus = read_texts([titles["products"], titles["plain"], repeated])
    assert len(corpus.texts) == 350 and len(set(corpus.texts)) == 350
    first = generate(1, seed=3)[0].product
    assert corpus.texts[0] == f"{first['product_type']} | {first['title']} | {first['description']}"
    assert corpus.files[2] == {"file": str(repeated), "texts": 0, "rejected": 0, "repeated": 50}


def test_a_degenerate_tokenizer_is_reported(titles, tmp_path, caplog):
    with caplog.at_level("WARNING", logger="mxt_sdk"):
        result = pretraining.pretrain([titles["products"]], tmp_path / "small", _config(), steps=1,
                                      vocab_size=500, show_progress=False)
    assert result.pieces_per_word > 3 and "pieces on average" in caplog.text
    with pytest.raises(ConfigError, match="tokenizer_vocab_size=200 is too small.*keeps 100 of the vocabulary's 300"):
        pretraining.pretrain([titles["plain"]], tmp_path / "smaller", _config(), steps=1, vocab_size=300)


def test_batches_group_texts_by_length_and_depend_on_the_step_only():
    rng = np.random.default_rng(0)
    batch, pool = 4, pretraining.POOL_BATCHES
    sequences = [[int(t) + 200 for t in rng.integers(0, 50, size=rng.integers(3, 60))] for _ in range(2 * pool * batch)]
    make = lambda: pretraining.Batches(sequences, batch, 5, list(range(100, 200)), 1, 0, "reconstruct")  # noqa: E731
    walked = make()
    epoch = [walked.texts(step) for step in range(2 * pool)]  # exactly one pass over the texts
    assert sorted(map(tuple, sum(epoch, []))) == sorted(map(tuple, sequences))
    assert sum(max(map(len, texts)) - min(map(len, texts)) for texts in epoch) / len(epoch) < 3  # vs about 45 unsorted
    fresh = make()
    for step in (pool + 7, 3, 2 * pool + 1):  # out of order, mid-pool, next epoch: as a resumed run draws them
        a, b = fresh(step), walked(step)
        assert all(torch.equal(a[k], b[k]) for k in a)


# ----------------------------------------------------------------- end to end
def test_mxt_pretrain_writes_a_folder_that_fine_tuning_starts_from(titles, tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(_config(tokenizer_vocab_size=600)))
    out = tmp_path / "pretrained"
    run = CliRunner().invoke(main, ["pretrain", "--input", str(titles["products"]), "--input", str(titles["plain"]),
                                    "--output", str(out), "--config", str(config), "--steps", "4",
                                    "--batch-size", "8", "--seed", "3"])
    assert run.exit_code == 0, run.output
    result = json.loads(run.stdout[run.stdout.index("{"):])
    assert result["steps"] == 4 and result["texts"] == 350 and result["vocabulary"] <= 600
    for name in ("config.json", "model.safetensors", "tokenizer.json", "pretrain.json", "loss.png", ".complete"):
        assert (out / name).is_file(), name
    assert [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3, 4]

    fine_tune = {"model": {"generator": {"name": "t5", "options": {"from_pretrained": str(out)}},
                           "max_answer_tokens": 6}, "training": {**TRAINING, "max_steps": 2, "eval_every": 2}}
    extractor = Extractor.from_config(fine_tune)
    tokenizer = extractor.model.generator.tokenizer
    assert (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id) == (0, 1, 2)
    assert len(tokenizer.tokenize("<extra_id_0> <extra_id_99>")) == 2
    pretrained = load_file(str(out / "model.safetensors"))
    loaded = extractor.model.generator.model.state_dict()
    assert all(torch.equal(loaded[name], tensor) for name, tensor in pretrained.items())
    assert extractor.fit(titles["products"], output_dir=tmp_path / "fine-tuned").steps == 2
    predictions = extractor.extract([generate(1, seed=9)[0].product], attributes=["color"])
    assert len(predictions) == 1 and predictions[0].error is None


def test_the_copy_head_is_pretrained_and_loaded_with_copying_on(titles, tmp_path):
    out = tmp_path / "copying"
    pretraining.pretrain([titles["plain"]], out, _config(copy_mechanism=True), steps=2, show_progress=False)
    saved = load_file(str(out / "copy_head.safetensors"))
    config = _config(copy_mechanism=True)
    config["model"]["generator"]["options"] = {"from_pretrained": str(out), "copy_mechanism": True}
    head = Extractor.from_config(config).model.generator.copy_head.state_dict()
    assert saved.keys() == head.keys() and all(torch.equal(saved[k], head[k]) for k in saved)


# ----------------------------------------------------------------- resume
def test_a_crashed_run_resumes_exactly(titles, tmp_path, monkeypatch):
    def run(output, **kwargs):
        return pretraining.pretrain([titles["plain"]], output, _config(), steps=4, checkpoint_every=2,
                                    show_progress=False, **kwargs)

    run(tmp_path / "straight")
    real_loss, calls = pretraining._step_loss, []

    def crash_at_the_third_step(generator, batch):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_loss(generator, batch)

    monkeypatch.setattr(pretraining, "_step_loss", crash_at_the_third_step)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "resumed")
    monkeypatch.setattr(pretraining, "_step_loss", real_loss)
    torch.manual_seed(123)  # everything must come from the checkpoint
    result = run(tmp_path / "resumed")
    assert result.resumed_from_step == 2 and result.steps == 4
    a, b = load_file(str(tmp_path / "straight" / "model.safetensors")), \
        load_file(str(tmp_path / "resumed" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    steps = [json.loads(line)["step"] for line in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]


@pytest.mark.slow
def test_killed_pretraining_resumes_when_run_again(titles, tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(_config()))
    out = tmp_path / "run"
    command = [sys.executable, "-m", "mxt_sdk.cli", "pretrain", "--input", str(titles["products"]), "--config",
               str(config), "--output", str(out), "--checkpoint-every", "3", "--steps", "2000"]
    last = kill_after_first_checkpoint(command, out)
    finished = subprocess.run([*command[:-1], str(last + 2)], capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert f"Resuming from checkpoint step-{last:08d} (step {last} of {last + 2})" in finished.stderr
    assert json.loads(finished.stdout[finished.stdout.index("{"):])["resumed_from_step"] == last
