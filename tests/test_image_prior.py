"""The image prior: per-pair softmax regressions over frozen image vectors, saved with the model."""
from __future__ import annotations

import copy
import json
import math

import pytest
import torch
from click.testing import CliRunner

from conftest import tiny_config
from mxt_sdk import Extractor, Product
from mxt_sdk.cli import main
from mxt_sdk.evaluation.prior_weight import accuracy as prior_accuracy, best_weight, clearly_better, correct_flags
from mxt_sdk.experiments.synthetic import write_catalog
from mxt_sdk.inference.image_prior import INDEX_FILE, SMOOTHING, WEIGHTS_FILE, ImagePriorExample, ImageValuePrior

DIMS = 12


def _data(count: int, seed: int) -> tuple[torch.Tensor, list[ImagePriorExample]]:
    """Pair ``a`` takes 'red' when the vector's first coordinate is positive, else 'blue' (the first four
    coordinates carry that sign, so it is the leading principal direction); pair ``b`` (one value) and
    pair ``c`` (too many values) come along."""
    generator = torch.Generator().manual_seed(seed)
    vectors = torch.randn(count, DIMS, generator=generator) * 0.3
    vectors[:, :4] += torch.where(torch.rand(count, 1, generator=generator) < 0.5, -1.0, 1.0)
    examples = []
    for row in range(count):
        examples.append(ImagePriorExample("a", "red" if vectors[row, 0] > 0 else "blue", row))
        examples.append(ImagePriorExample("b", "cotton", row))
        examples.append(ImagePriorExample("c", f"value {row % 7}", row))
    return vectors, examples


def _fit(vectors: torch.Tensor, examples, **options) -> ImageValuePrior:
    return ImageValuePrior.fit(lambda: iter(vectors.split(5)), examples, **{"max_values": 5, "dims": 4, **options})


def test_the_prior_learns_the_value_the_image_shows_and_leaves_unfitted_pairs_alone():
    prior = _fit(*_data(60, seed=0))
    test, _ = _data(40, seed=1)
    right = 0
    for row in range(len(test)):
        red, blue = (math.exp(x) for x in prior.log_probs("a", test[row], ["red", "blue"]))
        assert red + blue == pytest.approx(1.0, abs=1e-5)
        right += (red > blue) == (test[row, 0] > 0)
    assert right >= 38
    assert prior.log_probs("b", test[0], ["cotton", "n/a"]) == pytest.approx(
        [math.log(1 - SMOOTHING + SMOOTHING / 2), math.log(SMOOTHING / 2)])
    assert prior.log_probs("c", test[0], ["value 1"]) is None  # 7 values > max_values
    assert prior.log_probs("unseen", test[0], ["red"]) is None
    assert prior.projection.shape == (DIMS, 4)


def test_the_same_data_gives_the_same_prior_and_a_saved_prior_answers_the_same(tmp_path):
    vectors, examples = _data(30, seed=2)
    first, second = _fit(vectors, examples), _fit(vectors, examples)
    assert first.pair_groups == second.pair_groups
    for name in first.groups:
        assert torch.equal(first.groups[name].weight, second.groups[name].weight)
    assert torch.equal(first.projection, second.projection)
    first.save(tmp_path)
    assert (tmp_path / WEIGHTS_FILE).is_file() and (tmp_path / INDEX_FILE).is_file()
    loaded = ImageValuePrior.load(tmp_path)
    probe = torch.randn(DIMS)
    assert loaded.log_probs("a", probe, ["red", "blue", "n/a"]) == first.log_probs("a", probe, ["red", "blue", "n/a"])
    assert ImageValuePrior.load(tmp_path / "nothing-here") is None


