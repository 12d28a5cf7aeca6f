"""The question users bring: what fits MY training on GPU X? A named GPU brings its memory, a library model
its own head, the optimizer is the one asked for; the command line (in_process.py: measurements in child
processes) and the API."""
import json

import pytest
from in_process import run_cli

from wavemix_profile.core.gpus import CARDS, DEFAULT_BUDGET_BYTES, budget_label, card_budget, find_card

RTX_4090 = 25_386_352_640   # deviceQuery's total global memory of an RTX 4090 (gpus.py cites it)


def cli(*args):
    return run_cli(*args)  # at conftest's width: a run keeps its fork server while the environment stays


# --- the card table --------------------------------------------------------------------------------

def test_every_card_with_a_memory_says_where_it_was_seen():
    for card in CARDS:
        if card.memory is not None:
            assert "https://" in card.memory.source and card.memory.bytes > 10 * 2**30, card.name
    assert {c.name for c in CARDS if c.memory} >= {
        "V100-SXM2-16GB", "V100-SXM2-32GB", "T4", "A10", "A100-SXM4-40GB", "A100-SXM4-80GB", "L4", "L40S", "RTX 3090",
        "RTX 4090", "RTX 5090", "H100-PCIE", "H100-SXM", "H200", "B200"}


@pytest.mark.parametrize("name, card", [
    ("RTX 4090", "RTX 4090"), ("NVIDIA GeForce RTX 4090", "RTX 4090"), ("rtx-4090", "RTX 4090"),
    ("Tesla V100-SXM2-16GB", "V100-SXM2-16GB"), ("A10", "A10"), ("A10G", "A10G"),   # whole words: A10 is no A10G
    ("NVIDIA H100 80GB HBM3", "H100-SXM"), ("L40S", "L40S"), ("L40", "L40"),
])
def test_a_card_is_found_by_its_names_exactly(name, card):
    found = find_card(name)
    assert found.card.name == card and found.note == ""


@pytest.mark.parametrize("name, card, fits", [
    ("V100", "V100-SXM2-16GB", 4), ("V100-16GB", "V100-SXM2-16GB", 2), ("H100", "H100-PCIE", 2),
    ("A100-80GB", "A100-PCIE-80GB", 2), ("A100 80", "A100-PCIE-80GB", 2),
])
def test_a_name_that_fits_several_cards_takes_the_least_memory_and_says_so(name, card, fits):
    found = find_card(name)
    assert found.card.name == card and "the least memory" in found.note
    named = found.note.split(" fits ")[1].split(": ")[0].split(", ")
    assert len(named) == fits
    assert found.card.memory.bytes == min(c.memory.bytes for c in CARDS if c.name in named)


@pytest.mark.parametrize("name", ["ampere", "sm86", "RTX 4080", "A1000", ""])
def test_generations_and_unknown_names_are_no_card(name):
    assert find_card(name) is None and card_budget(name) is None


def test_the_budget_label_names_the_card_whose_memory_it_is():
    assert budget_label(RTX_4090, "RTX 4090") == "RTX 4090's 23.6 GiB (25.4 GB)"
    assert budget_label(DEFAULT_BUDGET_BYTES, "RTX 4090") == "16.0 GiB (17.2 GB) on RTX 4090"
    assert budget_label(DEFAULT_BUDGET_BYTES, None) == "16.0 GiB (17.2 GB)"


def test_gpus_lists_the_table_and_finds_one_card():
    run = cli("gpus", "--markdown")
    assert run.returncode == 0 and run.stdout.count("\n| ") == len(CARDS) + 1
    assert "| RTX 4090 | NVIDIA GeForce RTX 4090 | 8.9 | 23.64 | 25,386,352,640 | measured |" in run.stdout
    one = cli("gpus", "V100")
    assert one.returncode == 0 and "V100-SXM2-16GB taken, the least memory" in one.stdout
    bad = cli("gpus", "RTX 9999")
    assert bad.returncode == 2 and bad.stderr.startswith("error: no card of the table fits 'RTX 9999'")


# --- a named GPU sets the budget ----------------------------------------------------------------------

def test_max_batch_for_a_named_gpu_answers_for_its_memory_and_says_so():
    run = cli("max-batch", "timm:resnet18", "--image-size", "32", "--target-gpu", "RTX 4090", "--mode", "train",
              "--json")
    assert run.returncode == 0, run.stderr
    record = json.loads(run.stdout)
    found = record["max_batch_train"]
    assert found["budget_bytes"] == RTX_4090 and record["settings"]["target_gpu"] == "RTX 4090"
    assert "Ada sm89" in found["overhead_source"]
    assert 0 < found["predicted_device_bytes"] <= RTX_4090
    assert "max batch within RTX 4090's 23.6 GiB (25.4 GB)" in run.stderr
    # the head is the model's own: 1000 ImageNet classes
    assert record["settings"]["num_classes"] == 1000 and "1000 classes · adam · AMP fp16" in run.stderr


