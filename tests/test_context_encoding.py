"""``model.context_encoding: per_product``: each product's context encoded once for all its questions."""
from __future__ import annotations

import pytest
import torch
from PIL import Image

from conftest import tiny_config
from mxt_sdk.config import load_config
from mxt_sdk.data.prompt import build_prompt, fit_prompts, question_budget
from mxt_sdk.errors import ConfigError
from mxt_sdk.images.io import Preprocessing, to_pixels
from mxt_sdk.model.mxt import ImagePixels, MXTModel
from mxt_sdk.types import Product


def _model(fusions=("mag", "xattn")) -> MXTModel:
    config = tiny_config(list(fusions))
    config["model"]["context_encoding"] = "per_product"
    torch.manual_seed(0)
    return MXTModel(load_config(config).model).eval()


def _features(model, colours):
    pixels = {kind: torch.stack([to_pixels(Image.new("RGB", (80, 60), c), Preprocessing.model_validate(prep))
                                 for c in colours]) for kind, prep in model.preprocessing().items()}
    return model.encode_images(ImagePixels(pixels, torch.ones(len(colours), dtype=torch.bool)))


PRODUCTS = [Product(id="a", product_type="dress", title="red printed dress with long sleeves"),
            Product(id="b", product_type="shoe", title="leather boot")]
QUESTIONS = [("color", 0), ("sleeve length", 0), ("color", 1), ("material", 1), ("pattern", 0)]


def _rows(model, limit=64):
    prompts = [build_prompt(attribute, PRODUCTS[p]) for attribute, p in QUESTIONS]
    _, ids = fit_prompts(model.generator.tokenizer, limit, prompts, per_product=True)
    width = max(map(len, ids))
    input_ids = torch.tensor([row + [0] * (width - len(row)) for row in ids])
    mask = torch.tensor([[1] * len(row) + [0] * (width - len(row)) for row in ids])
    return input_ids, mask


def test_a_batch_encodes_each_context_once_and_matches_rows_encoded_alone():
    model = _model()
    input_ids, mask = _rows(model)
    features = _features(model, [(200, 20, 20), (20, 20, 200)])
    image_rows = torch.tensor([p for _, p in QUESTIONS])
    calls = []
    hook = model.generator.model.encoder.register_forward_hook(lambda m, a, k, out: calls.append(1), with_kwargs=True)
    with torch.no_grad():
        hidden, joined_mask = model.encode_text(input_ids, mask, features.select(image_rows), image_rows)
    hook.remove()
    assert len(calls) == 2  # the two contexts in one encoder call, the four distinct questions in another
    assert hidden.shape[:2] == joined_mask.shape and torch.equal(joined_mask[:, -input_ids.size(1):], mask)
    for row in range(len(QUESTIONS)):  # alone: no other row to share with
        length = int(mask[row].sum())
        with torch.no_grad():
            alone, alone_mask = model.encode_text(input_ids[row:row + 1, :length], mask[row:row + 1, :length],
                                                  features.select(image_rows[row:row + 1]), image_rows[row:row + 1])
        used = alone_mask[0].bool()
        assert torch.allclose(hidden[row, :alone.size(1)][used], alone[0][used], atol=1e-5)
        assert not joined_mask[row, alone.size(1):].any()


def test_the_same_text_with_another_image_is_encoded_apart():
    model = _model()
    input_ids, mask = _rows(model)
    both = torch.cat([input_ids[:1], input_ids[:1]]), torch.cat([mask[:1], mask[:1]])
    features = _features(model, [(200, 20, 20), (20, 20, 200)])
    with torch.no_grad():
        hidden, _ = model.encode_text(*both, features, torch.tensor([0, 1]))
    assert not torch.allclose(hidden[0], hidden[1])


