"""Readers (products JSONL/Parquet, ExtractGPT JSONL, ImplicitAVE TSV) and format auto-detection.

Every file is written to tmp_path in the real format (rows shaped like the public data sets)."""
from __future__ import annotations

import json
import types

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mxt_sdk import Product, Reader, hookimpl
from mxt_sdk.data.readers import detect_reader, read_products
from mxt_sdk.errors import ConfigError, DataFileError, DataFileNotFoundError, RecordError
from mxt_sdk.plugins import manager
from mxt_sdk.plugins.components import ComponentOptions
from mxt_sdk.plugins.manager import register_plugin
from mxt_readers.products import write_products

# --------------------------------------------------------------------------- helpers


def write_jsonl(path, records):
    """Write dicts as JSON lines; a str is written as the line itself (for malformed lines)."""
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def split(items):
    products = [i for i in items if isinstance(i, Product)]
    errors = [i for i in items if isinstance(i, RecordError)]
    assert len(products) + len(errors) == len(items), "a reader yielded something else"
    return products, errors


PRODUCTS = [
    {"id": "p1", "product_type": "dress", "title": "Calvin Klein Women's Printed Dress",
     "description": "A-line.", "bullets": ["cotton", "machine wash"], "image": "img/p1.jpg",
     "attributes": {"neckline": "Scoop Neck", "sleeve": None}},
    {"id": "p2", "product_type": "shoes", "title": "Crocs Women's Jayna Ballet Flat",
     "attributes": {"color": "Nautical Navy"}},
    {"id": "p3", "product_type": "shoes", "title": "Finn Comfort Women's Adana"},
]

EXTRACTGPT = [
    {"input": "Ellie Shoes Women's 8400, Red Patent, 14 M US", "category": "Shoes",
     "target_scores": {"Brand": {"Ellie Shoes": 1}, "Color": {"Red Patent": 1}, "Size": {"14 M US": 1}}},
    {"input": "YTQHXY Metal Spinner Spoon Fishing Lure Hard Baits 85mm 20g", "category": "Lure",
     "target_scores": {"Model Number": {"n/a": 1}, "Brand Name": {"YTQHXY": 1}, "Material": {"Metal": 1}}},
    {"input": "New Fashion Snapback Cap", "category": "Baseball Caps",
     "target_scores": {"Style": {"n/a": 1, "Snapback": 1}, "Color": {"Red": 1, "Blue": 1}}},
]

TSV_HEADER = "id\timages\tcategory\ttexts\tattribute_names\tattribute_values"
TSV_ROWS = [
    "B00UIHV5MW\tB00UIHV5MW.jpg\tShirts & Tops\t[Title] Rick Owens Lilies Womens Semi-Sheer LS  T-Shirt\tNeckline\tScoop Neck",
    'B00ADURNIO\tB00ADURNIO.jpg\tShoes\t"[Title] Laredo Men\'s 13"" Snake Python  Boots"\tBoot Style\tWestern/Cowboy',
    "B003FX3RAO\tB003FX3RAO.jpg\tCandy & Chocolate\t[Title] Ice Breakers Sugar Free , Coolmint, 1.50 oz\tCandy Variety\tMints",
]


def write_tsv(path, header, rows, newline="\n"):
    path.write_bytes((newline.join([header, *rows]) + newline).encode("utf-8"))
    return path


# --------------------------------------------------------------------------- products


def test_products_jsonl_reads_every_field(tmp_path):
    path = write_jsonl(tmp_path / "catalog.jsonl", PRODUCTS)
    products, errors = split(list(read_products(path)))
    assert errors == []
    assert [p.id for p in products] == ["p1", "p2", "p3"]
    assert products[0] == Product(**PRODUCTS[0])
    assert products[0].attributes == {"neckline": "Scoop Neck", "sleeve": None}