def test_an_explicit_budget_wins_over_the_named_gpu_and_gb_gets_a_note():
    run = cli("max-batch", "python:factories:linear_probe", "--target-gpu", "RTX 4090", "--memory-budget", "24GB",
              "--mode", "infer", "--json")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["max_batch_infer"]["budget_bytes"] == 24 * 10**9
    note = next(line for line in run.stderr.splitlines() if line.startswith("note: --memory-budget"))
    assert note == ("note: --memory-budget 24GB is 24,000,000,000 bytes = 22.35 GiB (GB and MB are powers of 10); "
                    "a GPU's memory is sized in GiB, so write 24GiB if you meant that")
    quiet = cli("max-batch", "python:factories:linear_probe", "--memory-budget", "24GiB", "--mode", "infer")
    assert quiet.returncode == 0 and "note:" not in quiet.stderr


# --- heads and optimizers ---------------------------------------------------------------------------

def test_library_models_bring_their_own_head_and_the_zoo_keeps_the_papers():
    from wavemix_profile.sources.sources import default_num_classes
    assert default_num_classes("timm:resnet50") == 1000
    assert default_num_classes("timm:vit_base_patch16_224.augreg_in21k") == 21843   # its pretrained config's
    assert default_num_classes("torchvision:resnet50") == 1000
    assert default_num_classes("ResNet-50") == default_num_classes("python:factories:tiny_cnn") == 100


def test_profile_of_timm_resnet50_counts_its_imagenet_parameters_without_flags():
    run = cli("profile", "timm:resnet50", "--image-size", "32", "--depth", "1", "--batch-size", "2")
    assert run.returncode == 0, run.stderr
    whole = next(line for line in run.stdout.splitlines() if "(whole model)" in line)
    assert "25,557,032" in whole          # timm's resnet50 at 1000 classes (its published param_count 25.56 M)
    assert "1000 classes" in run.stdout


# linear_probe at 32 px and 10 classes: one bias-free 3072 x 10 fp32 weight
WEIGHT_BYTES = 3 * 32 * 32 * 10 * 4


@pytest.mark.parametrize("optimizer, state_bytes", [("sgd-momentum", WEIGHT_BYTES), ("none", 0),
                                                     ("adamw", 2 * WEIGHT_BYTES)])
def test_profile_splits_memory_by_the_optimizer_asked_for(optimizer, state_bytes):
    run = cli("profile", "python:factories:linear_probe", "--num-classes", "10", "--optimizer", optimizer, "--json")
    assert run.returncode == 0, run.stderr
    memory = json.loads(run.stdout)["memory"]
    assert memory["optimizer_state_bytes"] == state_bytes and memory["grads_bytes"] == WEIGHT_BYTES
    assert f"optimizer state ({optimizer})" in run.stderr


def test_compare_and_max_batch_take_the_optimizer(tmp_path):
    run = cli("compare", "--models", "python:factories:linear_probe", "--num-classes", "10", "--image-sizes", "32",
              "--optimizer", "none", "--skip", "throughput", "flops", "--out", str(tmp_path), "--json", "--quiet")
    assert run.returncode == 0, run.stderr
    [record] = json.loads(run.stdout)
    assert record["settings"]["optimizer"] == "none" and record["memory"]["optimizer_state_bytes"] == 0
    assert "· none ·" in (tmp_path / "report.md").read_text()
    answers = {}
    for optimizer in ("none", "sgd-momentum", "adam"):
        run = cli("max-batch", "python:factories:linear_probe", "--num-classes", "10000", "--image-size", "64",
                  "--mode", "train", "--memory-budget", "8GiB", "--optimizer", optimizer, "--json")
        assert run.returncode == 0, run.stderr
        answers[optimizer] = json.loads(run.stdout)["max_batch_train"]["max_batch"]
    # the state is a fixed 0, 1 and 2 weights' worth (469 MiB each, about 10,000 images' inputs): the more
    # of it, the fewer images fit
    assert answers["none"] > answers["sgd-momentum"] > answers["adam"] > 0


def test_the_api_takes_the_optimizer_and_the_models_head():
    from wavemix_profile import measure_model
    result = measure_model("python:factories:linear_probe", image_size=32, num_classes=10, optimizer="sgd-momentum",
                           skip=("flops", "max-batch", "throughput"), isolated=False)
    assert result.memory.optimizer_state_bytes == WEIGHT_BYTES and result.settings.optimizer == "sgd-momentum"
    library = measure_model("torchvision:resnet18", image_size=32, skip=("flops", "memory", "max-batch", "throughput"),
                            isolated=False)
    assert library.settings.num_classes == 1000 and library.params_total == 11_689_512
