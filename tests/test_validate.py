"""`wavemix-profile validate --rehearse`: the GPU validation's whole pipeline, run on the CPU, killed and resumed."""
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from wavemix_profile.render.paper import PaperComparison
from wavemix_profile.render.validation import contradictions
from wavemix_profile.validation.plan import REHEARSAL_CHECK_MODELS, REHEARSAL_LABEL, STAGE_NAMES

LABELLED = f"({REHEARSAL_LABEL})"


BOUND_S = 1200  # the whole pipeline, three times, on a busy 2-core machine: a bound for a hang only


def validate(*args, cwd):
    return subprocess.run([sys.executable, "-m", "wavemix_profile", "validate", "--rehearse", *args],
                          capture_output=True, text=True, cwd=cwd, timeout=BOUND_S)


def lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.slow
@pytest.mark.timeout(2 * BOUND_S)
def test_rehearsal_killed_mid_run_then_resumed_writes_every_file_once(tmp_path):
    out = tmp_path / "reports" / "rehearsal-cpu"
    first = subprocess.Popen([sys.executable, "-m", "wavemix_profile", "validate", "--rehearse"], cwd=tmp_path,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + BOUND_S
    while not lines(out / "results.jsonl") and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    kept = lines(out / "results.jsonl")
    # after the compare stage's first model (its two lanes may land together on a busy machine), before
    # the later stages
    assert len(kept) in (1, 2) and not (out / "VALIDATION.md").exists(), "the kill should land mid-run"

    run = validate(cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "validation complete" in run.stdout
    compare = lines(out / "results.jsonl")
    assert [r["model_name"] for r in compare] == ["WaveMix-16/5", "2D FNet-64/5"] and compare[0] == kept[0]
    for name in ("report.md", "results.csv", "memory_vs_params.png", "max_batch.png", "VALIDATION.md"):
        assert (out / name).stat().st_size > 0, name
    # the later stages check one of the two compared models (REHEARSAL_CHECK_MODELS), as a GPU's a few
    checks = lines(out / "validation" / "max-batch-checks.jsonl")
    assert len(checks) == 2 and all(c["fits_at_found"] is True and c["fits_at_next"] is False for c in checks)
    found = {(r["model_name"], mode): r[f"max_batch_{mode}"]["max_batch"]
             for r in compare if r["model_name"] in REHEARSAL_CHECK_MODELS for mode in ("train", "infer")}
    assert {(c["model"], c["mode"]): c["found"] for c in checks} == found
    assert [r["model_name"] for r in lines(out / "validation" / "whole-device.jsonl")] == list(REHEARSAL_CHECK_MODELS)
    assert len(lines(out / "validation" / "cpu-estimates.jsonl")) == 3  # both at 16 GiB, the checked one whole
    assert 1 <= len(lines(out / "validation" / "repeatability.jsonl")) <= 2

    text = (out / "VALIDATION.md").read_text()
    assert text.count(LABELLED) == 5, "every section says it is a rehearsal"
    assert f"**{REHEARSAL_LABEL}**" in (out / "report.md").read_text()
    assert "2 of 2 checks passed." in text
    assert "`wavemix-profile validate --rehearse --stage max-batch-checks`" in text, "the command, run from the root"
    assert str(tmp_path) not in text, "no path of this machine in a report"

    again = validate(cwd=tmp_path)
    assert again.returncode == 0 and "validation complete" in again.stdout
    assert len(lines(out / "results.jsonl")) == 2 and len(lines(out / "validation" / "max-batch-checks.jsonl")) == 2


LISTS = ("import sys; from wavemix_profile.cli import main; code = main(['validate', '--rehearse', '--list']); "
         "print('torch imported' if 'torch' in sys.modules else 'no torch'); sys.exit(code)")


def test_list_and_a_spent_time_limit_run_nothing_and_say_what_is_left(tmp_path):
    listed = subprocess.run([sys.executable, "-c", LISTS], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert listed.returncode == 0, listed.stderr
    *lines, imported = listed.stdout.splitlines()
    assert imported == "no torch", "a rehearsal's plan is listed without importing torch"
    assert [line.split()[0] for line in lines] == list(STAGE_NAMES)
    assert "compare             2 left, expected ~" in listed.stdout
    assert not (tmp_path / "reports").exists()
    spent = validate("--time-limit", "0.001", "--stage", "compare", cwd=tmp_path)
    assert spent.returncode == 0, spent.stderr
    assert "stopped at the time limit; left, rerun to continue:" in spent.stdout
    assert not (tmp_path / "reports" / "rehearsal-cpu" / "results.jsonl").exists()


def test_validate_without_cuda_points_to_the_rehearsal(tmp_path):
    import torch
    if torch.cuda.is_available():
        return
    run = subprocess.run([sys.executable, "-m", "wavemix_profile", "validate"], capture_output=True, text=True,
                         cwd=tmp_path)
    assert run.returncode == 2 and "--rehearse" in run.stderr and run.stderr.count("\n") == 1


def comparison(model, metric, paper, measured, table=1):
    return PaperComparison(table=table, model=model, metric=metric, image_size=32, paper_value=paper,
                           measured_value=measured, unit="GiB", ratio=measured / paper, note="")


def test_contradictions_name_each_reversed_wavemix_pair_and_nothing_else():
    found = contradictions([
        comparison("WaveMix-128/7", "gpu_train_batch64", 1.2, 1.5),   # paper: less than ResNet-18; measured: more
        comparison("ResNet-18", "gpu_train_batch64", 2.4, 1.0),
        comparison("ConvMixer-256/8", "gpu_train_batch64", 3.0, 3.1),  # both orders agree with the paper
        comparison("ResNet-34", "gpu_train_batch64", 4.0, 1.6),        # measured: WaveMix (1.5) below it
        comparison("WaveMix-128/7", "params", 2.4, 9.0),               # params are not a claim about cost
        comparison("ResNet-18", "params", 11.2, 1.0),
    ])
    assert found == [
        "Table 1, GPU memory @ batch 64 at 32 px: the paper has WaveMix-128/7 better than ResNet-18 (1.2 vs 2.4); "
        "measured, it is the other way round (1.50 vs 1.00 GiB)."]


def test_a_stored_error_is_measured_again_and_its_checks_follow_the_new_answer(tmp_path):
    # The first GPU validation stored every compare record with a max-batch error (a tool bug); the
    # next call must redo them, and the checks of the failed answers with them.
    from dataclasses import replace

    from wavemix_profile.measure.measure import error_result
    from wavemix_profile.core.results import MaxBatchResult
    from wavemix_profile.store.store import Store
    from wavemix_profile.validation.checks import check_found, write_checks
    from wavemix_profile.validation.plan import STAGES, Plan, compare_requests
    from wavemix_profile.validation.run import left

    plan = Plan(device="cpu", device_bytes=2**30, out=tmp_path, slug="rehearsal-cpu", rehearse=True)
    compare, checks = STAGES[0], STAGES[1]
    first = next(r for r in compare_requests(plan) if r.model in plan.check_models)
    failed = error_result(first, "max-batch (train): ValueError: Expected a torch.device with a specified index")
    Store(plan.store("compare")).append(failed)
    assert left(plan, compare) == compare_requests(plan)
    write_checks(plan.store("max-batch-checks"), [check_found(failed, "train"), check_found(failed, "infer")])
    assert [(m, mode) for m, mode in left(plan, checks) if m == first.model] == []  # checked: found nothing

    answer = MaxBatchResult(mode="train", max_batch=96, budget_bytes=2**30, predicted=True, method="test",
                            probes=(), search_s=0.0)
    Store(plan.store("compare")).append(replace(failed, error=None, max_batch_train=answer,
                                                max_batch_infer=replace(answer, mode="infer")))
    assert left(plan, compare) == [r for r in compare_requests(plan) if r != first]
    assert [(m, mode) for m, mode in left(plan, checks) if m == first.model] == [(first.model, "train"),
                                                                                 (first.model, "infer")]


def test_a_probe_in_a_child_of_its_own_answers_as_in_process_and_a_failed_one_says_why():
    from wavemix_profile.core.protocol import Probe
    from wavemix_profile.core.results import Settings
    from wavemix_profile.measure.measure import measure, probe
    from wavemix_profile.run.isolation import probe_isolated

    settings = Settings(model="python:factories:tiny_cnn", image_size=16, batch_size=8, num_classes=10,
                        skip=("flops", "memory", "throughput"), max_batch_modes=("train",),
                        memory_budget_bytes=2 * 2**30)
    found = measure(settings).max_batch_train.max_batch  # the search, in this process
    assert 8 < found
    answers = [probe_isolated(settings, "train", batch) for batch in (found, found + 1)]
    assert [(a.fits, a.batch) for a in answers] == [(True, found), (False, found + 1)]
    assert answers == [probe(settings, "train", batch) for batch in (found, found + 1)], "the same probe"
    assert isinstance(answers[0], Probe) and 0 < answers[0].peak_bytes < answers[1].peak_bytes

    died = probe_isolated(dataclasses.replace(settings, model="python:factories:dies"), "train", found)
    assert died == "measuring process killed by SIGKILL"
    failed = probe_isolated(dataclasses.replace(settings, model="python:factories:raises"), "infer", 8)
    assert failed == "measuring process exited with code 1; last output: RuntimeError: factory refused to build"
