"""Regenerates the golden files, deliberately; the tests only compare against them.

    python tests/golden/regenerate.py            # re-render report.md and results.csv from results.jsonl
    python tests/golden/regenerate.py --measure  # measure results.jsonl anew first (a few minutes on 2 cores)

results.jsonl is the store of a real run of RUN on the CPU (its records name the command), measured
in a temporary folder so that no path of the measuring machine lands in it. report.md and
results.csv are what `compare` and `report` write for those records: the same write_outputs call.
Re-render after a change to the renderers; measure anew after a change to what a record holds.
"""
from __future__ import annotations

import difflib
import io
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
STORE = HERE / "results.jsonl"
FILES = ("report.md", "results.csv")
RUN = ["compare", "--models", "WaveMix-16/5", "ResNet-18", "--image-sizes", "32", "--out", "run"]


def load_results():
    from wavemix_profile.core.results import result_from_dict
    return [result_from_dict(json.loads(line)) for line in STORE.read_text(encoding="utf-8").splitlines()]


def render(results, folder: Path) -> dict[str, str]:
    """{file name: text} of what write_outputs makes of `results` in `folder` (charts included, then ignored)."""
    from rich.console import Console
    from wavemix_profile.commands.outputs import write_outputs
    write_outputs(results, folder, command=results[0].command, console=Console(file=io.StringIO(), width=250))
    return {name: (folder / name).read_text(encoding="utf-8") for name in FILES}


def machine_paths(folder: Path) -> list[str]:
    """Absolute paths of this machine that must not appear in a committed fixture."""
    return sorted({str(folder), str(folder.resolve()), str(HERE.parents[1]), str(Path.home()),
                   tempfile.gettempdir()}, key=len, reverse=True)


def measure() -> None:
    with tempfile.TemporaryDirectory(prefix="golden-run-") as tmp:
        done = subprocess.run([sys.executable, "-m", "wavemix_profile", *RUN], cwd=tmp,
                              env={**os.environ, "COLUMNS": "200"})
        if done.returncode != 0:
            sys.exit(f"the run failed (exit {done.returncode}): nothing written")
        text = (Path(tmp) / "run" / "results.jsonl").read_text(encoding="utf-8")
        # lanes store records as they finish; compare renders them in the order asked for, and so does this
        asked = RUN[RUN.index("--models") + 1:RUN.index("--image-sizes")]
        text = "".join(sorted(text.splitlines(keepends=True),
                              key=lambda line: asked.index(json.loads(line)["settings"]["model"])))
        leaked = [p for p in machine_paths(Path(tmp)) if p in text]
        if leaked:
            sys.exit(f"the run's records hold a path of this machine ({leaked[0]}): nothing written")
        written = {name: (Path(tmp) / "run" / name).read_text(encoding="utf-8") for name in FILES}
    STORE.write_text(text, encoding="utf-8")
    print("wrote tests/golden/results.jsonl")
    with tempfile.TemporaryDirectory() as tmp:
        for name, text in render(load_results(), Path(tmp)).items():
            if text != written[name]:
                diff = difflib.unified_diff(written[name].splitlines(), text.splitlines(), "run/" + name,
                                            "rendered from the store", lineterm="")
                sys.exit("\n".join([f"{name} rendered from the stored records differs from what the run wrote:",
                                    *diff]))


def main(argv: list[str]) -> None:
    if argv not in ([], ["--measure"]):
        sys.exit(__doc__)
    if argv == ["--measure"]:
        measure()
    with tempfile.TemporaryDirectory() as tmp:
        for name, text in render(load_results(), Path(tmp)).items():
            (HERE / name).write_text(text, encoding="utf-8")
            print(f"wrote tests/golden/{name}")


if __name__ == "__main__":
    main(sys.argv[1:])
