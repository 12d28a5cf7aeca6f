"""The commands of README.md and docs/*.md, run as written (a doc test).

Every command line in their fenced code blocks (a line that starts with `wavemix-profile`, `.venv/bin/`,
`make`, `python` or a `$ ` prompt; in a block with a prompt, only its prompted lines, the rest being
output) runs here with bash, in a copy of the project's files with `.venv` linked in and the
project's `.venv/bin` first on PATH, so that what the commands write under reports/ never touches the
committed reports. A page may use what an earlier page's commands wrote (docs/paper.md charts the
small_cnn of docs/models.md): pages that do so form a chain (CHAINS) whose commands run in order in one
copy; each chain, and each page in none, has a copy of its own. Each must exit 0, or the code its line names (`# exit code N`). A code block whose first line is `# NAME.py` or `# NAME.csv`
is a file a page asks the reader to write: every page's are written into the copy first.

A command that cannot run on this machine is listed in NOT_RUN with the reason; nothing else is
skipped, so a command added to a page fails here until it runs or is listed.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import subprocess
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = [README, *sorted((ROOT / "docs").glob("*.md"))]  # the order their commands run in
# Pages whose commands use what another page's commands wrote run after it in one copy of the project:
# a chain. Chains run apart (in parallel under xdist); a page in no chain runs in a copy of its own.
# docs/models.md follows README.md as a reader does: its `compare --resume` into reports/mine keeps
# README.md's WaveMix-16/5 instead of measuring it again, and docs/paper.md renders what both stored there.
CHAINS = (("README.md", "docs/models.md", "docs/paper.md"), ("docs/api.md", "docs/prediction.md"),
          ("docs/measurements.md", "docs/scaling-out.md"))

NOT_RUN = {
    "make demo": "the whole zoo at 32 and 64 px, minutes on 2 cores: the same comparison as the reference run",
    "make test": "runs this test suite, this test included",
    "make demo TORCH=cpu": "installs torch from PyTorch's CPU wheel index, which this machine's network does not reach",
    'make validate-gpu PACK=$OUT/reports.tgz ARGS="--time-limit 480"': "needs a CUDA device: the GPU machine's command",
    "wavemix-profile compare --devices all": "needs CUDA devices: every GPU of the node",
    "wavemix-profile compare --devices cuda:0 cuda:1 --models 'WaveMix-*' ResNet-18 --image-sizes 32 64 --resume":
        "needs two CUDA devices",
    "wavemix-profile compare --ray auto --resume": "needs a running Ray cluster that the environment names",
    "wavemix-profile compare --ray auto --gpu-types H100 A100 V100 --out reports/zoo-by-gpu":
        "needs a running Ray cluster with those GPUs",
    "wavemix-profile report reports/zoo-by-gpu/results.jsonl --reference H100":
        "renders the store that the cluster's run above writes; test_cross_device.py renders such a store",
    ".venv/bin/python benchmarks/external_accuracy.py":
        "41 predictions and two command-line runs, about three minutes on 2 cores; test_external_data.py checks its "
        "data and verdicts",
    ".venv/bin/wavemix-profile paper-fit --out reports/cpu-amd-epyc":
        "every zoo model under every protocol, several minutes on 2 cores; it takes no option that makes it smaller",
}

COMMAND = re.compile(r"(wavemix-profile|\.venv/bin/\S+|make|python3?)(\s|$)")
EXIT_CODE = re.compile(r"#.*\bexit code (\d+)")
FILE_BLOCK = re.compile(r"#\s*(\S+\.(?:py|csv))\s*$")


@dataclass(frozen=True)
class Command:
    line: str        # as written, its comment included: what bash runs
    key: str         # without the trailing comment, spaces collapsed: what NOT_RUN names
    exit_code: int


def code_blocks(text: str) -> list[list[str]]:
    """The lines of each fenced block, indentation of the fence removed (blocks inside list items)."""
    blocks, current = [], None
    for line in text.splitlines():
        if line.strip().startswith("```"):
            if current is None:
                current = []
            else:
                blocks.append(textwrap.dedent("\n".join(current)).splitlines())
                current = None
        elif current is not None:
            current.append(line)
    return blocks


def commands(text: str) -> list[Command]:
    found = []
    for block in code_blocks(text):
        joined, pending = [], ""
        for line in block:  # a trailing backslash continues a command on the next line
            if line.rstrip().endswith("\\"):
                pending += line.rstrip()[:-1] + " "
                continue
            joined.append(pending + line)
            pending = ""
        # a block with a `$ ` prompt is a terminal session: its other lines are output, whatever they start with
        prompted = any(line.strip().startswith("$ ") for line in joined)
        for line in joined:
            line = line.strip()
            if line.startswith("$ "):
                line = line[2:].strip()
            elif prompted or not COMMAND.match(line):
                continue
            key = " ".join(re.sub(r"\s#.*$", "", line).split())
            code = EXIT_CODE.search(line)
            found.append(Command(line, key, int(code.group(1)) if code else 0))
    return found


def files_to_write(text: str) -> dict[str, str]:
    """{name: text} of each block that starts with a `# NAME.py` or `# NAME.csv` line: a Python file
    keeps that line (a comment), a CSV file starts after it."""
    return {m.group(1): "\n".join(block[0 if m.group(1).endswith(".py") else 1:]) + "\n"
            for block in code_blocks(text) if block and (m := FILE_BLOCK.fullmatch(block[0].strip()))}


def project_copy(dest: Path) -> None:
    """The project's files (tracked and untracked, less what git ignores) copied, `.venv` linked."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True, timeout=60).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    (dest / ".venv").symlink_to(ROOT / ".venv", target_is_directory=True)


