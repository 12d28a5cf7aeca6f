"""What a run writes stays in --out and stays whole: no write through a symbolic link, a full disk
loses nothing stored, stale temporary files are swept, and a store's nonsense lines are skipped
with one warning."""
import fcntl
import json
import math
import os
import shutil
import subprocess
import sys
import warnings

import pytest
from in_process import run_cli

from test_store import make
from wavemix_profile.core.errors import BadInputError
from wavemix_profile.core.results import result_to_json, to_dict
from wavemix_profile.store.store import Store

PARAMS_ONLY = ("--skip", "flops", "memory", "max-batch", "throughput")


def cli(*args, cwd=None):
    return run_cli(*args, cwd=cwd)


def stored_elsewhere(tmp_path) -> bytes:
    """A record and a torn tail, in a file outside --out: what a symbolic link could point at."""
    target = tmp_path / "elsewhere" / "precious.jsonl"
    target.parent.mkdir()
    target.write_bytes(result_to_json(make(size=32)).encode() + b"\n" + b'{"torn')
    return target


def test_a_store_or_lock_file_that_is_a_symbolic_link_is_refused_and_nothing_is_written_there(tmp_path):
    target = stored_elsewhere(tmp_path)
    before = target.read_bytes()
    linked = tmp_path / "linked" / "results.jsonl"
    linked.parent.mkdir()
    linked.symlink_to(target)
    with pytest.raises(BadInputError, match="is a symbolic link, not a regular file"):
        Store(linked).append(make(size=64))
    with pytest.raises(BadInputError, match="is a symbolic link"):
        Store(linked).read()
    assert target.read_bytes() == before, "the store's target was changed"

    store = Store(tmp_path / "locked" / "results.jsonl")
    store.path.parent.mkdir()
    store.lock_path.symlink_to(tmp_path / "elsewhere" / "created.lock")
    with pytest.raises(BadInputError, match="lock file .* is a symbolic link"):
        store.append(make(size=64))
    assert not (tmp_path / "elsewhere" / "created.lock").exists(), "the lock created a file at its target"

    store = Store(tmp_path / "folder-lock" / "results.jsonl")
    store.lock_path.mkdir(parents=True)
    with pytest.raises(BadInputError, match="lock file .* is a folder"):
        store.append(make(size=64))


def test_a_torn_tail_is_cut_only_in_a_file_shown_to_be_a_store(tmp_path):
    store = Store(tmp_path / "results.jsonl")
    store.path.write_bytes(b"notes that are not a store")
    store.append(make(size=32))
    assert store.path.read_bytes().startswith(b"notes that are not a store\n"), "bytes of a non-store were cut"
    with pytest.warns(UserWarning, match="skipping line 1"):
        assert [r.settings.image_size for r in store.read()] == [32]


@pytest.mark.parametrize("made", ["store", "lock", "lock-folder", "report"])
def test_the_cli_refuses_a_link_or_a_folder_where_it_writes_in_one_line_exit_2(tmp_path, made):
    target = stored_elsewhere(tmp_path)
    before = target.read_bytes()
    out = tmp_path / "out"
    out.mkdir()
    place = {"store": out / "results.jsonl", "lock": out / "results.jsonl.lock", "report": out / "report.md"}
    if made == "lock-folder":
        (out / "results.jsonl.lock").mkdir()
    else:
        place[made].symlink_to(target)
    run = cli("compare", "--models", "ResNet-18", "--image-sizes", "32", *PARAMS_ONLY, "--out", str(out))
    assert run.returncode == 2, run.stderr
    assert run.stderr.count("\n") == 1 and "not a regular file" in run.stderr, run.stderr
    assert target.read_bytes() == before


def bad_lines() -> list[str]:
    """Records whose types are right and whose numbers are not."""
    lines = []
    for field, value in (("image_size", -5), ("batch_size", 0)):
        data = to_dict(make(size=64))
        data["settings"][field] = value
        lines.append(json.dumps(data))
    data = to_dict(make(size=96))
    data["wall_s"] = math.nan
    lines.append(json.dumps(data))  # json writes NaN, and reads it back
    return lines