def test_gradients_reach_every_trainable_weight_and_the_loss_is_finite():
    model = _model().train()
    input_ids, mask = _rows(model)
    tokenizer = model.generator.tokenizer
    labels = tokenizer(["red", "long", "n/a", "leather", "printed"], padding=True, return_tensors="pt")["input_ids"]
    labels[labels == tokenizer.pad_token_id] = -100
    image_rows = torch.tensor([p for _, p in QUESTIONS])
    features = _features(model, [(200, 20, 20), (20, 20, 200)])
    loss = model(input_ids, mask, labels, features, image_rows)
    loss.backward()
    trainable = [name for name, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert torch.isfinite(loss) and trainable == []


def test_the_context_keeps_its_tokens_whatever_the_question():
    tokenizer = _model(()).generator.tokenizer
    product = Product(id="c", product_type="dress", title=" ".join(f"word{i}" for i in range(80)))
    prompts = [build_prompt(attribute, product) for attribute in ("color", "a much longer attribute name")]
    fitted, ids = fit_prompts(tokenizer, 64, prompts, per_product=True)
    questions = [len(tokenizer(p.split(" context:")[0], add_special_tokens=False)["input_ids"]) for p in prompts]
    assert all(len(row) <= 64 for row in ids)
    budget = question_budget(64)
    contexts = [row[min(q, budget):] for row, q in zip(ids, questions)]
    assert contexts[0] == contexts[1] and len(contexts[0]) <= 64 - budget
    assert fitted[0] != prompts[0]  # the long title was cut
    short = build_prompt("color", PRODUCTS[1])
    assert fit_prompts(tokenizer, 64, [short], per_product=True)[0] == [short]


def test_prompt_layout_cannot_apply_per_product():
    config = tiny_config([])
    config["model"]["context_encoding"] = "per_product"
    config["model"]["generator"] = {**config["model"]["generator"],
                                    "options": {**config["model"]["generator"]["options"], "prompt_layout": 8}}
    with pytest.raises(ConfigError, match="prompt_layout"):
        MXTModel(load_config(config).model)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny image model trained per_product for a few steps on the synthetic catalog."""
    from mxt_sdk import Extractor
    from mxt_sdk.experiments.synthetic import write_catalog

    folder = tmp_path_factory.mktemp("per-product")
    catalog = write_catalog(folder / "catalog", train_size=24, test_size=8, image_size=48)
    config = tiny_config(["mag", "xattn"])
    config["model"]["context_encoding"] = "per_product"
    config["training"] = {"learning_rate": 3e-3, "batch_size": 8, "eval_every": 3, "log_every": 1, "seed": 7,
                          "normalizers": ["text", "min_count"], "length_pool_batches": 2}
    extractor = Extractor.from_config(config)
    result = extractor.fit(catalog["train"], catalog["test"], output_dir=folder / "model",
                           image_root=catalog["train"].parent, max_steps=6)
    return {"extractor": extractor, "result": result, "catalog": catalog, "model": folder / "model"}


def test_training_per_product_saves_a_model_that_keeps_its_layout(trained):
    from mxt_sdk import Extractor

    assert trained["result"].steps == 6 and trained["result"].first_val_loss is not None
    loaded = Extractor.from_pretrained(trained["model"])
    assert loaded.config.model.context_encoding == "per_product" and loaded.model.per_product


def test_answers_do_not_depend_on_which_questions_share_a_batch(trained):
    """All of a product's questions in one batch (one encoding of its context) answer as each asked alone."""
    import json

    extractor, catalog = trained["extractor"], trained["catalog"]
    records = [json.loads(line) for line in catalog["test"].read_text().splitlines()[:4]]
    root = catalog["train"].parent
    together = extractor.extract(records, image_root=root)
    assert len({r.attribute for r in together}) > 1
    for row in together:
        record = next(r for r in records if r["id"] == row.product_id)
        alone = extractor.extract([record], attributes=[row.attribute], image_root=root)[0]
        assert (alone.raw_value, alone.decided_by) == (row.raw_value, row.decided_by)
        assert alone.confidence == pytest.approx(row.confidence, abs=1e-4)


@pytest.mark.parametrize("dtype", ["bf16", "int8"])
def test_the_fast_modes_answer_every_question_per_product(trained, dtype):
    import json

    extractor, catalog = trained["extractor"], trained["catalog"]
    records = [json.loads(line) for line in catalog["test"].read_text().splitlines()[:3]]
    rows = extractor.extract(records, image_root=catalog["train"].parent, dtype=dtype)
    fp32 = extractor.extract(records, image_root=catalog["train"].parent)
    assert [(r.product_id, r.attribute) for r in rows] == [(r.product_id, r.attribute) for r in fp32]
    assert all(r.error is None and 0.0 <= r.confidence <= 1.0 for r in rows)


@pytest.mark.parametrize("copy", [False, True])
def test_keys_and_values_projected_once_per_state_decode_as_row_by_row(copy):
    """greedy with ``shared`` (cross-attention and copy keys projected per distinct state, then gathered)
    gives the answers and log-probabilities of greedy on the gathered rows."""
    config = tiny_config(["mag", "xattn"])
    config["model"]["context_encoding"] = "per_product"
    config["model"]["generator"] = {**config["model"]["generator"],
                                    "options": {**config["model"]["generator"]["options"], "copy_mechanism": copy}}
    torch.manual_seed(0)
    model = MXTModel(load_config(config).model).eval()
    input_ids, mask = _rows(model)
    image_rows = torch.tensor([p for _, p in QUESTIONS])
    features = _features(model, [(200, 20, 20), (20, 20, 200)])
    with torch.no_grad():
        shared_output = model.generate(input_ids, mask, features, 6, image_index=image_rows)
        hidden, joined = model.encode_text(input_ids, mask, features.select(image_rows), image_rows)
        plain = model.generator.greedy(hidden, joined, 6, input_ids=input_ids)
    assert torch.equal(shared_output.token_ids, plain.token_ids)
    assert torch.allclose(shared_output.token_logprobs, plain.token_logprobs, atol=1e-5)