# --- the parser, on text written for it ----------------------------------------------------------

SAMPLE = '''
Prose with `wavemix-profile inline` code, not run.

```
.venv/bin/wavemix-profile list                 # a comment
make demo
wavemix-profile compare --models A \\
    B --image-sizes 32
wavemix-profile profile nope    # exit code 2
| a table | wavemix-profile |
```

```
$ wavemix-profile list
          wavemix-profile model registry (an output line)
```

1. A step:

   ```
   python3 -m wavemix_profile --version
   ```

```
# mine.py
import torch
```
'''


def test_the_parser_finds_every_command_line_and_file_block():
    found = commands(SAMPLE)
    assert [c.key for c in found] == [".venv/bin/wavemix-profile list", "make demo",
                                      "wavemix-profile compare --models A B --image-sizes 32",
                                      "wavemix-profile profile nope", "wavemix-profile list",
                                      "python3 -m wavemix_profile --version"]
    assert found[0].line.endswith("# a comment") and [c.exit_code for c in found] == [0, 0, 0, 2, 0, 0]
    assert files_to_write(SAMPLE) == {"mine.py": "# mine.py\nimport torch\n"}


# --- README.md and docs/*.md ---------------------------------------------------------------------------

def documented() -> list[tuple[Path, str]]:
    return [(path, path.read_text(encoding="utf-8")) for path in DOCS]


def test_not_run_names_only_commands_the_pages_show():
    shown = {c.key for _, text in documented() for c in commands(text)}
    assert set(NOT_RUN) <= shown, f"stale NOT_RUN entries: {sorted(set(NOT_RUN) - shown)}"


def test_every_page_is_read_and_shows_commands():
    names = [path.relative_to(ROOT).as_posix() for path in DOCS]
    assert names[0] == "README.md" and "docs/measurements.md" in names and "docs/scaling-out.md" in names
    # the pages that explain a command show it: the parser must find theirs
    for path, text in documented():
        if path.name in ("README.md", "measurements.md", "prediction.md", "scaling-out.md", "paper.md"):
            assert commands(text), path


def tracked_reports() -> dict[str, str]:
    """Digests of the committed files under reports/ (reports/local/, `make demo`'s, is not one)."""
    listed = subprocess.run(["git", "ls-files", "-z", "reports"], cwd=ROOT, capture_output=True, check=True,
                            timeout=60).stdout.decode().split("\0")
    return {name: hashlib.sha256((ROOT / name).read_bytes()).hexdigest()
            for name in filter(None, listed) if (ROOT / name).is_file()}


COMMAND_LIMIT_S = 240  # a hang guard for one command, not a speed test: all commands together take ~4 min


def runnable(text: str) -> list[Command]:
    return [c for c in commands(text) if c.key not in NOT_RUN]


def chains() -> list[tuple[str, ...]]:
    """Each page in no chain that has commands to run, on its own, then CHAINS (README.md's first: the longest)."""
    chained = {name for chain in CHAINS for name in chain}
    return [*((name,) for path, text in documented()
              if (name := path.relative_to(ROOT).as_posix()) not in chained and runnable(text)), *CHAINS]