def test_products_jsonl_bad_lines_become_errors_and_the_rest_comes_through(tmp_path):
    missing_title = {"id": "p9", "product_type": "shoes"}
    path = write_jsonl(tmp_path / "catalog.jsonl",
                       [PRODUCTS[0], '{"id": "p4", "title": ', missing_title, "", "[1, 2]", PRODUCTS[1]])
    items = list(read_products(path))
    products, errors = split(items)
    assert [p.id for p in products] == ["p1", "p2"]
    assert isinstance(items[1], RecordError) and items[1].record == "line 2 of catalog.jsonl"
    assert "not valid JSON" in items[1].reason
    assert errors[1].field == "title" and errors[1].record == "line 3 of catalog.jsonl (id 'p9')"
    assert "missing" in str(errors[1])
    assert errors[2].record == "line 5 of catalog.jsonl" and "JSON object" in errors[2].reason


def test_products_jsonl_undecodable_line_spoils_only_itself(tmp_path):
    path = tmp_path / "catalog.jsonl"
    path.write_bytes(json.dumps(PRODUCTS[0]).encode() + b"\n{\"id\": \"\xff\xfe\"}\n"
                     + json.dumps(PRODUCTS[1]).encode() + b"\n")
    products, errors = split(list(read_products(path)))
    assert [p.id for p in products] == ["p1", "p2"]
    assert errors[0].record == "line 2 of catalog.jsonl" and "UTF-8" in errors[0].reason


def test_products_parquet_round_trip(tmp_path):
    originals = [Product(**record) for record in PRODUCTS]
    path = tmp_path / "catalog.parquet"
    assert write_products(originals, path, row_group_size=2) == 3
    assert pq.ParquetFile(path).num_row_groups == 2
    assert detect_reader(path) == "products"
    back, errors = split(list(read_products(path, batch_size=1)))
    assert errors == [] and back == originals
    assert back[0].attributes == {"neckline": "Scoop Neck", "sleeve": None}  # None != absent


def test_products_parquet_accepts_map_and_struct_columns_and_names_bad_rows(tmp_path):
    table = pa.table({
        "id": ["a", "b", "c"],
        "product_type": ["shoes", "shoes", "shoes"],
        "title": ["Boot", None, "Sandal"],
        "attributes": pa.array([[("color", "red"), ("size", None)], [], [("color", "tan")]],
                               type=pa.map_(pa.string(), pa.string())),
    })
    pq.write_table(table, tmp_path / "map.parquet")
    items = list(read_products(tmp_path / "map.parquet"))
    assert items[0].attributes == {"color": "red", "size": None}
    assert isinstance(items[1], RecordError)
    assert items[1].record == "row 2 of map.parquet (id 'b')" and items[1].field == "title"
    assert items[2].attributes == {"color": "tan"}

    struct = pa.table({"id": ["a", "b"], "product_type": ["x", "x"], "title": ["t", "u"],
                       "attributes": [{"color": "red", "size": None}, {"color": None, "size": "9"}]})
    pq.write_table(struct, tmp_path / "struct.parquet")
    items = list(read_products(tmp_path / "struct.parquet"))
    assert [i.attributes for i in items] == [{"color": "red"}, {"size": "9"}]  # nulls are padding


def test_products_parquet_unreadable_file_is_a_file_error(tmp_path):
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"PAR1 not really parquet")
    with pytest.raises(DataFileError, match="broken.parquet"):
        list(read_products(path, reader="products"))


# --------------------------------------------------------------------------- extractgpt


def test_extractgpt_maps_fields_not_stated_and_several_values(tmp_path):
    path = write_jsonl(tmp_path / "train.jsonl", EXTRACTGPT)
    products, errors = split(list(read_products(path)))
    assert errors == []
    first, lure, cap = products
    assert (first.id, first.product_type, first.title) == (
        "train-1", "Shoes", "Ellie Shoes Women's 8400, Red Patent, 14 M US")
    assert first.attributes == {"Brand": "Ellie Shoes", "Color": "Red Patent", "Size": "14 M US"}
    assert lure.id == "train-2" and lure.attributes["Model Number"] is None  # "n/a" = not stated
    assert cap.attributes == {"Style": "Snapback", "Color": "Red"}  # first stated value wins


