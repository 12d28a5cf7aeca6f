"""What scripts rely on: --json on stdout with human output on stderr, --quiet, --threads, the timing
options, and max-batch and profile writing their results to files. Real CLI processes throughout."""
from __future__ import annotations

import json
import re
import os
import subprocess
import sys

from in_process import run_cli

from wavemix_profile.core.results import profile_from_dict, result_from_dict
from wavemix_profile.store.store import Store

TINY = "python:factories:tiny_cnn"


def cli_process(*args, cwd):
    return subprocess.run([sys.executable, "-m", "wavemix_profile", *args], capture_output=True, text=True,
                          cwd=cwd, env={**os.environ}, timeout=600)


def cli(*args, cwd):
    return run_cli(*args, cwd=cwd)


def test_compare_json_is_the_stored_records_on_stdout_and_the_table_goes_to_stderr(tmp_path):
    run = cli("compare", "--models", TINY, "--image-sizes", "16", "--num-classes", "10", "--skip", "max-batch",
              "--threads", "1", "--warmup", "0", "--iterations", "3", "--repeats", "4", "--min-block-time", "0",
              "--json", "--out", "out", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    records = [result_from_dict(d) for d in json.loads(run.stdout)]   # stdout is the JSON and nothing else
    assert [r.model_name for r in records] == ["tiny_cnn"] and records[0].ok
    assert "16×16 px" in run.stderr and "wrote out/results.csv" in run.stderr
    stored = Store(tmp_path / "out" / "results.jsonl").read()
    assert [r.settings.key() for r in stored] == [records[0].settings.key()]
    timing = stored[0].throughput
    assert (timing.threads, timing.repeats, timing.min_block_s) == (1, 4, None)   # as asked, no calibration
    assert timing.train_block_iterations == timing.infer_block_iterations == 3
    assert len(timing.train_block_images_per_s) == 4
    assert stored[0].environment.cpu_threads == 1
    assert stored[0].settings.warmup_steps == 0 and stored[0].settings.threads == 1
    assert records[0].flops.forward_macs_per_image == 8 * 3 * 9 * 16 * 16 + 8 * 10   # the conv and the Linear


def test_the_cpu_preset_calibrates_blocks_and_quiet_prints_nothing(tmp_path):
    # in a process of its own: nothing at all on its stdout and stderr, whatever writes there
    run = cli_process("compare", "--models", TINY, "--image-sizes", "16", "--num-classes", "10", "--skip", "max-batch",
                      "--quiet", "--out", "out", cwd=tmp_path)
    assert run.returncode == 0 and run.stdout == "" and run.stderr == "", run.stderr
    timing = Store(tmp_path / "out" / "results.jsonl").read()[0].throughput
    assert timing.repeats == 5 and timing.min_block_s == 0.05    # results.CPU_QUICK_TIMING
    assert len(timing.train_block_images_per_s) == len(timing.infer_block_images_per_s) == 5
    # the calls per block were calibrated (how many depends on the machine's load; test_measure.py
    # checks the count against a call of known length)
    assert timing.train_block_iterations >= 1 and timing.infer_block_iterations >= 1


def test_bad_timing_options_are_one_line_exit_2(tmp_path):
    for args, words in ((["--repeats", "0"], "--repeats '0' must be >= 1"),
                        (["--warmup", "-1"], "--warmup '-1' must be >= 0"),
                        (["--threads", "two"], "--threads 'two' is not an integer"),
                        (["--min-block-time", "-1"], "must be a finite number of seconds")):
        run = cli("compare", "--models", TINY, *args, cwd=tmp_path)
        assert run.returncode == 2 and len(run.stderr.strip().splitlines()) == 1 and words in run.stderr, run.stderr
    assert not (tmp_path / "reports").exists()


def test_max_batch_writes_to_the_store_that_report_renders(tmp_path):
    run = cli("max-batch", TINY, "--image-size", "16", "--num-classes", "10", "--mode", "train",
              "--memory-budget", "2GiB", "--json", "--out", "mb", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    printed = result_from_dict(json.loads(run.stdout))
    stored = Store(tmp_path / "mb" / "results.jsonl").read()
    assert stored == [printed] and printed.max_batch_train.max_batch > 1
    assert printed.command.startswith("wavemix-profile max-batch python:factories:tiny_cnn")
    assert "max batch within 2.0 GiB (2.1 GB)" in " ".join(run.stderr.split())  # both units: GB could mean either
    report = cli("report", "mb/results.jsonl", cwd=tmp_path)
    assert report.returncode == 0 and f"{printed.max_batch_train.max_batch:,}" in report.stdout


def test_profile_shows_types_and_shapes_and_writes_json_and_markdown(tmp_path):
    run = cli("profile", TINY, "--image-size", "16", "--num-classes", "10", "--out", "p", "--json", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    profile = profile_from_dict(json.loads(run.stdout))
    saved = profile_from_dict(json.loads((tmp_path / "p" / "profile-tiny-cnn-16px.json").read_text()))
    assert saved == profile
    rows = {row.path: row for row in profile.modules}
    assert (rows["0"].type_name, rows["0"].output_shape, rows["0"].params) == ("Conv2d", (8, 16, 16), 8 * 27 + 8)
    assert (rows["5"].type_name, rows["5"].output_shape, rows["5"].params) == ("Linear", (10,), 8 * 10 + 10)
    assert rows["0"].forward_macs_per_image == 8 * 27 * 16 * 16 and rows["5"].forward_macs_per_image == 80
    assert rows[""].forward_macs_per_image == 8 * 27 * 16 * 16 + 80 and rows[""].params == 216 + 8 + 16 + 90
    assert profile.memory.params_bytes == 4 * rows[""].params + 4 * 8 * 2 + 8   # fp32 weights, BN stats and count
    assert "Conv2d" in run.stderr and "8×16×16" in run.stderr and "forward MACs/image (M)" in run.stderr
    markdown = (tmp_path / "p" / "profile-tiny-cnn-16px.md").read_text()
    assert re.search(r"^\|\s+0 \| Conv2d \| 8×16×16 \| 224 \| 67.9 \| 0.0553 \| 99.9 \|$", markdown, re.M)
