"""Canonicalizers: the built-in ``faiss`` one (near misses, novel values, per-pair isolation, vocabulary
files, save/load, batching, options) and a conformance loop over every registered canonicalizer."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from mxt_sdk import Canonicalizer
from mxt_sdk.data.metadata import CatalogMetadata
from mxt_sdk.errors import ConfigError, DataFileNotFoundError, NotFittedError
from mxt_sdk.plugins import manager

from mxt_faiss.vocabulary import VocabularyFileError

VOCABULARY = {
    ("dress", "color"): {"navy blue": 12, "light blue": 4, "red": 9, "black": 20, "off white": 3},
    ("dress", "neckline"): {"v-neck": 7, "crew neck": 5, "sweetheart": 2},
    ("mug", "color"): {"white": 8, "black": 3},
    ("mug", "capacity"): {"300 ml": 5, "12 oz": 2},
}

QUERIES = [
    ("navy-blue", "dress", "color"), ("Navy Blue ", "dress", "color"), ("navy blu", "dress", "color"),
    ("NAVY  BLUE", "dress", "color"), ("navyblue", "dress", "color"), ("teal", "dress", "color"),
    ("navy blue", "mug", "color"), ("navy blue", "lamp", "color"), ("v neck", "dress", "neckline"),
    ("crewneck", "dress", "neckline"), ("sweatheart", "dress", "neckline"), ("halter", "dress", "neckline"),
    ("300ml", "mug", "capacity"), ("400 ml", "mug", "capacity"), ("12 Oz", "mug", "capacity"),
    ("blakc", "dress", "color"), ("", "dress", "color"), ("?!", "dress", "color"), ("reds", "dress", "color"),
    ("off-white", "dress", "color"), ("whit", "mug", "color"), ("lila", "mug", "color"),
]


def make(**options):
    return manager.create("canonicalizers", "faiss", options)


@pytest.fixture
def fitted():
    canon = make()
    canon.fit(VOCABULARY)
    return canon


def run(canon, value, product_type="dress", attribute="color"):
    return canon.canonicalize(value, product_type=product_type, attribute=attribute)


# --------------------------------------------------------------------------- mapping
@pytest.mark.parametrize("generated", ["navy blue", "navy-blue", "Navy Blue ", "navy blu", "NAVY  BLUE", "navyblue"])
def test_near_misses_map_to_the_known_value(fitted, generated):
    assert run(fitted, generated) == ("navy blue", False)


@pytest.mark.parametrize("generated", ["teal", "maroon", "light green", "purple"])
def test_different_values_are_kept_and_flagged_novel(fitted, generated):
    assert run(fitted, generated) == (generated, True)


def test_other_pairs_and_kinds_of_near_miss(fitted):
    assert run(fitted, "v neck", "dress", "neckline") == ("v-neck", False)
    assert run(fitted, "crewneck", "dress", "neckline") == ("crew neck", False)
    assert run(fitted, "sweatheart", "dress", "neckline") == ("sweetheart", False)
    assert run(fitted, "reds") == ("red", False)           # plural
    assert run(fitted, "off-white") == ("off white", False)
    assert run(fitted, "300ml", "mug", "capacity") == ("300 ml", False)


def test_a_value_known_for_one_pair_is_novel_for_another(fitted):
    assert run(fitted, "navy blue", "dress", "color") == ("navy blue", False)
    assert run(fitted, "navy blue", "mug", "color") == ("navy blue", True)
    assert run(fitted, "v-neck", "mug", "color") == ("v-neck", True)


def test_a_pair_without_any_known_value_flags_everything_novel(fitted):
    assert run(fitted, "navy blue", "lamp", "color") == ("navy blue", True)
    assert run(fitted, "Navy Blue", "dress", "colour") == ("Navy Blue", True)


def test_numbers_must_agree(fitted):
    assert run(fitted, "400 ml", "mug", "capacity") == ("400 ml", True)
    loose = make(match_numbers=False)
    loose.fit(VOCABULARY)
    assert run(loose, "400 ml", "mug", "capacity") == ("300 ml", False)


def test_values_without_letters_or_digits_are_novel_unless_known(fitted):
    assert run(fitted, "") == ("", True)
    assert run(fitted, "?!") == ("?!", True)
    canon = make()
    canon.fit({("dress", "color"): {"?!": 1}})
    assert run(canon, "?!") == ("?!", False)


def test_a_shared_key_resolves_to_the_most_frequent_spelling():
    canon = make()
    canon.fit({("shoe", "closure"): {"Lace-Up": 2, "lace-up": 9, "lace up": 4}})
    assert run(canon, "LACE-UP", "shoe", "closure") == ("lace-up", False)
    assert run(canon, "lace up", "shoe", "closure") == ("lace up", False)  # exact match: itself
    assert run(canon, "lace_up", "shoe", "closure") == ("lace-up", False)  # loose match: most frequent
    assert run(canon, "lace-upp", "shoe", "closure") == ("lace-up", False)


def test_threshold_changes_what_maps(fitted):
    strict = make(similarity_threshold=0.95)
    strict.fit(VOCABULARY)
    assert run(fitted, "navy blu") == ("navy blue", False)
    assert run(strict, "navy blu") == ("navy blu", True)
    lenient = make(similarity_threshold=0.6)
    lenient.fit(VOCABULARY)
    assert run(fitted, "blakc") == ("blakc", True)
    assert run(lenient, "blakc") == ("black", False)


def test_exact_matches_do_not_depend_on_the_threshold():
    canon = make(similarity_threshold=1.0)
    canon.fit(VOCABULARY)
    assert run(canon, " NAVY   blue") == ("navy blue", False)
    assert run(canon, "navy-blue") == ("navy blue", False)
    assert run(canon, "V-Neck", "dress", "neckline") == ("v-neck", False)


def test_fit_accepts_catalog_metadata_keys():
    metadata = CatalogMetadata(values={"dress\tcolor": {"navy blue": 3}})
    canon = make()
    canon.fit(metadata.values)
    assert run(canon, "navy-blue") == ("navy blue", False)
    assert canon.vocabulary == {("dress", "color"): {"navy blue": 3}}


def test_bad_fit_input_is_an_error():
    with pytest.raises(ValueError, match="neither"):
        make().fit({"dress color": {"red": 1}})
    with pytest.raises(ValueError, match="positive integer"):
        make().fit({("dress", "color"): {"red": 0}})


def test_using_it_before_fit_or_load_says_what_to_do():
    with pytest.raises(NotFittedError, match="fit"):
        run(make(), "red")


# --------------------------------------------------------------------------- batching
def test_canonicalize_many_equals_one_by_one(fitted):
    queries = QUERIES * 3  # > 20 queries of one pair in one search (FAISS's BLAS path)
    assert fitted.canonicalize_many(queries) == [
        fitted.canonicalize(v, product_type=pt, attribute=a) for v, pt, a in queries]
    assert fitted.canonicalize_many([]) == []


def test_search_threads_and_remembered_decisions_do_not_change_results(fitted):
    import faiss

    before = faiss.omp_get_max_threads()
    queries = QUERIES * 3
    expected = fitted.canonicalize_many(queries)
    assert fitted.canonicalize_many(queries) == expected  # second time: remembered decisions
    for threads in (0, 2):
        other = make(search_threads=threads)
        other.fit(VOCABULARY)
        assert other.canonicalize_many(queries) == expected
    assert faiss.omp_get_max_threads() == before


# --------------------------------------------------------------------------- vocabulary files
def _write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def test_vocabulary_file_jsonl(tmp_path):
    path = _write_jsonl(tmp_path / "vocab.jsonl", [
        {"product_type": "dress", "attribute": "color", "value": "teal", "count": 2},
        {"product_type": "dress", "attribute": "color", "value": "teal"},
        {"product_type": "sofa", "attribute": "material", "value": "boucle"},
    ])
    canon = make(vocabulary_file=str(path))
    canon.fit(VOCABULARY)
    assert run(canon, "Teal") == ("teal", False)
    assert run(canon, "navy blu") == ("navy blue", False)            # training values kept
    assert run(canon, "bouclé", "sofa", "material") == ("boucle", False)
    assert canon.vocabulary[("dress", "color")]["teal"] == 3


def test_vocabulary_file_json_object_and_metadata_json(tmp_path):
    values = {"dress\tcolor": {"teal": 4, "navy blue": 1}}
    (tmp_path / "values.json").write_text(json.dumps(values), encoding="utf-8")
    (tmp_path / "metadata.json").write_text(json.dumps({"values": values, "max_answer_tokens": 5}), encoding="utf-8")
    for name in ("values.json", "metadata.json"):
        canon = make(vocabulary_file=str(tmp_path / name), use_training_values=False)
        canon.fit(VOCABULARY)
        assert canon.vocabulary == {("dress", "color"): {"teal": 4, "navy blue": 1}}
        assert run(canon, "teal") == ("teal", False)
        assert run(canon, "red") == ("red", True)                     # training values left out


@pytest.mark.parametrize("lines, where, field", [
    (['{"product_type": "dress", "attribute": "color", "value": "red"}', "not json"], "line 2", None),
    (['{"product_type": "dress", "attribute": "color", "value": "red"}', "",
      '{"product_type": "dress", "value": "red"}'], "line 3", "attribute"),
    (['{"product_type": "dress", "attribute": "color", "value": " "}'], "line 1", "value"),
    (['{"product_type": "dress", "attribute": "color", "value": "red", "count": "3"}'], "line 1", "count"),
    (['{"product_type": "dress", "attribute": "color", "value": "red", "colour": "x"}'], "line 1", "colour"),
    (['["dress", "color", "red"]'], "line 1", None),
])
def test_a_malformed_jsonl_line_is_named(tmp_path, lines, where, field):
    path = tmp_path / "vocab.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(VocabularyFileError) as caught:
        make(vocabulary_file=str(path)).fit({})
    assert caught.value.where == where and caught.value.field == field
    assert str(path) in str(caught.value) and where in str(caught.value)
    if field:
        assert f"field {field!r}" in str(caught.value)


@pytest.mark.parametrize("data, message", [
    ({"dress color": {"red": 1}}, "key 'dress color'"),
    ({"dress\tcolor": {"red": -1}}, "field 'count'"),
])
def test_a_malformed_json_vocabulary_is_named(tmp_path, data, message):
    path = tmp_path / "vocab.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(VocabularyFileError, match=message):
        make(vocabulary_file=str(path)).fit({})


def test_missing_or_empty_vocabulary_file(tmp_path):
    with pytest.raises(DataFileNotFoundError, match="vocabulary_file"):
        make(vocabulary_file=str(tmp_path / "nope.jsonl")).fit({})
    (tmp_path / "empty.jsonl").write_text("\n", encoding="utf-8")
    with pytest.raises(VocabularyFileError, match="empty"):
        make(vocabulary_file=str(tmp_path / "empty.jsonl")).fit({})


# --------------------------------------------------------------------------- save / load
def test_save_load_gives_identical_outputs(fitted, tmp_path):
    fitted.save(tmp_path)
    saved = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*"))
    assert saved == ["canonicalizer", "canonicalizer/options.json", "canonicalizer/vocabulary.jsonl"]

    restored = make(similarity_threshold=0.5, dim=128)  # the saved options win: they define the index
    restored.load(tmp_path)
    assert restored.options == fitted.options
    assert restored.vocabulary == fitted.vocabulary
    queries = QUERIES * 2
    assert restored.canonicalize_many(queries) == fitted.canonicalize_many(queries)


def test_the_saved_vocabulary_is_itself_a_vocabulary_file(fitted, tmp_path):
    fitted.save(tmp_path)
    again = make(vocabulary_file=str(tmp_path / "canonicalizer" / "vocabulary.jsonl"), use_training_values=False)
    again.fit({})
    assert again.vocabulary == fitted.vocabulary


def test_a_file_vocabulary_survives_without_the_file(tmp_path):
    path = _write_jsonl(tmp_path / "vocab.jsonl", [{"product_type": "dress", "attribute": "color", "value": "teal"}])
    canon = make(vocabulary_file=str(path))
    canon.fit({})
    canon.save(tmp_path / "model")
    path.unlink()
    restored = make()
    restored.load(tmp_path / "model")
    assert run(restored, "TEAL") == ("teal", False)


def test_load_without_a_saved_canonicalizer_says_so(tmp_path):
    with pytest.raises(Exception, match="options.json is missing"):
        make().load(tmp_path)


def test_vectors_do_not_depend_on_the_process(tmp_path):
    """The index is rebuilt at load, so vectors must not use Python's per-process salted hash."""
    import mxt_faiss.embedding as embedding

    script = (
        "import importlib.util, sys, hashlib\n"
        f"spec = importlib.util.spec_from_file_location('emb', {embedding.__file__!r})\n"
        "mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)\n"
        # ascii(): the non-ASCII text goes in escaped, whatever encoding this process gives its arguments
        f"vectors = mod.CharNgramEmbedder(1, 3, 256).embed_many({ascii(['navy blue', 'Ünïcode-Wert 3/4'])})\n"
        "print(hashlib.sha256(vectors.tobytes()).hexdigest())\n"
    )
    digests = {
        subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                       env={**os.environ, "PYTHONHASHSEED": seed}).stdout
        for seed in ("1", "2")
    }
    assert len(digests) == 1