def test_extractgpt_ids_use_id_field_or_prefix(tmp_path):
    path = write_jsonl(tmp_path / "test.jsonl", [{**EXTRACTGPT[0], "id": "x-7"}, EXTRACTGPT[1]])
    assert [p.id for p in read_products(path)] == ["x-7", "test-2"]
    assert [p.id for p in read_products(path, id_prefix="ae")] == ["x-7", "ae-2"]


def test_extractgpt_bad_records_name_line_and_field(tmp_path):
    no_category = {"input": "A title", "target_scores": {"Brand": {"Acme": 1}}}
    bad_scores = {"input": "A title", "category": "Lure", "target_scores": {"Brand": "Acme"}}
    path = write_jsonl(tmp_path / "train.jsonl",
                       [EXTRACTGPT[0], no_category, "not json at all", bad_scores, EXTRACTGPT[1]])
    products, errors = split(list(read_products(path, reader="extractgpt")))
    assert [p.title for p in products] == [EXTRACTGPT[0]["input"], EXTRACTGPT[1]["input"]]
    assert [(e.record, e.field) for e in errors] == [
        ("line 2 of train.jsonl", "category"),
        ("line 3 of train.jsonl", None),
        ("line 4 of train.jsonl", "target_scores.Brand"),
    ]
    assert str(errors[0]) == "line 2 of train.jsonl, field 'category': is missing"


# --------------------------------------------------------------------------- implicitave


def test_implicitave_eval_file_with_images_domain_and_crlf(tmp_path):
    (tmp_path / "images").mkdir()
    rows = [r + "\tClothing" for r in TSV_ROWS]
    path = write_tsv(tmp_path / "eval_dev.tsv", TSV_HEADER + "\tdomain", rows, newline="\r\n")
    products, errors = split(list(read_products(path)))
    assert errors == []
    shirt, boots, candy = products
    assert shirt == Product(id="B00UIHV5MW", product_type="Shirts & Tops",
                            title="Rick Owens Lilies Womens Semi-Sheer LS  T-Shirt",
                            image="images/B00UIHV5MW.jpg", attributes={"Neckline": "Scoop Neck"})
    assert boots.title == "Laredo Men's 13\" Snake Python  Boots"  # quoted field, doubled quotes
    assert candy.attributes == {"Candy Variety": "Mints"}


def test_implicitave_images_follow_the_folder_unless_forced(tmp_path):
    path = write_tsv(tmp_path / "train.tsv", TSV_HEADER, TSV_ROWS)  # no images/ folder: text only
    assert [p.image for p in read_products(path)] == [None, None, None]
    assert next(read_products(path, images="always")).image == "images/B00UIHV5MW.jpg"
    (tmp_path / "images").mkdir()
    assert next(read_products(path)).image == "images/B00UIHV5MW.jpg"
    assert next(read_products(path, images="never")).image is None


def test_implicitave_bad_rows_name_line_and_column(tmp_path):
    rows = [
        TSV_ROWS[0],
        "B0000BAD01\tB0000BAD01.jpg\tShoes\t[Title] Too few columns",
        '"B0SPANNING"\tx.jpg\tShoes\t"[Title] A title on\ntwo lines"\tColor\tRed',  # lines 4-5
        "B0000BAD02\tB0000BAD02.jpg\tShoes\t[Title] \tColor\tRed",
        "B0000BAD03\tB0000BAD03.jpg\tShoes\t[Title] Boots\tColor\t",
        TSV_ROWS[2],
    ]
    path = write_tsv(tmp_path / "val.tsv", TSV_HEADER, rows)
    items = list(read_products(path))
    products, errors = split(items)
    assert [p.id for p in products] == ["B00UIHV5MW", "B0SPANNING", "B003FX3RAO"]
    assert products[1].title == "A title on\ntwo lines"
    assert [(e.record, e.field) for e in errors] == [
        ("line 3 of val.tsv", None), ("line 6 of val.tsv", "texts"), ("line 7 of val.tsv", "attribute_values"),
    ]
    assert "4 tab-separated columns" in errors[0].reason


