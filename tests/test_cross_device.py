"""The cross-device report: several devices (and hosts) side by side, ratios to a reference device.

The stores are real CPU measurements whose environments are rewritten to simulated machines: two
hosts with the same GPU name, and a third GPU.
"""
import csv
import dataclasses

import pytest

from wavemix_profile.cli import main
from wavemix_profile.commands.outputs import latest_per_key
from wavemix_profile.render.cross_device import (CHART_NAME, MARKDOWN_NAME, machines, pick_reference,
                                                 render_cross_device)
from wavemix_profile.core.results import Settings
from wavemix_profile.run.runner import run_all
from wavemix_profile.store.store import Store

# one xdist worker runs this module (make test's --dist loadgroup), so that its module-scoped fixtures,
# the measured CPU store, are made once rather than on each worker
pytestmark = pytest.mark.xdist_group("cross-device")

A100, H100 = "NVIDIA A100-SXM4-80GB", "NVIDIA H100 80GB HBM3"
MACHINES = {"a": (A100, "node-a", 1.0), "b": (A100, "node-b", 2.0), "c": (H100, "node-c", 4.0)}


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    """Two small models measured for real on this CPU, throughput included (the quick preset)."""
    folder = tmp_path_factory.mktemp("cpu")
    requests = [Settings(model=f"python:factories:{name}", image_size=8, batch_size=2, num_classes=10,
                         skip=("max-batch",), throughput_batch_size=2, warmup_steps=1, timed_iterations=1, repeats=3)
                for name in ("tiny_cnn", "linear_probe")]
    results = run_all(requests, Store(folder / "results.jsonl"))
    assert all(r.ok and r.throughput.train_images_per_s > 0 for r in results), [r.error for r in results]
    return results


def as_machine(result, device_name, host, speed):
    """`result` as if measured on `device_name` at `host`, `speed` times as fast."""
    throughput = dataclasses.replace(result.throughput, train_images_per_s=result.throughput.train_images_per_s * speed,
                                     infer_images_per_s=result.throughput.infer_images_per_s * speed)
    return dataclasses.replace(result, environment=dataclasses.replace(result.environment, device_name=device_name,
                                                                       host=host), throughput=throughput)


@pytest.fixture
def stores(measured, tmp_path):
    paths = []
    for name, machine in MACHINES.items():
        store = Store(tmp_path / name / "results.jsonl")
        for result in measured:
            store.append(as_machine(result, *machine))
        paths.append(str(store.path))
    return paths


def table(markdown: str, title: str) -> list[list[str]]:
    """The rows (header first) of the table under the heading that starts with `title`."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"## {title}")) + 2  # heading, blank
    rows = []
    while start < len(lines) and lines[start].startswith("|"):
        rows.append(lines[start])
        start += 1
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows if not row.startswith("| :---")]


def test_report_puts_each_machine_side_by_side_with_ratios_to_the_reference(stores, measured, tmp_path):
    out = tmp_path / "merged"
    assert main(["report", *stores, "--out", str(out), "--reference", "node-b"]) == 0
    text = (out / MARKDOWN_NAME).read_text()
    assert f"Reference device: **{A100} (node-b)**" in text
    header, *rows = table(text, "train images/s")
    assert header == ["model", f"{A100} (node-a)", f"{A100} (node-b)", H100]
    by_model = {row[0]: row[1:] for row in rows}
    for result in measured:
        a, b, c = by_model[result.model_name]
        assert a.endswith("(0.50×)") and c.endswith("(2.00×)") and "×" not in b
        base = result.throughput.train_images_per_s * 2.0
        assert b == (f"{base:,.0f}" if base >= 100 else f"{base:.3g}")
    # memory is the same CPU estimate everywhere: ratio 1, marked an estimate
    header, *rows = table(text, "peak train memory")
    assert all(cell.startswith("~") for row in rows for cell in row[1:])
    assert all(cell.endswith("(1.00×)") for row in rows for cell in (row[1], row[3]))
    for suffix in ("png", "svg"):
        assert (out / f"{CHART_NAME}.{suffix}").stat().st_size > 1000
    # the main report keeps the two A100 hosts apart: a CSV row per model and machine
    with open(out / "results.csv", newline="") as fh:
        assert len(list(csv.DictReader(fh))) == len(measured) * len(MACHINES)


def test_an_unknown_reference_is_refused_naming_the_devices(stores, tmp_path, capsys):
    out = tmp_path / "merged"
    assert main(["report", *stores, "--out", str(out), "--reference", "V100"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"error: unknown reference device 'V100'; accepted: '{A100} (node-a)', '{A100} (node-b)', "
                   f"'{H100}'")
    assert not out.exists()


def test_the_reference_is_found_by_label_device_name_or_host(measured):
    results = [as_machine(r, *m) for m in MACHINES.values() for r in measured]
    found = machines(results)
    assert [m.label for m in found] == [f"{A100} (node-a)", f"{A100} (node-b)", H100]
    assert pick_reference(found, None) == found[0]
    assert pick_reference(found, H100.lower()) == found[2]
    assert pick_reference(found, "node-b") == found[1]
    assert pick_reference(found, f"{A100} (node-a)") == found[0]
    with pytest.raises(ValueError, match="unknown reference device"):
        pick_reference(found, A100)  # two hosts have it: the name alone picks neither
    assert "Reference device: **NVIDIA H100 80GB HBM3**" in render_cross_device(results, "node-c")


def test_latest_per_key_keeps_machines_apart_and_one_answer_per_machine(measured):
    first = measured[0]
    a, b = as_machine(first, A100, "node-a", 1.0), as_machine(first, A100, "node-b", 1.0)
    a_again = as_machine(first, A100, "node-a", 3.0)
    assert latest_per_key([a, b]) == [a, b]                # same GPU, two hosts: two answers
    assert latest_per_key([a, b, a_again]) == [a_again, b]  # the same machine again: the last wins
    older = dataclasses.replace(a, environment=dataclasses.replace(a.environment, host=None))
    assert latest_per_key([older, a_again]) == [a_again]    # a record from before the host field


def test_the_comparison_tables_name_each_machine_so_same_gpu_rows_differ(measured):
    from wavemix_profile.render.columns import comparison_grids
    results = [as_machine(r, *m) for m in MACHINES.values() for r in measured]
    grid = comparison_grids(results)[0]
    assert grid.show_device
    rows = [(row.model, row.device) for row in grid.rows]
    assert rows.count(("tiny_cnn", f"{A100} (node-a)")) == 1 and rows.count(("tiny_cnn", f"{A100} (node-b)")) == 1
    assert ("tiny_cnn", H100) in rows and len(rows) == len(results)
