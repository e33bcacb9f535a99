"""Normalizers (text, units, merge, min_count), their state round trip, and label cleaning."""
from __future__ import annotations

import json
import random
from collections import Counter

import pytest

from mxt_sdk import Normalizer, Product
from mxt_sdk.data.cleaning import apply_normalizers, clean_products
from mxt_sdk.errors import ConfigError, NotFittedError
from mxt_sdk.plugins import manager
from mxt_sdk.plugins.components import ComponentOptions


def make(name, **options):
    return manager.create("normalizers", name, options)


def run(normalizer, value, product_type="shoes", attribute="color"):
    return normalizer(value, product_type=product_type, attribute=attribute)


def counts(pairs):
    """``{(pt, attr): {value: n}}`` -> the flat counts a normalizer's fit receives."""
    return {(pt, attr, value): n for (pt, attr), values in pairs.items() for value, n in values.items()}


def round_trip(normalizer):
    """A fresh instance restored from the JSON of ``normalizer``'s state."""
    fresh = make(normalizer.name, **normalizer.options.model_dump())
    fresh.set_state(json.loads(json.dumps(normalizer.get_state())))
    return fresh


# --------------------------------------------------------------------------- text


@pytest.mark.parametrize("raw, expected", [
    ("  Scoop   Neck ", "scoop neck"),
    ("ＲＥＤ\u00a0Patent", "red patent"),          # NFKC: full-width letters, no-break space
    ("Straße", "strasse"),                          # case folding, not just lower()
    ('"Nautical Navy"', "nautical navy"),
    ("“Blue”", "blue"),
    ("(Pack of 6)", "pack of 6"),
    ("- Leather.", "leather"),
    ("Men&#39;s", "men's"),                         # HTML entities, as in AE-110k
    ('13"', '13"'),                                 # an inch mark is not a quote
    ("size (US)", "size (us)"),
    ('"a" or "b"', '"a" or "b"'),
    (".5 mm", ".5 mm"),
    ("100%", "100%"),
    ("...", None),                                  # nothing left: dropped
])
def test_text(raw, expected):
    assert run(make("text"), raw) == expected


def test_text_can_keep_case():
    assert run(make("text", lowercase=False), "  'Red Patent' ") == "Red Patent"


# --------------------------------------------------------------------------- units


@pytest.mark.parametrize("raw, expected", [
    ("10mm", "10 mm"), ("10 MM", "10 mm"), ("10 millimetres", "10 mm"),
    ('13"', "13 in"), ("13 inches", "13 in"), ("5' 7\"", "5 ft 7 in"),
    ("1,5 kg", "1.5 kg"), ("1,500 mAh", "1500 mah"), ("1.234,5 g", "1234.5 g"), ("2.50 oz", "2.5 oz"),
    ("16 fl. oz", "16 fl oz"), ("500ML", "500 ml"), ("64GB", "64 gb"), ("2 TB", "2 tb"),
    ("12V", "12 v"), ("100 Watts", "100 w"), ("5 lbs", "5 lb"), ("85mm 20g", "85 mm 20 g"),
    ("14 M US", "14 M US"),     # bare M is a shoe width, not metres
    ("RX100V", "RX100V"),       # a number glued to letters is a model number
    ("2 in 1", "2 in 1"), ("Red", "Red"),
])
def test_units(raw, expected):
    assert run(make("units"), raw) == expected


def test_units_options():
    assert run(make("units", space=False), "10 MM") == "10mm"
    assert run(make("units", only=["mm"]), "10 MM, 5 KG") == "10 mm, 5 KG"
    assert run(make("units", extra_units={"mm": ["millim."], "qt": ["quart", "quarts"]}),
               "3 millim. 2 Quarts") == "3 mm 2 qt"
    with pytest.raises(ConfigError, match="spaces"):
        make("units", spaces=True)


# --------------------------------------------------------------------------- merge

SHOES = ("shoes", "material")


