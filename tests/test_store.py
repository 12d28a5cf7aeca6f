import json
import signal
import subprocess
import sys
import threading
import warnings

import pytest

from wavemix_profile.core.results import (MaxBatchResult, MemoryResult, ProbeRecord, Result, SchemaError, Settings,
                                     result_from_dict, result_to_json, to_dict)
from wavemix_profile.store.store import Store


def make(model="ResNet-18", size=32, **kw):
    return Result(settings=Settings(model=model, image_size=size), model_name=model, family="convolutional",
                  environment=None, params_total=11_220_132, **kw)


def test_result_round_trips_through_json():
    r = make(memory=MemoryResult(method="cpu-estimate", batch_size=64, peak_train_bytes=123, peak_infer_bytes=45),
             max_batch_train=MaxBatchResult(mode="train", max_batch=448, budget_bytes=16 * 2**30, predicted=True,
                                            method="cpu-estimate", probes=(ProbeRecord(64, True, 10),), search_s=0.5))
    back = result_from_dict(json.loads(result_to_json(r)))
    assert back == r
    assert back.max_batch_train.probes[0].peak_bytes == 10
    assert back.memory.is_estimate


def test_newer_schema_is_refused():
    data = to_dict(make())
    data["schema_version"] = 99
    with pytest.raises(ValueError, match="schema 99"):
        result_from_dict(data)


def test_append_and_read_keep_order(tmp_path):
    store = Store(tmp_path / "r.jsonl")
    store.append(make(size=32))
    store.append(make(size=64))
    assert [r.settings.image_size for r in store.read()] == [32, 64]
    assert store.path.read_bytes().count(b"\n") == 2


def test_torn_last_line_is_skipped_with_warning_and_cut_before_next_append(tmp_path):
    store = Store(tmp_path / "r.jsonl")
    store.append(make(size=32))
    with open(store.path, "ab") as fh:
        fh.write(result_to_json(make(size=64)).encode()[:40])  # an append cut short
    with pytest.warns(UserWarning, match="torn last line"):
        assert [r.settings.image_size for r in store.read()] == [32]
    store.append(make(size=96))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert [r.settings.image_size for r in store.read()] == [32, 96]


def test_settings_key_distinguishes_every_setting():
    base = Settings(model="ResNet-18", image_size=32)
    assert base.key() == Settings(model="ResNet-18", image_size=32).key()
    assert base.key() != Settings(model="ResNet-18", image_size=32, amp="bf16").key()
    assert base.key() != Settings(model="ResNet-18", image_size=64).key()



def test_complete_last_record_without_newline_is_kept_on_append(tmp_path):
    store = Store(tmp_path / "r.jsonl")
    store.append(make(size=32))
    with open(store.path, "ab") as fh:
        fh.write(result_to_json(make(size=64)).encode())  # whole record, its newline never written
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert [r.settings.image_size for r in store.read()] == [32, 64]
        store.append(make(size=96))
        assert [r.settings.image_size for r in store.read()] == [32, 64, 96]
    assert store.path.read_bytes().count(b"\n") == 3


# Appends `count` records tagged `tag` once the file `go` exists, so both writers start together.
# Each line spans a few pages: a write that takes longer leaves a wider window for the other
# writer to find the file mid-write, which is what an unlocked store gets wrong.
APPENDER = """
import os, sys, time
from wavemix_profile.core.results import Result, Settings
from wavemix_profile.store.store import Store
path, tag, count, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
store = Store(path)
while not os.path.exists(go):
    time.sleep(0.001)
for i in range(count):
    store.append(Result(settings=Settings(model=tag, image_size=i + 1), model_name=tag, family=None, environment=None,
                        error="x" * 8000))
"""