# --------------------------------------------------------------------------- options and registry
def test_registry_creates_it_with_validated_options():
    canon = manager.create("canonicalizers", "faiss", {"similarity_threshold": 0.9, "dim": 512})
    assert isinstance(canon, Canonicalizer) and canon.options.similarity_threshold == 0.9
    assert "faiss" in manager.list_canonicalizers()
    with pytest.raises(ConfigError, match="similarity_threshold"):
        make(similarity_threshold=1.5)
    with pytest.raises(ConfigError, match="ngram_max"):
        make(ngram_min=3, ngram_max=2)
    with pytest.raises(ConfigError, match="vocabulary_file"):
        make(use_training_values=False)
    with pytest.raises(ConfigError, match="Allowed options"):
        make(threshold=0.8)


# --------------------------------------------------------------------------- conformance
CONTRACT_VOCABULARY = {
    ("dress", "color"): {"navy blue": 5, "red": 3, "off white": 1},
    ("mug", "capacity"): {"300 ml": 2},
}


@pytest.mark.parametrize("name", [info.name for info in manager.list_components("canonicalizers")])
def test_canonicalizer_conformance(name, tmp_path):
    """Every registered canonicalizer, built from its ``example_options``, honours the contract."""
    cls = manager.get_component("canonicalizers", name).cls
    canon = cls(cls.parse_options(cls.example_options))
    canon.fit(CONTRACT_VOCABULARY)
    queries = [(value, pt, attr) for (pt, attr), values in CONTRACT_VOCABULARY.items() for value in values]
    queries += [("navy blue", "mug", "capacity"), ("anything", "unknown type", "unknown attribute")]
    before = [canon.canonicalize(v, product_type=pt, attribute=a) for v, pt, a in queries]
    for (value, _, _), result in zip(queries, before[:-2]):
        assert result == (value, False)
    for (value, _, _), (reported, novel) in zip(queries[-2:], before[-2:]):
        assert novel is True and isinstance(reported, str)
    if hasattr(canon, "canonicalize_many"):
        assert canon.canonicalize_many(queries) == before

    canon.save(tmp_path)
    assert not [p for p in tmp_path.rglob("*") if p.suffix in (".pkl", ".pickle", ".pt")]
    restored = cls(cls.parse_options(cls.example_options))
    restored.load(tmp_path)
    assert [restored.canonicalize(v, product_type=pt, attribute=a) for v, pt, a in queries] == before


def test_canonicalizer_conformance_covers_faiss():
    assert "faiss" in [info.name for info in manager.list_components("canonicalizers")]