def _two_types(count: int, seed: int) -> tuple[torch.Tensor, list[ImagePriorExample]]:
    """Two product types whose ``neckline`` follows the same visual sign, each with a few examples."""
    vectors, examples = _data(count, seed)
    necklines = [ImagePriorExample(f"{kind}\tneckline", "v-neck" if vectors[row, 0] > 0 else "crew", row, "neckline")
                 for row in range(count) for kind in (("dress", "top")[row % 2],)]
    return vectors, necklines


def test_pairs_of_one_attribute_share_one_regression_renormalised_over_each_pairs_candidates():
    vectors, examples = _two_types(40, seed=4)
    prior = _fit(vectors, examples)
    assert prior.pair_groups == {"dress\tneckline": "group:neckline", "top\tneckline": "group:neckline"}
    assert list(prior.groups) == ["group:neckline"]
    test, _ = _two_types(20, seed=5)
    for row in range(len(test)):
        crew, vneck = (math.exp(x) for x in prior.log_probs("top\tneckline", test[row], ["crew", "v-neck"]))
        assert (vneck > crew) == bool(test[row, 0] > 0)
    # a candidate list without one of the group's values: the others share its probability
    assert [math.exp(x) for x in prior.log_probs("dress\tneckline", test[0], ["crew", "n/a"])] == pytest.approx(
        [1 - SMOOTHING + SMOOTHING / 2, SMOOTHING / 2])


def test_a_group_with_too_many_values_falls_back_to_its_pairs():
    vectors, examples = _data(30, seed=6)
    examples = [e._replace(group="shared") for e in examples if e.pair in ("a", "c")]  # 2 + 7 values > 5
    prior = _fit(vectors, examples)
    assert prior.pair_groups == {"a": "pair:a"}  # c alone has 7 values: no prior
    assert prior.log_probs("c", vectors[0], ["value 1"]) is None


def test_a_version_1_prior_file_still_loads(tmp_path):
    prior = _fit(*_data(20, seed=7))
    prior.save(tmp_path)
    index = json.loads((tmp_path / INDEX_FILE).read_text())
    version_1 = {"version": 1, "l2": index["l2"],
                 "pairs": {key.removeprefix("pair:"): entry for key, entry in index["groups"].items()}}
    (tmp_path / INDEX_FILE).write_text(json.dumps(version_1))
    loaded = ImageValuePrior.load(tmp_path)
    probe = torch.randn(DIMS)
    assert loaded.log_probs("a", probe, ["red", "blue"]) == pytest.approx(prior.log_probs("a", probe, ["red", "blue"]))


def test_a_prior_file_of_another_version_is_refused(tmp_path):
    _fit(*_data(10, seed=3)).save(tmp_path)
    index = json.loads((tmp_path / INDEX_FILE).read_text())
    (tmp_path / INDEX_FILE).write_text(json.dumps({**index, "version": 99}))
    with pytest.raises(ValueError, match="image prior version 99"):
        ImageValuePrior.load(tmp_path)


def _prior_config(frozen: bool) -> dict:
    config = copy.deepcopy(tiny_config(["mag", "xattn"]))  # conftest's dicts are shared
    for slot in ("global_encoder", "regional_encoder"):
        config["model"][slot]["options"]["freeze"] = frozen
    config["training"] = {"learning_rate": 3e-3, "batch_size": 8, "eval_every": 100, "seed": 3,
                          "normalizers": ["text"], "image_prior": {"dims": 8}}
    config["extraction"] = {"choose_among_known": 20}
    return config


def test_training_refuses_an_image_prior_on_trainable_encoders(tmp_path):
    catalog = write_catalog(tmp_path / "catalog", train_size=4, test_size=2, image_size=32)
    with pytest.raises(ValueError, match="frozen image encoders"):
        Extractor.from_config(_prior_config(frozen=False)).fit(catalog["train"], output_dir=tmp_path / "m",
                                                                max_steps=1)


