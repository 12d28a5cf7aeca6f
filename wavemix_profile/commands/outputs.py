"""Write the comparison files for a set of stored results: CSV, Markdown, charts, terminal tables."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

from ..store.atomic import write_text
from ..core.results import Result

STORE_NAME = "results.jsonl"  # in each output folder: the records that every report there is rendered from
PAPER_FIT_NAME = "paper_fit.json"  # `wavemix-profile paper-fit`'s findings, read into report.md


def device_slug(name: str) -> str:
    """'NVIDIA H100 80GB HBM3' -> 'nvidia-h100-80gb-hbm3': the default output folder's name."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "device"


def latest_per_key(results: Sequence[Result]) -> list[Result]:
    """One answer per measurement: the last stored wins, in the place of the first.

    Records with one settings key answer the same measurement when they come from the same device
    on the same host (two machines with one GPU model are two answers), or when one of them is an
    error with no device recorded (a measuring process that died, then measured again by --resume).
    A record older than the host field matches any host."""
    def same_machine(a: Result, b: Result) -> bool:
        if a.environment is None or b.environment is None:
            return True
        hosts = (a.environment.host, b.environment.host)
        return a.environment.device_name == b.environment.device_name and (None in hosts or hosts[0] == hosts[1])

    slots: list[Result] = []
    by_key: dict[str, list[int]] = {}
    for r in results:
        same = [i for i in by_key.get(r.settings.key(), ()) if same_machine(r, slots[i])]
        if same:
            slots[same[0]] = r
        else:
            by_key.setdefault(r.settings.key(), []).append(len(slots))
            slots.append(r)
    return slots


def human_console(args):
    """Where a command's tables and progress go: stdout, or stderr under --json (stdout is then the
    JSON alone), or nowhere under --quiet. Commands without those options print to stdout."""
    from ..render.terminal import make_console
    return make_console(stderr=getattr(args, "json", False), quiet=getattr(args, "quiet", False))


def exit_for_failures(results: Sequence[Result], *, shown: int = 5, with_errors: bool = False) -> int:
    """Exit status of a measuring command: 0 when every result is ok, else 1 after one stderr line
    naming the failed ones (the first `shown`, with their errors when `with_errors`)."""
    import sys
    failed = [r for r in results if not r.ok]
    if not failed:
        return 0
    print(f"{len(failed)} of {len(results)} measurements failed: "
          + "; ".join(f"{r.model_name} @ {r.settings.image_size} px" + (f": {r.error}" if with_errors else "")
                      for r in failed[:shown])
          + ("; ..." if len(failed) > shown else ""), file=sys.stderr)
    return 1


def print_json(data) -> None:
    """Machine-readable output: one JSON document on stdout."""
    import json
    import sys
    json.dump(data, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


REPORT_FILES = ("results.csv", "report.md")  # what write_outputs writes besides the charts


def check_output_folder(out: Path, *, store: str | None = None) -> None:
    """Fail before anything is measured if `out` cannot take the reports (and `store`, a file name
    in it): a BadInputError naming the folder and why, a store, lock file or report that is a
    symbolic link or not a regular file included. Creates the folder; writes nothing else."""
    import os
    import tempfile
    from ..core.errors import BadInputError
    from ..store.regular_files import check_regular, open_regular
    from ..store.store import Store
    if out.exists() and not out.is_dir():
        raise BadInputError(f"output folder {str(out)!r} is a file; give a folder (--out DIR)")
    target = out / store if store else None
    if target is not None:
        check_regular(target, "results store")
        check_regular(Store(target).lock_path, "lock file")
    for name in REPORT_FILES:
        check_regular(out / name, "output file")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".write-test-") as probe:  # a real write
            probe.write(b"x")
            probe.flush()
        if target is not None and target.exists():
            os.close(open_regular(target, os.O_WRONLY | os.O_APPEND, "results store"))
    except OSError as exc:
        raise BadInputError(f"cannot write to output folder {str(out)!r}: {exc.strerror or exc}; "
                            "give a writable folder (--out DIR)") from None


def read_accuracies(path: str | None) -> list:
    """The accuracies to chart: the paper's, with the rows of a user's --accuracy FILE.csv when given
    (wavemix_profile.core.accuracy); a malformed file is a BadInputError naming its line."""
    from ..core.accuracy import chart_accuracies, read_accuracy_file
    return chart_accuracies(read_accuracy_file(path) if path else ())


def write_outputs(results: Sequence[Result], out: Path, *, command: str, console=None,
                  banner: str = "", accuracies: Sequence | None = None) -> list[Path]:
    """Print the comparison and write results.csv, report.md (headed by `banner` when given) and the
    charts into `out`; return their paths. `accuracies` (wavemix_profile.core.accuracy) are charted against
    cost; None: the paper's.

    Each file is replaced atomically, so concurrent writers of one folder never see or leave half a file.
    """
    from ..render.charts import write_charts
    from ..render.csv import render_csv
    from ..render.markdown import render_markdown
    from ..render.terminal import print_comparison

    results = latest_per_key(results)
    out.mkdir(parents=True, exist_ok=True)
    print_comparison(results, console=console)
    charts = write_charts(results, out, accuracies)
    _say_unplotted(accuracies or (), results)
    csv_name, markdown_name = REPORT_FILES
    write_text(out / csv_name, render_csv(results))
    section, protocol = _paper_fit(out)
    write_text(out / markdown_name, render_markdown(results, command=command, banner=banner, extra=section,
                                                    paper_protocol=protocol,
                                                    charts=[p.name for p in charts if p.suffix == ".png"]))
    return [out / csv_name, out / markdown_name, *charts]


def _say_unplotted(accuracies: Sequence, results: Sequence[Result]) -> None:
    """One line on stderr for a user's accuracy rows that meet no stored result (a misspelt model, say)."""
    import sys
    from ..core.accuracy import PAPER_SOURCE, unmatched
    mine = [a for a in unmatched(accuracies, results) if not a.source.startswith(PAPER_SOURCE)]
    if mine:
        print(f"note: {len(mine)} --accuracy row(s) meet no stored result and are not charted: "
              + "; ".join(f"{a.model} at {a.image_size} px" for a in mine[:5]) + ("; ..." if len(mine) > 5 else ""),
              file=sys.stderr)


def _paper_fit(out: Path) -> tuple[list[str], dict]:
    """The "What the paper's numbers match" section and each table's best protocol's values
    (render.paper_fit.protocol_values), when `wavemix-profile paper-fit` wrote its file here."""
    import json
    from ..measure.paper_fit import from_json
    from ..render.paper_fit import protocol_values, render_paper_fit
    path = out / PAPER_FIT_NAME
    if not path.is_file():
        return [], {}
    data = json.loads(path.read_text(encoding="utf-8"))
    fits = from_json(data)
    return render_paper_fit(fits, command=data["command"]), protocol_values(fits)
