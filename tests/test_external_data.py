"""The external-accuracy benchmark's data and verdicts (benchmarks/external_accuracy.py): every data file says
where it comes from and under which licence, brackets follow timm's retry sequence, and a verdict is unsafe
exactly when a prediction would name a batch that ran out of memory (or under-state a peak)."""
import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("external_accuracy", ROOT / "benchmarks" / "external_accuracy.py")
external = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = external   # its dataclasses look their module up by name
spec.loader.exec_module(external)


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "benchmarks" / "data").glob("*.csv")))
def test_every_data_file_names_its_source_and_licence(name):
    header = [line for line in (ROOT / "benchmarks" / "data" / name).read_text(encoding="utf-8").splitlines()
              if line.startswith("#")]
    assert any(line.startswith("# Source: https://") for line in header), name
    assert any(line.startswith("# Licence: ") for line in header), name


def test_timm_rows_are_brackets_of_its_retry_sequence():
    rows = external.timm_rows()
    assert len(rows) == 27
    # decay_batch_step from 512 with two steps between powers of two
    assert external.TIMM_SEQUENCE[:8] == (512, 384, 256, 192, 128, 96, 64, 48)
    by = {r.label: r for r in rows}
    assert (by["resnet101"].measured, by["resnet101"].bracket_top) == (256, 384)
    assert (by["convnext_base"].measured, by["convnext_base"].bracket_top) == (128, 192)
    assert (by["resnet50"].measured, by["resnet50"].bracket_top) == (512, None)   # where the search began
    assert all(r.settings["optimizer"] == "sgd-momentum" and r.settings["keep_grads"] for r in rows)
    assert by["inception_v3"].image_size == 299


@pytest.mark.parametrize("predicted, verdict", [(255, "pessimistic"), (256, "inside"), (383, "inside"),
                                                (384, "optimistic")])
def test_a_max_batch_is_unsafe_at_the_bracket_top(predicted, verdict):
    row = next(r for r in external.timm_rows() if r.label == "resnet101")   # ran at 256, not at 384
    assert external.Outcome(row, predicted, 1.0).verdict == verdict


@pytest.mark.parametrize("ratio, verdict", [(0.94, "optimistic"), (0.96, "inside"), (1.04, "inside"),
                                            (1.06, "pessimistic")])
def test_a_peak_is_unsafe_when_it_is_too_low(ratio, verdict):
    row = next(r for r in external.monet_rows() if r.label == "resnet50")
    assert external.Outcome(row, row.measured * ratio, 1.0).verdict == verdict


def test_the_papers_rows_are_not_judged():
    rows = external.paper_rows()
    assert len(rows) == 11 and {r.settings["amp"] for r in rows} == {"off"}
    assert external.Outcome(rows[0], rows[0].measured * 3, 1.0).verdict == "not judged"