def fitted_merge(values, **options):
    merge = make("merge", **options)
    merge.fit(counts({SHOES: values}))
    return merge


def test_merge_maps_variants_to_the_most_frequent_spelling():
    merge = fitted_merge({"faux leather": 9, "Faux-Leather": 3, "fauxleather": 1, "leathr": 1,
                          "leather": 5, "boots": 2, "boot": 4})
    mapping = merge.get_state()["pairs"]["shoes"]["material"]
    assert mapping == {"Faux-Leather": "faux leather", "fauxleather": "faux leather",
                       "leathr": "leather", "boots": "boot"}
    assert run(merge, "Faux-Leather", *SHOES) == "faux leather"
    assert run(merge, "leather", *SHOES) == "leather"
    assert run(merge, "suede", *SHOES) == "suede"                  # unseen value: unchanged
    assert run(merge, "Faux-Leather", "dress", "material") == "Faux-Leather"  # other pair


def test_merge_keeps_apart_values_that_differ_in_numbers_or_short_words():
    merge = fitted_merge({"128 gb": 5, "256 gb": 1, "vitamin c": 4, "vitamin a": 1, "1.5 mm": 3,
                          "15 mm": 1, "sr-es-335e": 2, "sr-es-335b": 1, "3/4 sleeve": 2, "34 sleeve": 1})
    assert merge.get_state()["pairs"]["shoes"]["material"] == {}


def test_merge_does_not_chain_and_edit_threshold_is_an_option():
    values = {"abcdefghij": 5, "abcdefghiX": 3, "abcdefghXX": 1}
    merge = fitted_merge(values)  # 10 letters * 0.15 -> 1 edit allowed
    assert merge.get_state()["pairs"]["shoes"]["material"] == {"abcdefghiX": "abcdefghij"}
    assert fitted_merge(values, max_edit_ratio=0.0).get_state()["pairs"]["shoes"]["material"] == {}
    wide = fitted_merge(values, max_edit_ratio=0.2)
    assert wide.get_state()["pairs"]["shoes"]["material"] == {"abcdefghiX": "abcdefghij",
                                                             "abcdefghXX": "abcdefghij"}


def test_merge_is_deterministic_whatever_the_order_of_counts():
    values = {f"colour {c}": n for c, n in zip("abcdefgh", range(8, 0, -1))}
    values.update({"Colour-A": 2, "colour as": 1, "grey": 3, "gray": 3})
    items = list(counts({SHOES: values}).items())
    states = []
    for seed in range(3):
        random.Random(seed).shuffle(items)
        merge = make("merge")
        merge.fit(dict(items))
        states.append(json.dumps(merge.get_state()))
    assert len(set(states)) == 1


def test_merge_state_round_trip():
    merge = fitted_merge({"faux leather": 9, "Faux-Leather": 3})
    restored = round_trip(merge)
    assert restored.get_state() == merge.get_state()
    assert run(restored, "Faux-Leather", *SHOES) == "faux leather"


# --------------------------------------------------------------------------- min_count


def test_min_count_drops_the_tail_of_each_pair():
    tally = counts({SHOES: {"leather": 3, "suede": 2, "cork": 1}, ("dress", "material"): {"cork": 2}})
    keep = make("min_count")
    keep.fit(tally)
    assert [run(keep, v, *SHOES) for v in ("leather", "suede", "cork")] == ["leather", "suede", None]
    assert run(keep, "cork", "dress", "material") == "cork"
    assert run(keep, "leather", "hat", "material") is None  # pair never seen
    strict = make("min_count", min_count=3)
    strict.fit(tally)
    assert run(strict, "suede", *SHOES) is None
    assert keep.get_state()["pairs"]["shoes"]["material"] == ["leather", "suede"]
    assert run(round_trip(keep), "suede", *SHOES) == "suede"


def test_learning_normalizers_refuse_to_run_unfitted():
    for name in ("merge", "min_count"):
        with pytest.raises(NotFittedError, match=f"'{name}' normalizer"):
            run(make(name), "red")


