"""One set of field names: results.csv's columns are paths into the JSON record and the Python Result,
and docs/fields.md, which lists them, is what render_field_reference() writes."""
import csv
import io
import json
from pathlib import Path

import pytest

from wavemix_profile.render.csv import COLUMNS, render_csv
from wavemix_profile.render.fields import field_docs, render_field_reference, unit_of
from wavemix_profile.core.results import result_from_dict, to_dict, value_at

ROOT = Path(__file__).resolve().parents[1]
GOLDEN_STORE = ROOT / "tests" / "golden" / "results.jsonl"


def test_docs_fields_md_is_what_render_field_reference_writes():
    assert (ROOT / "docs" / "fields.md").read_text(encoding="utf-8") == render_field_reference(), \
        "regenerate: python -c 'from wavemix_profile.render.fields import render_field_reference as r; " \
        "open(\"docs/fields.md\", \"w\").write(r())'"


def _json_at(record, path):
    for name in path.split("."):
        if record is None:
            return None
        record = record[name]
    return record


def test_every_csv_column_is_the_path_of_its_value_in_the_json_record_and_the_result():
    lines = GOLDEN_STORE.read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    results = [result_from_dict(r) for r in records]
    rows = list(csv.DictReader(io.StringIO(render_csv(results))))
    assert tuple(rows[0]) == COLUMNS and len(rows) == len(records) == 2
    checked = 0
    for record, result, row in zip(records, results, rows):
        for path in COLUMNS:
            in_json, in_python = _json_at(record, path), value_at(result, path)
            assert in_json == to_dict(in_python), path
            assert row[path] == ("" if in_python is None else str(in_python)), path
            checked += in_python is not None
    assert checked > 40  # most columns hold a value in a real CPU run's records
    assert rows[0]["model_name"] == "WaveMix-16/5" and rows[1]["model_name"] == "ResNet-18"
    assert int(rows[0]["max_batch_train.max_batch"]) == records[0]["max_batch_train"]["max_batch"] > 0


def test_the_reference_covers_every_field_with_a_meaning_and_units_from_the_names():
    docs = {d.path: d for d in field_docs()}
    assert set(COLUMNS) <= set(docs)
    assert all(d.meaning for d in docs.values())
    assert docs["memory.peak_train_bytes"].unit == "bytes" and docs["memory.peak_train_bytes"].type == "int"
    assert docs["throughput.train_images_per_s"].unit == "images/s"
    assert docs["throughput.train_images_per_s"].type == "float or null"
    assert docs["max_batch_infer.probes[].fits"].type == "bool"
    assert docs["model_name"].meaning.startswith("display name")  # the comment beside the field
    assert docs["memory.reserved_infer_bytes"].meaning == docs["memory.reserved_train_bytes"].meaning  # shared
    assert (unit_of("wall_s"), unit_of("image_size"), unit_of("train_mfu"), unit_of("model_name")) == \
        ("s", "px", "fraction", "")


@pytest.mark.parametrize("path", ["max_batch_train.max_batch", "settings.image_size", "error"])
def test_value_at_stops_at_a_missing_measurement(path):
    result = result_from_dict(json.loads(GOLDEN_STORE.read_text(encoding="utf-8").splitlines()[0]))
    skipped = type(result)(settings=result.settings, model_name="x", family=None, environment=None)
    assert value_at(skipped, path) == (result.settings.image_size if path == "settings.image_size" else None)
