"""The command line end to end on the CPU: real files, measurements in real child processes. The
entry point runs as `python -m wavemix_profile` (README's own comparison runs so in test_readme.py); the
commands run main() in this process (in_process.py), which saves an interpreter's start and a fork
server's imports each."""
import csv
import json
import os
import re
import shlex
import subprocess
import sys

import pytest

from in_process import run_cli as cli
from wavemix_profile import __version__


def cli_process(*args, cwd=None, columns=None):
    env = {**os.environ, **({"COLUMNS": str(columns)} if columns else {})}
    return subprocess.run([sys.executable, "-m", "wavemix_profile", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=600)


def test_version():
    run = cli_process("--version")
    assert run.returncode == 0 and run.stdout.strip() == f"wavemix-profile {__version__}"


@pytest.mark.parametrize("command", ["list", "compare", "max-batch", "profile", "report"])
def test_every_command_has_help_with_an_example(command):
    run = cli(command, "--help")
    assert run.returncode == 0 and "example" in run.stdout


def test_list_shows_the_zoo_with_paper_figures():
    run = cli("list", "--models", "WaveMix-*")
    assert run.returncode == 0
    assert "WaveMix-128/7" in run.stdout and "2.42" in run.stdout and "ResNet" not in run.stdout


@pytest.mark.parametrize("args, words", [
    (["--models", "ResNet-19"], "unknown model 'ResNet-19'"),
    (["--models", "WaveMix-16/5", "--image-sizes", "96"], "WaveMix-16/5 cannot take image size 96"),
    (["--image-sizes", "abc"], "image size 'abc'"),
    (["--batch-size", "0"], "must be >= 1"),
    (["--device", "tpu"], "unknown device 'tpu'"),
    (["--amp", "fp8"], "invalid choice: 'fp8'"),
    (["--memory-budget", "16 parsecs"], "16 parsecs"),
    (["--skip", "speed"], "unknown --skip value 'speed'"),
    (["--models", "timm:resnet5"], "unknown timm model"),
])
def test_bad_input_is_one_line_exit_2_and_stores_nothing(tmp_path, args, words):
    out = tmp_path / "out"
    run = cli("compare", "--out", str(out), *args)
    assert run.returncode == 2
    assert run.stderr.count("\n") == 1 and words in run.stderr, run.stderr
    assert not (out / "results.jsonl").exists()


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the no-CUDA message")
def test_cuda_without_cuda_exits_2(tmp_path):
    run = cli("compare", "--device", "cuda", "--out", str(tmp_path))
    assert run.returncode == 2 and "CUDA is not available" in run.stderr


ZOO = "2D FNet-64/5"  # the zoo's cheapest to measure: README.md's comparison, run by test_readme.py, has WaveMix's


@pytest.mark.slow
def test_compare_end_to_end_writes_every_file_then_resume_skips(tmp_path):
    out = tmp_path / "cmp"
    args = ["compare", "--models", ZOO, "python:factories:tiny_cnn", "--image-sizes", "32",
            "--batch-size", "8", "--out", str(out)]
    run = cli(*args)
    assert run.returncode == 0, run.stderr
    for name in ("results.jsonl", "results.csv", "report.md", "memory_vs_params.png", "memory_vs_params.svg",
                 "throughput.png", "max_batch.png"):
        assert (out / name).stat().st_size > 0, name
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    records.sort(key=lambda r: r["model_name"] != ZOO)  # two lanes: stored as they land
    assert [r["model_name"] for r in records] == [ZOO, "tiny_cnn"]
    assert all(r["error"] is None for r in records)
    assert records[0]["command"] == "wavemix-profile " + shlex.join(args)  # as a shell takes it back
    assert records[0]["tool_version"] == __version__
    assert re.fullmatch(r"[0-9a-f]{40}", records[0]["git_commit"]), "run from a checkout: its commit"
    zoo = records[0]
    assert zoo["memory"]["method"] == "cpu-estimate" and zoo["max_batch_train"]["predicted"] is True
    assert zoo["max_batch_train"]["budget_bytes"] == 16 * 2**30
    rows = list(csv.DictReader(open(out / "results.csv")))
    rows.sort(key=lambda row: row["model_name"] != ZOO)
    assert rows[0]["model_name"] == ZOO
    assert int(rows[0]["max_batch_train.max_batch"]) == zoo["max_batch_train"]["max_batch"]
    assert ZOO in run.stdout and "(pred.)" in (out / "report.md").read_text()

    again = cli(*args, "--resume")
    assert again.returncode == 0, again.stderr
    assert len((out / "results.jsonl").read_text().splitlines()) == 2


def _store_as_device(source, folder, device, scale_train_rate):
    """A copy of a real store as if measured on `device`: its name, and train images/s scaled by
    `scale_train_rate`, so each device's row can be told apart in the merged report."""
    folder.mkdir()
    records = [json.loads(line) for line in source.read_text().splitlines()]
    for record in records:
        record["environment"]["device_name"] = device
        record["throughput"]["train_images_per_s"] *= scale_train_rate
    (folder / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return records


def test_report_merges_stores_from_two_devices(tmp_path):
    measured = tmp_path / "measured"
    run = cli("compare", *TINY, "--image-sizes", "8", "--skip", "max-batch", "--out", str(measured))
    assert run.returncode == 0, run.stderr
    a = _store_as_device(measured / "results.jsonl", tmp_path / "a", "CPU: simulated host A", 1.0)
    b = _store_as_device(measured / "results.jsonl", tmp_path / "b", "CPU: simulated host B", 2.0)
    assert len(a) == len(b) == 1

    out = tmp_path / "merged"
    run = cli("report", str(tmp_path / "a" / "results.jsonl"), str(tmp_path / "b" / "results.jsonl"),
              "--out", str(out), columns=250)
    assert run.returncode == 0, run.stderr
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert [(r["model_name"], r["environment.device_name"]) for r in rows] == [("tiny_cnn", "CPU: simulated host A"),
                                                                               ("tiny_cnn", "CPU: simulated host B")]
    rates = [float(r["throughput.train_images_per_s"]) for r in rows]
    assert rates == [a[0]["throughput"]["train_images_per_s"], b[0]["throughput"]["train_images_per_s"]]
    assert rates[1] == 2 * rates[0] > 0

    table = [line for line in (out / "report.md").read_text().splitlines() if line.startswith("| ")]
    header = next(line for line in table if line.startswith("| model |"))
    cells = [c.strip() for c in header.strip("|").split("|")]
    assert "device" in cells, header
    device_rows = {}
    for line in table:
        row = [c.strip() for c in line.strip("|").split("|")]
        if len(row) == len(cells) and row[0] == "tiny_cnn":
            device_rows[row[cells.index("device")]] = row
    assert sorted(device_rows) == ["CPU: simulated host A", "CPU: simulated host B"]
    rate_column = next(i for i, c in enumerate(cells) if c.startswith("train throughput (images/s)"))
    shown = [float(device_rows[d][rate_column].strip("*").split()[0].replace(",", ""))  # "3,253 ±2%"
             for d in ("CPU: simulated host A", "CPU: simulated host B")]
    assert shown == pytest.approx(rates, rel=0.01)  # each device's row holds its own store's value
    assert "CPU: simulated host A" in run.stdout and "CPU: simulated host B" in run.stdout


def test_report_of_missing_store_is_exit_2(tmp_path):
    run = cli("report", str(tmp_path / "nope.jsonl"))
    assert run.returncode == 2 and "no results store" in run.stderr


def test_max_batch_on_cpu_is_labelled_predicted():
    run = cli("max-batch", "WaveMix-128/7", "--memory-budget", "16GiB", "--mode", "train")
    assert run.returncode == 0, run.stderr
    assert "predicted" in run.stdout and "fits" in run.stdout and "max batch within 16.0 GiB (17.2 GB)" in run.stdout
    assert "100 classes · adam · AMP fp16" in run.stdout


def test_max_batch_bad_budget_exit_2():
    run = cli("max-batch", "WaveMix-128/7", "--memory-budget", "16TB")
    assert run.returncode == 2 and "16TB" in run.stderr and "GiB" in run.stderr


def test_profile_breaks_down_params_flops_and_memory():
    run = cli("profile", "ResNet-18", "--depth", "1", "--batch-size", "8")
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    whole = next(ln for ln in lines if "(whole model)" in ln)
    assert "11,220,132" in whole and " 555 " in whole          # 555,422,720 MACs, in millions as profile shows
    assert "ResNet" in whole and " 100 " in whole               # the class and the output shape (100 classes)
    assert any("layer4" in ln and "Sequential" in ln and "512×4×4" in ln and "8,393,728" in ln for ln in lines)
    assert "optimizer state (adam)" in run.stdout and "CPU estimate, not GPU memory" in run.stdout


def test_list_counts_each_zoo_model_as_a_real_build_does_without_making_a_weight():
    import torch
    from wavemix_profile.commands.listing import registry_rows
    from wavemix_profile.models import get_entry
    rows = registry_rows(["*"], 100)
    assert len(rows) == 19
    for row in rows:
        built = get_entry(row["name"]).build(num_classes=100, image_size=32)
        assert row["params"] == sum(p.numel() for p in built.parameters()), row["name"]
    meta = torch.device("meta")
    with meta:  # what registry_rows builds in: a parameter made there has no storage
        assert next(get_entry("ResNet-18").build(num_classes=100, image_size=32).parameters()).device == meta


def test_list_markdown_explains_gaps_to_the_paper():
    run = cli("list", "--markdown", "--models", "ResNet-50", "WaveMix-128/7")
    assert run.returncode == 0, run.stderr
    rows = [ln for ln in run.stdout.splitlines() if ln.startswith("| ResNet-50") or ln.startswith("| WaveMix-128/7")]
    assert "| 25.2 | 23,705,252 | 0.941 |" in rows[0] and "Table 2" in rows[0]
    assert "| 2.42 | 2,416,580 | 0.999 |" in rows[1]


TINY = ["--models", "python:factories:tiny_cnn", "--batch-size", "2", "--num-classes", "10"]


@pytest.mark.parametrize("args, words", [
    (["--multiple-of", "2000000"], "--multiple-of must be between 1 and 1,000,000"),
    (["--memory-budget", "1MiB"], "memory budget 1.0 MiB leaves nothing for tensors"),
    (["--timeout", "-1"], "argument --timeout: '-1' must be a finite number of seconds >= 0"),
    (["--keep-errors", "--timeout", "soon"], "argument --timeout: 'soon' is not a number of seconds"),
])
def test_bad_run_options_are_one_line_exit_2(tmp_path, args, words):
    run = cli("compare", *TINY, "--out", str(tmp_path / "out"), *args)
    assert run.returncode == 2
    assert run.stderr.count("\n") == 1 and words in run.stderr, run.stderr
    assert not (tmp_path / "out" / "results.jsonl").exists()


def test_max_batch_refuses_a_budget_below_the_cuda_context():
    run = cli("max-batch", "python:factories:tiny_cnn", "--memory-budget", "500MiB")
    assert run.returncode == 2 and run.stderr.count("\n") == 1 and "above that" in run.stderr, run.stderr


def test_a_budget_past_the_search_limit_is_marked_capped_everywhere(tmp_path):
    out = tmp_path / "out"
    huge = ["--memory-budget", f"{10**30}GiB"]
    run = cli("compare", *TINY, "--image-sizes", "8", "8", "--skip", "flops", "throughput", "--out", str(out), *huge)
    assert run.returncode == 0, run.stderr
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert len(rows) == 1, "a repeated image size is measured once"
    assert rows[0]["max_batch_train.max_batch"] == "1000000" and rows[0]["max_batch_train.capped"] == "True"
    # the same table, wide enough for whole cells (a measuring run at another width would need a fork
    # server of its own: the environment its imports saw would differ)
    wide = cli("report", str(out / "results.jsonl"), columns=200)
    assert "│ 1,000,000 (pred., cap) │" in wide.stdout  # counts print with separators
    assert "(pred., cap)" in (out / "report.md").read_text()
    alone = cli("max-batch", "python:factories:tiny_cnn", "--image-size", "8", "--mode", "infer", *huge)
    assert alone.returncode == 0 and "1,000,000 (pred., cap)" in alone.stdout, alone.stdout


def test_a_wrong_output_shape_is_an_error_row_even_with_every_stage_but_params_skipped(tmp_path):
    out = tmp_path / "out"
    run = cli("compare", "--models", "python:factories:wrong_classes", "--image-sizes", "8", "--skip", "flops",
              "memory", "max-batch", "throughput", "--out", str(out))
    assert run.returncode == 1, run.stderr
    record = json.loads((out / "results.jsonl").read_text())
    assert record["error"] == ("ValueError: model output is shape (2, 7); expected logits of shape "
                               "(batch, num_classes) = (2, 100)")


@pytest.mark.parametrize("factory, words", [
    ("raises", "error: raises: RuntimeError: factory refused to build"),
    ("exits_cleanly", "error: exits_cleanly: model code called sys.exit(0) during the measurement"),
])
def test_profile_of_a_failing_model_is_one_line_exit_1(factory, words):
    run = cli("profile", f"python:factories:{factory}", "--image-size", "8")
    assert run.returncode == 1
    assert run.stderr.strip() == words and "Traceback" not in run.stderr


@pytest.mark.parametrize("where", ["a file", "store is a folder", "under /proc"])
def test_an_output_folder_that_cannot_be_written_is_exit_2_before_measuring(tmp_path, where):
    out = {"a file": tmp_path / "file.txt", "store is a folder": tmp_path / "out",
           "under /proc": "/proc/wavemix-profile-test"}[where]
    if where == "a file":
        out.write_text("keep me")
    if where == "store is a folder":
        (out / "results.jsonl").mkdir(parents=True)
    run = cli("compare", *TINY, "--image-sizes", "8", "--out", str(out))
    assert run.returncode == 2 and run.stderr.count("\n") == 1, run.stderr
    assert str(out) in run.stderr and "measuring" not in run.stdout
    if where == "a file":
        assert out.read_text() == "keep me"


def test_resume_measures_a_killed_model_again_and_reports_show_one_answer(tmp_path, reported):
    reported("WAVEMIX_TEST_MARKER")  # none yet: the model dies the first time
    out = tmp_path / "out"
    args = ["compare", "--models", "python:factories:dies_first_time", "--image-sizes", "16", "--batch-size", "2",
            "--skip", "flops", "max-batch", "throughput", "--out", str(out)]
    both = cli(*args[:2], "python:factories:tiny_cnn", *args[2:])
    assert both.returncode == 1, "a requested measurement failed"
    assert both.stderr.strip().endswith("1 of 2 measurements failed: dies_first_time @ 16 px")
    assert "| results (failed) | 2 (1) |" in (out / "report.md").read_text()
    rows = {r["model_name"]: r for r in csv.DictReader(open(out / "results.csv"))}
    assert "killed by SIGKILL" in rows["dies_first_time"]["error"] and rows["tiny_cnn"]["error"] == ""
    assert cli(*args, "--resume", "--keep-errors").returncode == 1
    assert len((out / "results.jsonl").read_text().splitlines()) == 2, "--keep-errors keeps the error"
    assert cli(*args, "--resume").returncode == 0
    assert len((out / "results.jsonl").read_text().splitlines()) == 3, "--resume measures the error again"
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert len(rows) == 1 and rows[0]["error"] == ""
    assert rows[0]["params_total"] == str(3 * 8 * 9 + 8 + 16 + 8 * 100 + 100)  # conv, BN, linear at 100 classes


def test_two_concurrent_resumed_runs_measure_each_thing_once(tmp_path):
    out = tmp_path / "out"
    args = [sys.executable, "-m", "wavemix_profile", "compare", "--models", "python:factories:slow_tiny_cnn",
            "--image-sizes", "8", "12", "--batch-size", "2", "--skip", "flops", "max-batch", "throughput",
            "--out", str(out), "--resume"]
    runs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for run in runs:
        _, stderr = run.communicate(timeout=300)
        assert run.returncode == 0, stderr
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert sorted(r["settings"]["image_size"] for r in records) == [8, 12], "each key measured once"
    assert all(r["error"] is None for r in records)


@pytest.mark.parametrize("factory, extra, words", [
    ("exits_cleanly", [], "error: model code called sys.exit(0) during the measurement"),
    ("sleeps", ["--timeout", "3"], "error: timed out after 3 s (--timeout); the measuring process was killed"),
])
def test_max_batch_of_a_model_that_exits_or_hangs_ends_with_one_line(factory, extra, words):
    run = cli("max-batch", f"python:factories:{factory}", "--image-size", "8", *extra)
    assert run.returncode == 1 and run.stderr.strip() == words, run.stderr


def test_the_readme_s_torchvision_example_trains_from_the_smallest_batch_that_runs(tmp_path):
    out = tmp_path / "out"
    run = cli("compare", "--models", "torchvision:resnet18", "--image-sizes", "32", "--skip", "flops", "throughput",
              "--out", str(out))
    assert run.returncode == 0, run.stderr
    record = json.loads((out / "results.jsonl").read_text())
    assert record["error"] is None and record["max_batch_train"]["max_batch"] > 64
    assert "batch 1 cannot run (ValueError: Expected more than 1 value per channel" in record["max_batch_train"]["method"]
    assert record["max_batch_infer"]["probes"][0]["batch"] == 1, "inference runs at batch 1"


OWN_MODELS = '''
import torch.nn as nn


def small_cnn(*, num_classes, image_size):
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(8, num_classes))


def without_keywords(classes):
    return nn.Linear(3, classes)
'''


def console_script(*args, cwd):
    """The installed `wavemix-profile` command, which, unlike `python -m`, does not search the working folder."""
    script = os.path.join(os.path.dirname(sys.executable), "wavemix-profile")
    return subprocess.run([script, *args], capture_output=True, text=True, cwd=cwd, timeout=600,
                          env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})


def test_your_own_model_by_module_name_or_file_path_from_its_folder(tmp_path):
    (tmp_path / "mymodels.py").write_text(OWN_MODELS)
    (tmp_path / "nested").mkdir()
    run = console_script("compare", "--models", "python:mymodels:small_cnn", "python:mymodels.py:small_cnn",
                         "--image-sizes", "16", "--skip", "flops", "max-batch", "throughput", "--out", "out",
                         cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    records = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    assert [r["error"] for r in records] == [None, None]
    assert [r["params_total"] for r in records] == [3 * 8 * 9 + 8 + 8 * 100 + 100] * 2
    from_elsewhere = console_script("profile", "python:../mymodels.py:small_cnn", "--image-size", "16",
                                    cwd=tmp_path / "nested")
    assert from_elsewhere.returncode == 0 and "(whole model)" in from_elsewhere.stdout, from_elsewhere.stderr


def test_a_factory_without_num_classes_and_image_size_is_one_line_exit_2(tmp_path):
    (tmp_path / "mymodels.py").write_text(OWN_MODELS)
    run = console_script("profile", "python:mymodels:without_keywords", cwd=tmp_path)
    assert run.returncode == 2 and run.stderr.count("\n") == 1
    assert "must accept num_classes= and image_size= keyword arguments; it lacks num_classes and image_size" in run.stderr


def test_timm_models_with_a_patch_grid_are_built_at_the_image_size():
    import torch
    from wavemix_profile.sources.sources import resolve_source
    vit = resolve_source("timm:vit_tiny_patch16_224").build(num_classes=10, image_size=32)
    assert vit(torch.randn(1, 3, 32, 32)).shape == (1, 10)
    resnet = resolve_source("timm:resnet18").build(num_classes=10, image_size=32)  # takes no img_size
    assert resnet(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_profile_refuses_the_options_only_a_max_batch_search_reads():
    run = cli("profile", "ResNet-18", "--memory-budget", "16GiB")
    assert run.returncode == 2 and run.stderr.strip() == "error: wavemix-profile: unrecognized arguments: --memory-budget 16GiB"