def test_out_of_range_records_are_skipped_with_one_warning_for_the_file(tmp_path):
    store = Store(tmp_path / "results.jsonl")
    store.append(make(size=32))
    with open(store.path, "a", encoding="utf-8") as fh:
        fh.write("\n".join(bad_lines()) + "\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert [r.settings.image_size for r in store.read()] == [32]
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "skipping 3 lines that are not records of this schema" in message
    assert "line 2: settings.image_size: expected an integer >= 1, got -5" in message
    assert "line 4: wall_s: expected a finite number of seconds >= 0, got nan" in message

    run = cli("report", str(store.path))
    assert run.returncode == 0, run.stderr
    assert [line for line in run.stderr.splitlines() if line] == [f"warning: {message}"]
    report = (tmp_path / "report.md").read_text()
    assert "## 32×32 px" in report and "-5×" not in report and "×-5" not in report  # only the good record's size


def test_resume_sweeps_temporary_files_a_killed_writer_left_and_keeps_live_ones(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    stale, live, unrelated = (out / ".memory_vs_params.png.0123456789ab.tmp", out / ".report.md.abcdefabcdef.tmp",
                              out / ".notes.tmp")
    for path in (stale, live, unrelated):
        path.write_bytes(b"half a file")
    with open(live, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # a writer still at work
        run = cli("compare", "--models", "python:factories:tiny_cnn", "--image-sizes", "8", "--batch-size", "2",
                  *PARAMS_ONLY, "--out", str(out), "--resume")
    assert run.returncode == 0, run.stderr
    assert not stale.exists() and live.exists() and unrelated.exists()


# --- a full disk ---------------------------------------------------------------------------------

FILLS_THE_DISK = """
import os
import torch.nn as nn

def make(*, num_classes, image_size):
    with open(os.environ["WAVEMIX_TEST_FILLER"], "wb") as fh:  # the disk is full from here on
        try:
            while True:
                fh.write(b"x" * 4096)
                fh.flush()
        except OSError:
            pass
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * image_size * image_size, num_classes))
"""


def in_small_filesystem(tmp_path, script: str, **env) -> subprocess.CompletedProcess:
    """Run `script` (sh) with a 1 MiB tmpfs at $FS, in a mount namespace of its own (nothing changes for the
    rest of the machine). Skips the test where this machine allows no such namespace."""
    fs = tmp_path / "fs"
    fs.mkdir()
    if not shutil.which("unshare"):
        pytest.skip("no unshare(1) to make a small file system")
    run = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-ec",
                          f'mount -t tmpfs -o size=1m tmpfs "$FS"\n{script}'], capture_output=True, text=True,
                         timeout=300, env={**os.environ, "FS": str(fs), **env})
    if run.returncode != 0 and ("unshare:" in run.stderr or "mount:" in run.stderr):
        pytest.skip(f"no mount namespace here: {run.stderr.strip()}")
    return run


def padded_store(path, size_mod_page: int) -> bytes:
    """A store of one record, padded with empty lines (skipped on read) to end `size_mod_page` bytes
    into a page: a tmpfs file can grow that far in place, with no free page left."""
    data = result_to_json(make(size=32)).encode() + b"\n"
    data += b"\n" * ((size_mod_page - len(data)) % 4096)
    path.write_bytes(data)
    return data


def test_a_full_disk_mid_append_is_one_line_and_the_store_stays_as_it_was(tmp_path):
    (tmp_path / "fills.py").write_text(FILLS_THE_DISK)
    before = padded_store(tmp_path / "before.jsonl", 4096 - 64)
    run = in_small_filesystem(tmp_path, f"""
        mkdir "$FS/out"
        cp "{tmp_path}/before.jsonl" "$FS/out/results.jsonl"
        {sys.executable} -m wavemix_profile compare --models "python:{tmp_path}/fills.py:make" --image-sizes 8 \\
            --batch-size 2 --num-classes 10 {' '.join(PARAMS_ONLY)} --out "$FS/out" 2>"{tmp_path}/stderr" || \\
            echo "$?" > "{tmp_path}/code"
        cp "$FS/out/results.jsonl" "{tmp_path}/after.jsonl"
    """, WAVEMIX_TEST_FILLER=str(tmp_path / "fs" / "filler"))
    assert run.returncode == 0, run.stderr
    stderr = (tmp_path / "stderr").read_text()
    assert (tmp_path / "code").read_text().strip() == "1", stderr
    assert stderr.count("\n") == 1 and "No space left on device" in stderr and "0 results of this run" in stderr, stderr
    assert (tmp_path / "after.jsonl").read_bytes() == before


def test_a_full_disk_mid_chart_is_one_line_and_leaves_the_old_files(tmp_path):
    padded_store(tmp_path / "results.jsonl", 0)
    run = in_small_filesystem(tmp_path, f"""
        mkdir "$FS/out"
        cp "{tmp_path}/results.jsonl" "$FS/out/results.jsonl"
        echo old > "$FS/out/report.md"
        dd if=/dev/zero of="$FS/filler" bs=4096 2>/dev/null || true
        truncate -s -8192 "$FS/filler"  # two pages free: room for a probe, not for a chart
        {sys.executable} -m wavemix_profile report "$FS/out/results.jsonl" 2>"{tmp_path}/stderr" || \\
            echo "$?" > "{tmp_path}/code"
        ls -a "$FS/out" > "{tmp_path}/listing"
        cat "$FS/out/report.md" > "{tmp_path}/report"
    """)
    assert run.returncode == 0, run.stderr
    stderr = (tmp_path / "stderr").read_text()
    assert (tmp_path / "code").read_text().strip() == "1", stderr
    assert stderr.count("\n") == 1 and stderr.startswith("error: cannot write ") and "No space left" in stderr, stderr
    assert (tmp_path / "report").read_text() == "old\n"
    assert not [name for name in (tmp_path / "listing").read_text().split() if name.endswith(".tmp")]


# Saves two figures: this process the first, a forked child the second, whose saving never ends.
SAVES_TWO = """
import os, signal, sys
from pathlib import Path
from matplotlib.figure import Figure
from wavemix_profile.render.chart_style import save_figures

class Endless(Figure):
    def savefig(self, *args, **kwargs):
        Path(sys.argv[2]).write_text(str(os.getpid()))
        while True:
            signal.pause()

save_figures([("first", Figure()), ("second", Endless())], Path(sys.argv[1]))
"""


def test_the_process_saving_charts_beside_the_run_dies_with_it(tmp_path):
    from test_outlive import kill_all
    from waiting import wait_for
    from test_signals import gone_within
    from wavemix_profile.run.host import usable_cores
    if usable_cores() < 2:
        pytest.skip("one core: every chart is saved in the run's own process")
    saver = tmp_path / "saver.pid"
    driver = subprocess.Popen([sys.executable, "-c", SAVES_TWO, str(tmp_path), str(saver)])
    try:
        wait_for(lambda: saver.exists() and saver.read_text(), "the chart process started saving")
        child = int(saver.read_text())
        driver.kill()
        driver.wait()
        assert gone_within(child, 60), "the chart process outlived its SIGKILLed parent"
    except BaseException:
        driver.kill()
        kill_all([int(saver.read_text())] if saver.exists() and saver.read_text() else [])
        raise