def test_implicitave_header_without_required_columns_is_a_file_error(tmp_path):
    path = write_tsv(tmp_path / "odd.tsv", "id\ttexts", ["1\t[Title] x"])
    with pytest.raises(DataFileError, match=r"odd.tsv.*attribute_names"):
        list(read_products(path, reader="implicitave"))


# --------------------------------------------------------------------------- detection


def test_detection_picks_the_one_reader_that_recognises_each_format(tmp_path):
    assert detect_reader(write_jsonl(tmp_path / "train.jsonl", EXTRACTGPT)) == "extractgpt"
    assert detect_reader(write_jsonl(tmp_path / "catalog.json", PRODUCTS)) == "products"
    assert detect_reader(write_tsv(tmp_path / "val.tsv", TSV_HEADER, TSV_ROWS)) == "implicitave"


def test_detection_errors_list_the_readers(tmp_path):
    unknown = tmp_path / "notes.txt"
    unknown.write_text("hello\n")
    with pytest.raises(DataFileError, match=r"No reader recognises .*notes.txt.*extractgpt, implicitave, products"):
        detect_reader(unknown)
    with pytest.raises(DataFileNotFoundError, match="No such data file") as info:
        read_products(tmp_path / "missing.jsonl")
    assert isinstance(info.value, FileNotFoundError)
    with pytest.raises(DataFileNotFoundError, match="folder"):
        read_products(tmp_path)


def test_detection_refuses_to_guess_between_two_readers(tmp_path):
    class Greedy(Reader):
        """Claims every file."""

        name = "greedy"

        @classmethod
        def can_read(cls, path):
            return True

        def read(self, path):
            yield from ()

    @hookimpl
    def mxt_register_readers(register):
        register(Greedy)

    register_plugin(types.SimpleNamespace(mxt_register_readers=mxt_register_readers), "greedy-plugin")
    path = write_jsonl(tmp_path / "catalog.jsonl", PRODUCTS)
    with pytest.raises(DataFileError, match="Several readers recognise .*greedy, products"):
        read_products(path)
    assert [p.id for p in read_products(path, reader="products")] == ["p1", "p2", "p3"]


def test_reader_options_are_checked_before_reading(tmp_path):
    path = write_jsonl(tmp_path / "train.jsonl", EXTRACTGPT)
    with pytest.raises(ConfigError, match="id_prefx"):
        read_products(path, id_prefx="x")


# --------------------------------------------------------------------------- conformance


@pytest.mark.parametrize("name", manager.list_readers())
def test_every_reader_conforms(name, tmp_path):
    """Typed options, a docstring, and a can_read that answers False (never raises) on odd files."""
    cls = manager.get_component("readers", name).cls
    assert issubclass(cls.Options, ComponentOptions) and cls.__doc__
    odd = {"empty.jsonl": b"", "empty.tsv": b"", "blob.tsv": b"\x00\xff\xfe garbage",
           "blob.parquet": b"PAR1", "array.json": b"[\n  {\"title\": 1}\n]\n", "notes.txt": b"hi\n"}
    for file_name, content in odd.items():
        (tmp_path / file_name).write_bytes(content)
        assert cls.can_read(tmp_path / file_name) is False, file_name
    assert isinstance(manager.create("readers", name), Reader)


def test_a_deeply_nested_line_is_a_bad_record_not_a_crash():
    from mxt_readers._jsonl import parse_object

    with pytest.raises(RecordError, match="nested too deeply"):
        parse_object('{"id": "d", "title": ' + "[" * 100_000, "line 3 of x.jsonl")