def test_two_processes_appending_keep_every_record(tmp_path):
    store, go, count = Store(tmp_path / "r.jsonl"), tmp_path / "go", 1500
    writers = [subprocess.Popen([sys.executable, "-c", APPENDER, str(store.path), tag, str(count), str(go)],
                                stderr=subprocess.PIPE, text=True) for tag in ("a", "b")]
    go.touch()
    assert [w.wait() for w in writers] == [0, 0], [w.stderr.read() for w in writers]
    assert [w.stderr.read() for w in writers] == ["", ""]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = [(r.settings.model, r.settings.image_size) for r in store.read()]
    assert len(got) == 2 * count
    assert sorted(got) == sorted((tag, i + 1) for tag in ("a", "b") for i in range(count))
    assert store.lock_path.name == "r.jsonl.lock"


# Holds the store lock as an append does, writes half a record, and finishes it when told.
SLOW_WRITER = """
import sys
from wavemix_profile.store.locks import lock_file
from wavemix_profile.store.store import STORE_LOCK_BYTE, Store
store, line = Store(sys.argv[1]), sys.argv[2].encode() + b"\\n"
with lock_file(store.lock_path).hold(STORE_LOCK_BYTE, exclusive=True), open(store.path, "ab") as fh:
    fh.write(line[:40])
    fh.flush()
    print("half", flush=True)
    sys.stdin.readline()
    fh.write(line[40:])
"""


