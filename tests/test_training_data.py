"""Training data on disk: products staged in Arrow chunks, cleaning from counts, example shards
cached in the run folder and tokenized as batches are drawn (reused on resume, rebuilt on other data or settings), never in the
model folder; chunk and shard sizes change nothing in the trained model."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from conftest import tiny_config
from mxt_sdk import Extractor, Product
from mxt_sdk.data.cleaning import LabelCounts, clean_products, plan_cleaning
from mxt_sdk.experiments.synthetic import write_catalog
from mxt_sdk.plugins import manager
from mxt_sdk.training import example_cache, staging
from mxt_sdk.training.staging import stage_data

UNIGRAM = {"tokenizer": "unigram", "tokenizer_vocab_size": 400, "d_model": 32, "d_ff": 64, "num_layers": 1,
           "num_heads": 4, "dropout_rate": 0.0}
TRAINING = {"learning_rate": 3e-3, "batch_size": 8, "eval_every": 3, "log_every": 1, "seed": 5,
            "subword_regularization": 0.2, "normalizers": ["text", "merge", "min_count"]}


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    return write_catalog(tmp_path_factory.mktemp("catalog"), train_size=30, test_size=8, image_size=32)


def _config(**training):
    config = tiny_config([])
    config["model"]["generator"] = {"name": "t5", "options": UNIGRAM}
    config["training"] = {**TRAINING, **training}
    return config


def _fit(catalog, output: Path, **options):
    extractor = Extractor.from_config(_config())
    return extractor.fit(catalog["train"], catalog["test"], output_dir=output, max_steps=3, **options)


def _cache(run: Path) -> dict[str, float]:
    folder = run / "cache" / "data"
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*.arrow")}


def test_chunk_and_shard_sizes_change_nothing_in_the_model(catalog, tmp_path, monkeypatch):
    _fit(catalog, tmp_path / "whole")
    monkeypatch.setattr(staging, "CHUNK_ROWS", 5)
    monkeypatch.setattr(example_cache, "SHARD_ROWS", 17)
    _fit(catalog, tmp_path / "pieces")
    shards = sorted(p.name for p in (tmp_path / "pieces.run" / "cache" / "data").glob("examples-*/train-*.arrow"))
    assert len(shards) > 3, shards  # the examples really were split
    for name in ("model.safetensors", "metadata.json", "normalizers.json", "tokenizer/tokenizer.json"):
        assert (tmp_path / "whole" / name).read_bytes() == (tmp_path / "pieces" / name).read_bytes(), name
    assert (tmp_path / "whole.run" / "cleaning.json").read_text() == (tmp_path / "pieces.run" / "cleaning.json").read_text()


def test_caches_live_in_the_run_folder_are_reused_on_resume_and_rebuilt_on_change(catalog, tmp_path):
    out, run = tmp_path / "model", tmp_path / "model.run"
    _fit(catalog, out)
    assert not any(p.suffix == ".arrow" or p.name in ("cache", "datasets") for p in out.rglob("*"))
    first = _cache(run)
    assert any(k.startswith("examples-") for k in first)
    assert not any(k.startswith("tokens-") for k in first)  # tokenized as drawn: no token cache
    result = Extractor.from_config(_config()).fit(catalog["train"], catalog["test"], output_dir=out, max_steps=6)
    assert result.resumed_from_step == 3
    again = _cache(run)
    assert again == first  # the same files, none rewritten: not even the data was read again
    os.utime(catalog["train"])  # touched, same content: read again, same fingerprint, so it resumes
    assert Extractor.from_config(_config()).fit(catalog["train"], catalog["test"], output_dir=out,
                                                max_steps=6).resumed_from_step == 6
    touched = _cache(run)
    assert touched["products-train.arrow"] != first["products-train.arrow"]
    cached = {k: v for k, v in first.items() if not k.startswith("products-")}
    assert {k: touched[k] for k in cached} == cached
    changed = _config(normalizers=["text"])
    Extractor.from_config(changed).fit(catalog["train"], catalog["test"], output_dir=out, max_steps=7,
                                       force_resume=True)
    rebuilt = _cache(run)
    assert not set(cached) & set(rebuilt)  # other settings: new example shards, old ones gone


def test_training_takes_a_one_shot_iterable_of_products(catalog, tmp_path):
    records = (json.loads(line) for line in catalog["train"].read_text().splitlines())
    products = (Product.model_validate(r) for r in records)
    result = Extractor.from_config(_config()).fit(products, None, output_dir=tmp_path / "m", max_steps=2)
    assert result.steps == 2
    staged = json.loads((tmp_path / "m.run" / "cache" / "data" / "staged.json").read_text())
    assert staged["splits"]["train"]["count"] == 30 and staged["splits"]["val"] is None


def test_streamed_cleaning_equals_cleaning_in_memory(catalog, tmp_path):
    staged = stage_data(catalog["train"], None, tmp_path)
    products = list(staged.train.products())
    assert len(products) == staged.train.count == 30

    def normalizers():
        return [manager.create("normalizers", name, {}) for name in ("text", "units", "merge", "min_count")]

    in_memory, summary = clean_products(products, normalizers())
    plan = plan_cleaning(staged.train.label_rows(), normalizers())
    assert plan.summary == summary
    assert [plan.relabel(p.product_type, p.attributes) for p in products] == [p.attributes for p in in_memory]
    staged_counts = staged.train.label_counts()  # taken while staging, read back from labels-train.json
    assert (tmp_path / "cache" / "data" / "labels-train.json").is_file()
    assert list(staged_counts.counts.items()) == list(LabelCounts.of(staged.train.label_rows()).counts.items())
    again = plan_cleaning(staged_counts, normalizers())
    assert again.summary == summary and again.results == plan.results


def test_the_tokenizer_corpus_is_an_even_sample_of_a_large_catalog_with_prompts_built_as_drawn(tmp_path):
    from mxt_sdk.training.prepare import tokenizer_corpus
    from mxt_sdk.training.staging import PRODUCT_SCHEMA, write_arrow

    products = tmp_path / "products-train.arrow"
    write_arrow(products, PRODUCT_SCHEMA, ((Product(id=str(i), product_type="t", title=f"T{i}").model_dump_json(),)
                                           for i in range(5)))
    # two examples a product; example 9 with a prompt of its own (a scrambled one)
    rows = [{"product_row": i // 2, "product_type": "t", "attribute": "a", "answer": f"a{i}",
             "prompt": "own prompt" if i == 9 else None, "image": None} for i in range(10)]
    path = tmp_path / "train-00000.arrow"
    write_arrow(path, example_cache.EXAMPLE_SCHEMA, [tuple(row.values()) for row in rows])
    shards = example_cache.ExampleShards((path,), 10, products)
    assert list(tokenizer_corpus(shards, limit=3)) == ["question: a context: t | T1", "a3", "question: a context: t | T3",
                                                       "a6", "own prompt", "a9"]
    assert list(tokenizer_corpus(shards, limit=10))[:4] == ["question: a context: t | T0", "a0",
                                                            "question: a context: t | T0", "a1"]
    drawn = example_cache.ExamplePrompts(products)  # random access, as training draws
    batch = {name: [rows[i][name] for i in (8, 2, 9, 1)] for name in rows[0]}
    assert drawn(batch) == ["question: a context: t | T4", "question: a context: t | T1", "own prompt",
                            "question: a context: t | T0"]


def test_scrambled_values_change_the_train_examples_only_and_get_their_own_cache(catalog, tmp_path):
    import pyarrow as pa

    def answers(run: Path, split: str) -> list[str]:
        files = sorted((run / "cache" / "data").glob(f"examples-*/{split}-*.arrow"))
        return [a for f in files for a in pa.ipc.open_stream(f).read_all().column("answer").to_pylist()]

    _fit(catalog, tmp_path / "plain")
    Extractor.from_config(_config(scramble_copied_values=0.5)).fit(
        catalog["train"], catalog["test"], output_dir=tmp_path / "scrambled", max_steps=1)
    plain, scrambled = tmp_path / "plain.run", tmp_path / "scrambled.run"
    assert {p.name for p in (plain / "cache" / "data").glob("examples-*")}.isdisjoint(
        p.name for p in (scrambled / "cache" / "data").glob("examples-*"))
    before, after = answers(plain, "train"), answers(scrambled, "train")
    changed = [(a, b) for a, b in zip(before, after) if a != b]
    assert len(before) == len(after) and 0 < len(changed) < len(before)
    assert all(sorted(a.replace(" ", "")) == sorted(b.replace(" ", "")) for a, b in changed)
    assert answers(plain, "val") == answers(scrambled, "val")


def test_batches_are_tokenized_as_drawn_alike_in_loader_workers_and_cut_inputs_are_counted(catalog, tmp_path):
    results, models = [], []
    for name, workers in (("main", 0), ("workers", 2)):
        config = _config(num_workers=workers)
        config["model"]["max_input_tokens"] = 8  # every prompt is longer: every example drawn is cut
        out = tmp_path / name
        results.append(Extractor.from_config(config).fit(catalog["train"], catalog["test"], output_dir=out,
                                                         max_steps=3))
        models.append((out / "model.safetensors").read_bytes())
    assert models[0] == models[1]  # tokenized in two worker processes or in this one: the same batches
    assert [r.truncated_examples for r in results] == [3 * 8, 3 * 8]  # 3 steps of 8 examples
    assert "24 of the 24 examples drawn in this run had their input cut to 8 tokens" in \
        (tmp_path / "workers.run" / "train.log").read_text()


def test_catalog_metadata_equals_a_pass_over_the_cleaned_labels_and_is_kept_beside_the_examples(catalog, tmp_path):
    from mxt_sdk.data.examples import metadata_from_labels
    from mxt_sdk.data.metadata import new_value_shares

    staged = stage_data(catalog["train"], None, tmp_path)
    plan = plan_cleaning(staged.train.label_rows(), [manager.create("normalizers", "text", {})])
    shards = example_cache.build_examples(tmp_path, "k", {"train": (staged.train, plan)}, "n/a")
    assert not list(tmp_path.rglob("metadata.json"))  # not counted before training: only the saved model needs it
    metadata = example_cache.catalog_metadata(tmp_path, "k", staged.train, plan)
    expected = metadata_from_labels((pt, plan.relabel(pt, labels)) for pt, labels in staged.train.label_rows())
    # the same pairs and values, in the same order; the example pass also counts the values the texts state
    assert metadata.model_copy(update={"written": {}, "new_values": {}}).model_dump_json() == expected.model_dump_json()
    # and the Good-Turing share of new values of each pair, over the labels before cleaning
    assert metadata.new_values == new_value_shares(staged.train.label_counts().counts)
    assert list(metadata.written) == list(metadata.values)
    assert all(0 <= metadata.written[key] <= sum(counts.values()) for key, counts in metadata.values.items())
    assert shards["train"].rows == sum(len(plan.relabel(pt, labels)) for pt, labels in staged.train.label_rows())
    kept = tmp_path / "cache" / "data" / "examples-k" / "metadata.json"
    assert kept.read_text() == metadata.model_dump_json()
    kept.write_text(kept.read_text().replace('"written":{', '"written":{"marker":1,'))
    reused = example_cache.catalog_metadata(tmp_path, "k", staged.train, plan)  # read back, not counted again
    assert reused.written["marker"] == 1 and reused.values == metadata.values