@pytest.mark.slow
def test_a_trained_prior_is_saved_loaded_and_moves_known_value_choices(tmp_path):
    catalog = write_catalog(tmp_path / "catalog", train_size=24, test_size=6, image_size=48)
    extractor = Extractor.from_config(_prior_config(frozen=True))
    extractor.fit(catalog["train"], output_dir=tmp_path / "model", max_steps=3)
    assert (tmp_path / "model" / WEIGHTS_FILE).is_file()
    loaded = Extractor.from_pretrained(tmp_path / "model")
    assert loaded.image_prior is not None and loaded.image_prior.pair_groups == extractor.image_prior.pair_groups
    assert all(name == f"pair:{key}" for key, name in loaded.image_prior.pair_groups.items())  # share: pair
    assert any(key.endswith("\tpattern") for key in loaded.image_prior.pair_groups)  # an image-only attribute
    root = catalog["test"].parent
    products = [Product.model_validate_json(line) for line in catalog["test"].read_text().splitlines()]
    with_prior = loaded.extract(products, image_root=root)
    loaded.config.extraction.image_prior_weight = 0.0
    without = loaded.extract(products, image_root=root)
    assert [(p.product_id, p.attribute) for p in with_prior] == [(p.product_id, p.attribute) for p in without]
    assert all(p.error is None for p in with_prior)
    # the prior is part of the choice: the confidences of known-value answers change
    assert [p.confidence for p in with_prior] != [p.confidence for p in without]


def test_a_weight_replaces_the_configured_one_only_when_clearly_better_on_the_same_rows():
    right, wrong = True, False
    configured = [wrong] * 10 + [right] * 10
    clearly = [right] * 10 + [right] * 10  # 10 wins, 0 losses: 10 >= 2 * sqrt(10)
    slightly = [right] * 3 + [wrong] * 7 + [right] * 10  # 3 wins, 0 losses: 3 < 2 * sqrt(3)
    assert best_weight({0.0: configured, 1.0: configured, 2.0: clearly}, current=1.0) == 2.0
    assert best_weight({0.0: configured, 1.0: configured, 2.0: slightly}, current=1.0) == 1.0
    assert best_weight({0.0: clearly, 1.0: configured, 4.0: clearly}, current=1.0) == 0.0  # equals: the smallest
    swapped = [right] * 10 + [wrong] * 10  # same accuracy, other rows: 10 wins, 10 losses
    assert not clearly_better(swapped, configured)
    with pytest.raises(ValueError, match="configured weight 3 was not scored"):
        best_weight({0.0: configured}, current=3.0)
    with pytest.raises(ValueError, match="scored on 1 and 20 rows"):
        clearly_better([right], configured)
    rows = [{"gold": "red", "correct": True}, {"gold": "blue", "correct": False}, {"gold": None, "correct": False}]
    assert correct_flags(rows) == [True, False]  # rows without a stated gold value do not count
    assert prior_accuracy(correct_flags(rows)) == 0.5 and prior_accuracy([]) == 0.0


def test_a_model_without_a_prior_has_no_weight_to_choose(tmp_path):
    extractor = Extractor.from_config(tiny_config(["mag", "xattn"]))
    assert not extractor.image_prior_in_use
    with pytest.raises(ValueError, match="uses no image prior"):
        extractor.choose_image_prior_weight([Product(id="1", product_type="dress", title="red dress",
                                                     attributes={"color": "red"})])