def _half_written(store: Store, result: Result) -> subprocess.Popen:
    """A second process in the middle of appending `result`: store lock held, half the line written."""
    writer = subprocess.Popen([sys.executable, "-c", SLOW_WRITER, str(store.path), result_to_json(result)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline() == "half\n"
    return writer


def test_a_reader_waits_for_a_live_writer_instead_of_seeing_half_a_line(tmp_path):
    store = Store(tmp_path / "r.jsonl")
    store.append(make(size=32))
    writer = _half_written(store, make(size=64))
    seen = []
    reader = threading.Thread(target=lambda: seen.append(store.read()))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a torn line seen mid-write would fail the read here
        reader.start()
        reader.join(0.3)
        assert reader.is_alive() and store.path.read_bytes().count(b"\n") == 1  # waiting, the line half written
        writer.communicate("go\n", timeout=30)
        reader.join(30)
    assert [r.settings.image_size for r in seen[0]] == [32, 64]


def test_an_append_waits_for_a_live_writer_instead_of_cutting_its_line(tmp_path):
    store = Store(tmp_path / "r.jsonl")
    store.append(make(size=32))
    writer = _half_written(store, make(size=64))
    appender = threading.Thread(target=store.append, args=(make(size=96),))
    appender.start()
    appender.join(0.3)
    assert appender.is_alive()  # waiting for the store lock, not cutting the half line as torn
    writer.communicate("go\n", timeout=30)
    appender.join(30)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert [r.settings.image_size for r in store.read()] == [32, 64, 96]


DROP = object()  # a key to leave out of the record


def _good_with(**changes):
    """A good record's dict, its top-level keys changed (or dropped with DROP)."""
    data = {**to_dict(make()), **changes}
    return {k: v for k, v in data.items() if v is not DROP}


def _settings(**changes):
    return {**to_dict(Settings(model="ResNet-18", image_size=32)), **changes}


BAD_RECORDS = [
    ([1, 2, 3], "record: expected object (Result), got list"),
    ("hello", "record: expected object (Result), got str"),
    (None, "record: expected object (Result), got null"),
    (_good_with(settings=DROP), "settings: required field missing"),
    (_good_with(settings=5), "settings: expected object (Settings), got int"),
    (_good_with(settings=_settings(image_size="32")), "settings.image_size: expected int, got str"),
    (_good_with(settings={"image_size": 32}), "settings.model: required field missing"),
    (_good_with(settings=_settings(compile=1)), "settings.compile: expected bool, got int"),
    (_good_with(settings=_settings(skip="flops")), "settings.skip: expected array, got str"),
    (_good_with(settings=_settings(skip=[5])), "settings.skip[0]: expected str, got int"),
    (_good_with(memory="x"), "memory: expected object (MemoryResult), got str"),
    (_good_with(params_total=True), "params_total: expected int, got bool"),
    (_good_with(wall_s="1.5"), "wall_s: expected float, got str"),
    (_good_with(model_name=None), "model_name: expected str, got null"),
    (_good_with(max_batch_train={"mode": "train", "max_batch": 8, "budget_bytes": 1, "predicted": False,
                                 "method": "m", "probes": [5], "search_s": 0.1}),
     "max_batch_train.probes[0]: expected object (ProbeRecord), got int"),
    (_good_with(schema_version="1"), "schema_version: expected int, got str"),
]


@pytest.mark.parametrize("record, why", BAD_RECORDS)
def test_result_from_dict_names_the_bad_field(record, why):
    with pytest.raises(SchemaError) as caught:
        result_from_dict(record)
    assert str(caught.value) == why


@pytest.mark.parametrize("record, why", BAD_RECORDS)
def test_read_skips_a_bad_line_with_a_warning_naming_it(tmp_path, record, why):
    store = Store(tmp_path / "r.jsonl")
    store.append(make(size=32))
    with open(store.path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")
    store.append(make(size=64))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert [r.settings.image_size for r in store.read()] == [32, 64]
    assert [str(w.message) for w in caught] == [f"{store.path}: skipping line 2: {why}"]


def test_float_fields_accept_ints_and_unknown_keys_are_ignored():
    data = to_dict(make())
    data.update(wall_s=3, added_later={"anything": 1})
    back = result_from_dict(data)
    assert back.wall_s == 3.0 and isinstance(back.wall_s, float)
    assert back == make(wall_s=3.0)


def test_torn_last_line_that_is_json_but_not_a_record_is_cut(tmp_path):
    store = Store(tmp_path / "r.jsonl")
    store.append(make(size=32))
    with open(store.path, "ab") as fh:
        fh.write(b"[1,2,3]")
    with pytest.warns(UserWarning, match="torn last line 2 .*record: expected object"):
        assert len(store.read()) == 1
    store.append(make(size=64))
    assert b"[1,2,3]" not in store.path.read_bytes()
    assert [r.settings.image_size for r in store.read()] == [32, 64]


def test_records_of_a_newer_schema_are_skipped_with_one_warning_and_kept(tmp_path):
    store = Store(tmp_path / "r.jsonl")
    newer = to_dict(make(size=64))
    newer["schema_version"] = 99
    store.append(make(size=32))
    with open(store.path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(newer) + "\n")
    store.append(make(size=96))
    with open(store.path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(newer))  # last, without its newline: complete, so not torn
    with pytest.warns(UserWarning, match=r"skipping lines 2, 4: written by a newer wavemix-profile \(schema 99")\
            as caught:
        assert [r.settings.image_size for r in store.read()] == [32, 96]
    assert len(caught) == 1
    store.append(make(size=128))  # another version's records stay in the file
    assert store.path.read_text(encoding="utf-8").count('"schema_version": 99') == 2
    with pytest.warns(UserWarning, match="lines 2, 4:"):
        assert [r.settings.image_size for r in store.read()] == [32, 96, 128]


# Holds claims for the test: reads "claim KEY", "try KEY", "release KEY" lines and answers each.
CLAIMER = """
import sys
from wavemix_profile.store.store import Store
store = Store(sys.argv[1])
for line in sys.stdin:
    verb, key = line.split(" ", 1)
    key = key.rstrip("\\n")
    if verb == "claim":
        store.wait_claim(key)
        print("held", flush=True)
    elif verb == "try":
        print(store.try_claim(key), flush=True)
    elif verb == "release":
        store.release(key)
        print("released", flush=True)
"""


class Claimer:
    """A second process holding claims on the store, driven line by line."""

    def __init__(self, path):
        self.proc = subprocess.Popen([sys.executable, "-c", CLAIMER, str(path)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)

    def __call__(self, verb, key):
        self.proc.stdin.write(f"{verb} {key}\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()


def test_claims_exclude_other_processes_until_released(tmp_path):
    store = Store(tmp_path / "r.jsonl")
    key, other = Settings(model="ResNet-18", image_size=32).key(), Settings(model="ResNet-18", image_size=64).key()
    claimer = Claimer(store.path)
    try:
        assert claimer("claim", key) == "held"
        assert not store.try_claim(key)
        assert store.try_claim(other)       # a claim holds one key only
        assert claimer("try", other) == "False"
        store.release(other)
        assert claimer("try", other) == "True"

        got = threading.Event()
        waiter = threading.Thread(target=lambda: (store.wait_claim(key), got.set()))
        waiter.start()
        assert not got.wait(0.3)            # still waiting: the other process holds it
        assert claimer("release", key) == "released"
        waiter.join(timeout=30)
        assert got.is_set()
        assert claimer("try", key) == "False"  # now this process holds it
        assert store.try_claim(key)          # a claim of our own never conflicts with us
        store.release(key)
        assert claimer("try", key) == "True"
    finally:
        claimer.proc.stdin.close()
        claimer.proc.wait(timeout=30)
    assert store.try_claim(key)              # the claimer exited holding it: the OS let it go
    store.release(key)
    store.release(key)                       # releasing what is not held is a no-op


def test_a_killed_process_leaves_no_stale_claim(tmp_path):
    store = Store(tmp_path / "r.jsonl")
    key = Settings(model="ResNet-18", image_size=32).key()
    claimer = Claimer(store.path)
    assert claimer("claim", key) == "held"
    assert not store.try_claim(key)
    claimer.proc.send_signal(signal.SIGKILL)
    claimer.proc.wait(timeout=30)
    assert store.try_claim(key)
    store.release(key)


def test_claims_and_reads_of_two_stores_of_one_path_share_the_process_locks(tmp_path):
    """A second Store of the same path going away must not drop the first one's claim."""
    store, key = Store(tmp_path / "r.jsonl"), Settings(model="ResNet-18", image_size=32).key()
    store.append(make())
    assert store.try_claim(key)
    other = Store(tmp_path / "r.jsonl")
    assert len(other.read()) == 1
    del other
    claimer = Claimer(store.path)
    try:
        assert claimer("try", key) == "False"
    finally:
        claimer.proc.stdin.close()
        claimer.proc.wait(timeout=30)
    store.release(key)


def test_same_figures_names_each_stored_figure_that_moved_and_ignores_timings(tmp_path):
    """scripts/same_figures.py, the check that a change moved no stored figure, on the golden real run."""
    from pathlib import Path
    golden = Path(__file__).parent / "golden" / "results.jsonl"
    script = Path(__file__).parents[1] / "scripts" / "same_figures.py"
    records = [json.loads(line) for line in golden.read_text().splitlines()]
    records[0]["throughput"]["train_images_per_s"] *= 2      # another day's timing: not a figure
    records[0]["wall_s"] += 1.0
    moved = tmp_path / "moved.jsonl"
    moved.write_text("".join(json.dumps(r) + "\n" for r in records))
    run = subprocess.run([sys.executable, str(script), str(moved), str(golden)], capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0 and "0 differing field(s)" in run.stdout, run.stdout
    records[0]["memory"]["peak_train_bytes"] += 512
    moved.write_text("".join(json.dumps(r) + "\n" for r in records))
    run = subprocess.run([sys.executable, str(script), str(moved), str(golden)], capture_output=True, text=True,
                         timeout=60)
    lines = run.stdout.splitlines()
    assert run.returncode == 1 and len(lines) == 2 and ": memory.peak_train_bytes: " in lines[0], run.stdout
    assert lines[0].startswith(f"{records[0]['model_name']} @ {records[0]['settings']['image_size']} px")