def test_every_page_with_commands_runs_in_one_chain():
    pages = [name for chain in chains() for name in chain]
    shown = {path.relative_to(ROOT).as_posix(): runnable(text) for path, text in documented()}
    assert len(pages) == len(set(pages)) and set(pages) <= set(shown), "a page twice, or a stale name in CHAINS"
    assert {name for name, to_run in shown.items() if to_run} <= set(pages)
    assert sum(map(len, shown.values())) >= 20  # the parser still finds the pages' commands


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("chain", chains(), ids=lambda chain: "+".join(Path(name).stem for name in chain))
def test_every_documented_command_runs_as_written(tmp_path, chain):
    pages = documented()
    text_of = {path.relative_to(ROOT).as_posix(): text for path, text in pages}
    to_run = [c for name in chain for c in runnable(text_of[name])]  # in the chain's order
    assert to_run, f"{chain} has no command to run"
    project_copy(tmp_path)
    for _, text in pages:
        for name, body in files_to_write(text).items():
            (tmp_path / name).write_text(body, encoding="utf-8")
    env = {**os.environ, "PATH": os.pathsep.join([str(ROOT / ".venv" / "bin"), os.environ.get("PATH", "")]),
           "COLUMNS": "200"}
    before = tracked_reports()
    failed = []
    for command in to_run:
        started = time.monotonic()
        # its own process group, so that a command past the limit is ended with every process it started
        with subprocess.Popen(["bash", "-c", command.line], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True, start_new_session=True) as proc:
            try:
                stderr = proc.communicate(timeout=COMMAND_LIMIT_S)[1]
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()
                failed.append(f"{command.line}\n  still running after {COMMAND_LIMIT_S} s: show a cheaper "
                              "equivalent on the page, or list it in NOT_RUN with the reason")
                continue
        print(f"{time.monotonic() - started:6.1f} s  exit {proc.returncode}  {command.key}")  # for slow pages
        if proc.returncode != command.exit_code:
            failed.append(f"{command.line}\n  exit {proc.returncode}, expected {command.exit_code}; "
                          f"stderr tail: {stderr[-600:]}")
    assert not failed, "\n".join(failed)
    assert tracked_reports() == before, "a documented command changed the committed reports"


# --- the CPU-only install route (`make demo TORCH=cpu`) ------------------------------------------------
# PyTorch's CPU wheel index is out of this machine's reach, and the local package sources hold no CPU
# torchvision that works beside a CPU torch, so the install itself is not run here: what is checked is
# the Makefile's plan for it, and that a CPU build meets constraints.txt's pin.

def make_plan(tmp_path, *args):
    return subprocess.run(["make", "-n", "demo", f"VENV={tmp_path / 'venv'}", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)


def test_torch_cpu_installs_torch_from_the_cpu_index_before_the_project(tmp_path):
    plan = make_plan(tmp_path, "TORCH=cpu")
    assert plan.returncode == 0, plan.stderr
    lines = plan.stdout.splitlines()
    cpu = next(i for i, line in enumerate(lines) if "--index-url https://download.pytorch.org/whl/cpu" in line)
    project = next(i for i, line in enumerate(lines) if "-e '.[test]'" in line)
    assert cpu < project
    assert lines[cpu].split()[-2:] == ["torch", "torchvision"] and "-c constraints.txt" in lines[cpu]
    assert "--no-deps" in lines[cpu]  # their dependencies come from PyPI with the project's
    default = make_plan(tmp_path)
    assert default.returncode == 0 and "whl/cpu" not in default.stdout and "-e '.[test]'" in default.stdout
    wrong = make_plan(tmp_path, "TORCH=gpu")
    assert wrong.returncode != 0 and "TORCH is cpu or unset, not 'gpu'" in wrong.stderr


def test_a_cpu_build_meets_the_pins():
    from packaging.requirements import Requirement
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.startswith(("torch==", "torchvision==")):
            requirement = Requirement(line)
            pins[requirement.name] = requirement
    assert sorted(pins) == ["torch", "torchvision"]
    for requirement in pins.values():
        version = str(requirement.specifier).removeprefix("==")
        assert requirement.specifier.contains(f"{version}+cpu")          # PEP 440: a local label is ignored
        assert not requirement.specifier.contains(f"{version}.post1+cpu")