@pytest.mark.slow
def test_calibration_chooses_the_prior_weight_on_held_out_products_and_saves_it(tmp_path):
    catalog = write_catalog(tmp_path / "catalog", train_size=24, test_size=8, image_size=48)
    Extractor.from_config(_prior_config(frozen=True)).fit(catalog["train"], output_dir=tmp_path / "model",
                                                          max_steps=3)
    extractor = Extractor.from_pretrained(tmp_path / "model")
    accuracy_by_weight = extractor.choose_image_prior_weight(catalog["test"], [0, 1, 4])
    assert list(accuracy_by_weight) == [0.0, 1.0, 4.0] and all(0 <= a <= 1 for a in accuracy_by_weight.values())
    chosen = extractor.config.extraction.image_prior_weight
    assert chosen in accuracy_by_weight and accuracy_by_weight[chosen] >= accuracy_by_weight[1.0]
    # the accuracy reported for the chosen weight is the one evaluation measures with it
    report = extractor.evaluate(catalog["test"])
    assert report["slices"]["with_image"]["accuracy"] == pytest.approx(accuracy_by_weight[chosen])

    # mxt calibrate: the chosen weight is printed and saved with the thresholds; 'none' keeps the weight
    runner = CliRunner()
    result = runner.invoke(main, ["calibrate", "--model", str(tmp_path / "model"), "--data", str(catalog["test"]),
                                  "--prior-weights", "0,4"])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout[result.stdout.index("{"):])
    assert printed["image_prior_weight"] in (0.0, 1.0, 4.0)  # the configured 1 is always tried
    assert Extractor.from_pretrained(tmp_path / "model").config.extraction.image_prior_weight == \
        printed["image_prior_weight"]
    result = runner.invoke(main, ["calibrate", "--model", str(tmp_path / "model"), "--data", str(catalog["test"]),
                                  "--prior-weights", "none"])
    assert result.exit_code == 0, result.output
    assert Extractor.from_pretrained(tmp_path / "model").config.extraction.image_prior_weight == \
        printed["image_prior_weight"]
    result = runner.invoke(main, ["calibrate", "--model", str(tmp_path / "model"), "--data", str(catalog["test"]),
                                  "--prior-weights", "1,-2"])
    assert result.exit_code == 2 and "at least 0" in result.output


def test_a_catalog_without_photos_trains_to_the_end_without_a_prior(tmp_path, caplog):
    catalog = write_catalog(tmp_path / "catalog", train_size=8, test_size=2, image_size=32)
    train = tmp_path / "no-photos.jsonl"
    train.write_text("".join(json.dumps({**json.loads(line), "image": None}) + "\n"
                             for line in catalog["train"].read_text().splitlines()))
    extractor = Extractor.from_config(_prior_config(frozen=True))
    with caplog.at_level("WARNING", logger="mxt_sdk"):
        result = extractor.fit(train, output_dir=tmp_path / "model", max_steps=1)
    assert result.steps == 1 and extractor.image_prior is None
    assert not (tmp_path / "model" / WEIGHTS_FILE).exists()
    assert "No training product has a photo" in caplog.text


def test_a_text_only_generator_fits_and_uses_a_prior_on_its_global_encoder_alone(tmp_path):
    """The ablation's text-only-prior: no fusion reads the photo, so answers move only through the prior."""
    catalog = write_catalog(tmp_path / "catalog", train_size=12, test_size=4, image_size=48)
    config = _prior_config(frozen=True)
    config["model"].update(regional_encoder=None, fusions=[])
    extractor = Extractor.from_config(config)
    assert set(extractor.model.encoders) == {"global"} and extractor.image_prior_in_use is False  # not fitted yet
    extractor.fit(catalog["train"], output_dir=tmp_path / "model", max_steps=2)
    loaded = Extractor.from_pretrained(tmp_path / "model")
    assert loaded.image_prior is not None and loaded.image_prior_in_use
    products = [Product.model_validate_json(line) for line in catalog["test"].read_text().splitlines()]
    root = catalog["test"].parent
    with_prior = loaded.extract(products, image_root=root)
    loaded.config.extraction.image_prior_weight = 0.0
    without = loaded.extract(products, image_root=root)
    blind = loaded.extract([p.model_copy(update={"image": None}) for p in products], image_root=root)
    assert all(p.error is None for p in with_prior)
    # at weight 0 the photo changes nothing: the generator reads text only
    assert [(p.value, p.confidence) for p in without] == [(p.value, p.confidence) for p in blind]
    assert [p.confidence for p in with_prior] != [p.confidence for p in without]