# --------------------------------------------------------------------------- conformance


@pytest.mark.parametrize("name", manager.list_normalizers())
def test_every_normalizer_conforms(name):
    """Typed options, text-or-None output, deterministic, JSON state that restores the behaviour."""
    cls = manager.get_component("normalizers", name).cls
    assert issubclass(cls, Normalizer) and issubclass(cls.Options, ComponentOptions) and cls.__doc__
    values = ["Red", "red", "RED ", "10MM", "10 mm", "Navy Blue", "navy-blue", "n", "Leathr", "Leather"]
    tally = Counter(("shoes", "color", v) for v in values + values[:5])
    normalizer = make(name)
    normalizer.fit(tally)
    outputs = [run(normalizer, v) for v in values]
    assert all(out is None or isinstance(out, str) for out in outputs)
    assert [run(normalizer, v) for v in values] == outputs
    assert [run(round_trip(normalizer), v) for v in values] == outputs


# --------------------------------------------------------------------------- cleaning


def catalog():
    return [
        Product(id="1", product_type="shoes", title="a", attributes={"color": "Red", "size": "10MM"}),
        Product(id="2", product_type="shoes", title="b", attributes={"color": "red", "size": "10 mm"}),
        Product(id="3", product_type="shoes", title="c", attributes={"color": "RED", "width": None}),
        Product(id="4", product_type="shoes", title="d", attributes={"color": "Reds", "size": "12 mm"}),
        Product(id="5", product_type="shoes", title="e", attributes={"color": "teal"}),
    ]


def test_clean_products_pipeline_and_summary():
    normalizers = [make("text"), make("units"), make("merge"), make("min_count")]
    products, summary = clean_products(catalog(), normalizers)
    assert [p.id for p in products] == ["1", "2", "3", "4", "5"]
    assert [p.attributes for p in products] == [
        {"color": "red", "size": "10 mm"},
        {"color": "red", "size": "10 mm"},
        {"color": "red", "width": None},           # not stated: untouched, never counted
        {"color": "red"},                           # 'reds' merged; '12 mm' seen once: dropped
        {},                                         # 'teal' seen once: dropped, product kept
    ]
    assert json.loads(json.dumps(summary)) == summary
    assert (summary["products"], summary["not_stated"]) == (5, 1)
    assert (summary["labels_before"], summary["labels_after"]) == (8, 6)
    text, units, merge, min_count = summary["steps"]
    assert [s["normalizer"] for s in summary["steps"]] == ["text", "units", "merge", "min_count"]
    assert (text["changed"], text["distinct_before"], text["distinct_after"]) == (4, 8, 6)
    assert text["changes"] == {"shoes": {"color": {"Red": "red", "RED": "red", "Reds": "reds"},
                                         "size": {"10MM": "10mm"}}}
    assert units["changes"] == {"shoes": {"size": {"10mm": "10 mm"}}} and units["changed"] == 1
    assert merge["changes"] == {"shoes": {"color": {"reds": "red"}}} and merge["changed"] == 1
    assert (min_count["dropped"], min_count["labels_before"], min_count["labels_after"]) == (2, 8, 6)
    assert min_count["drops"] == {"shoes": {"color": ["teal"], "size": ["12 mm"]}}


def test_apply_normalizers_reuses_the_fitted_state():
    normalizers = [make("text"), make("merge"), make("min_count")]
    clean_products(catalog(), normalizers)
    val = [Product(id="v", product_type="shoes", title="v",
                   attributes={"color": " Reds", "size": "9 mm", "width": None})]
    assert apply_normalizers(val, normalizers)[0].attributes == {"color": "red", "width": None}


def test_clean_products_rejects_a_normalizer_returning_non_text():
    class Broken(Normalizer):
        name = "broken"

        def __call__(self, value, *, product_type, attribute):
            return 3

    with pytest.raises(TypeError, match="'broken' returned int"):
        clean_products(catalog(), [Broken(ComponentOptions())])
