"""`mxt extract`: never truncates an existing output without --overwrite; --resume after a kill at any
moment ends with every (product, attribute) once and the predictions of an uninterrupted run; image
URLs pointing at internal addresses never get a connection."""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from conftest import tiny_config
from mxt_sdk import Extractor
from mxt_sdk.cli import main
from test_image_urls import connected, listener


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """A saved image model and a catalog of 23 products (some bad) asking two attributes each."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("job")
    Extractor.from_config(tiny_config(["mag"])).save_pretrained(folder / "model")
    Image.new("RGB", (40, 30), (200, 10, 10)).save(folder / "red.png")
    lines = [json.dumps({"id": f"p{i}", "product_type": "mug", "title": f"Mug number {i}",
                         **({"image": "red.png"} if i % 3 else {})}) for i in range(20)]
    lines[4] = '{"id": "broken'
    lines.insert(9, json.dumps({"id": "no-title", "product_type": "mug"}))
    lines.insert(15, json.dumps({"id": "escape", "product_type": "mug", "title": "x", "image": "../../x.png"}))
    lines.append(json.dumps({"title": "no id"}))
    (folder / "catalog.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def _args(job, output, *extra):
    return ["extract", "--model", str(job / "model"), "--input", str(job / "catalog.jsonl"), "--output",
            str(output), "--attributes", "color,size", "--batch-size", "4", *extra]


def _invoke(job, output, *extra):
    return CliRunner().invoke(main, _args(job, output, *extra))


@pytest.fixture(scope="module")
def reference(job):
    output = job / "reference.jsonl"
    result = _invoke(job, output)
    assert result.exit_code == 4, result.output
    return output.read_bytes()


def test_an_existing_output_is_never_truncated_without_overwrite(job, reference, tmp_path):
    output = tmp_path / "out.jsonl"
    output.write_text("precious\n")
    result = _invoke(job, output)
    assert result.exit_code == 2 and "--overwrite" in result.output
    assert output.read_text() == "precious\n"
    assert _invoke(job, output, "--overwrite", "--resume").exit_code == 2
    assert output.read_text() == "precious\n"
    assert _invoke(job, output, "--overwrite").exit_code == 4
    assert output.read_bytes() == reference


def _resume_after_cuts(job, reference, tmp_path, cuts):
    rows = [json.loads(line) for line in reference.decode().splitlines()]
    assert len(rows) == 2 * 23 and len({(r["product_id"], r["attribute"]) for r in rows}) == len(rows)
    for cut in cuts:
        output = tmp_path / f"cut-{cut}.jsonl"
        output.write_bytes(reference[:cut])
        result = _invoke(job, output, "--resume")
        assert result.exit_code == 4, result.output
        assert output.read_bytes() == reference, f"cut at byte {cut}"


def test_resume_after_a_cut_mid_line_gives_the_uninterrupted_file(job, reference, tmp_path):
    middle = reference.index(b"\n", len(reference) // 2) - 5  # inside a row, mid-chunk
    _resume_after_cuts(job, reference, tmp_path, [middle])


@pytest.mark.slow
def test_resume_after_a_cut_at_any_byte_gives_the_uninterrupted_file(job, reference, tmp_path):
    _resume_after_cuts(job, reference, tmp_path,
                       [0, len(reference)] + random.Random(7).sample(range(1, len(reference)), 6))


def test_resume_refuses_an_output_written_from_other_input(job, tmp_path):
    output = tmp_path / "other.jsonl"
    output.write_text(json.dumps({"product_id": "zzz", "attribute": "color"}) + "\n")
    result = _invoke(job, output, "--resume")
    assert result.exit_code != 0 and "other input" in result.output


@pytest.mark.slow
def test_resume_after_sigkill_inside_the_job(job, reference, tmp_path):
    output = tmp_path / "killed.jsonl"
    for row in (3, 17, 30):
        env = {**os.environ, "MXT_CRASH_AT": f"extract.row:{row}"}
        command = [sys.executable, "-m", "mxt_sdk.cli", *_args(job, output, "--resume")]
        done = subprocess.run(command, env=env, capture_output=True, timeout=300)
        assert done.returncode == -9, done.stderr.decode()[-2000:]
    assert _invoke(job, output, "--resume").exit_code == 4
    assert output.read_bytes() == reference


@pytest.mark.parametrize("allow", [False, True])
def test_urls_to_a_local_port_get_error_rows_and_no_connection(job, tmp_path, allow):
    with listener() as sock:
        port = sock.getsockname()[1]
        catalog = tmp_path / "ssrf.jsonl"
        catalog.write_text("".join(json.dumps({"id": f"u{i}", "product_type": "mug", "title": "Mug",
                                               "image": f"http://{host}:{port}/x.jpg"}) + "\n"
                                   for i, host in enumerate(["127.0.0.1", "localhost"])))
        output = tmp_path / "ssrf-out.jsonl"
        result = CliRunner().invoke(main, ["extract", "--model", str(job / "model"), "--input", str(catalog),
                                           "--output", str(output), "--attributes", "color",
                                           *(["--allow-urls"] if allow else [])])
        assert result.exit_code == 3, result.output  # nothing could be answered (exits.NOTHING_RAN)
        rows = [json.loads(line) for line in output.read_text().splitlines()]
        assert [r["product_id"] for r in rows] == ["u0", "u1"]
        expected = "not a public one" if allow else "disabled"
        assert all(expected in r["error"] for r in rows), rows
        assert not connected(sock)
