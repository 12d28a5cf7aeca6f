import json
import warnings

import pytest

from wavemix_profile.results import (MaxBatchResult, MemoryResult, ProbeRecord, Result, Settings,
                                     result_from_dict, result_to_json, to_dict)
from wavemix_profile.store import Store


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
