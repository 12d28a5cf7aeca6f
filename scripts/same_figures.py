"""Do two stores hold the same figures? Every field of every record, matched by request, images/s aside.

    .venv/bin/python scripts/same_figures.py reports/local/results.jsonl reports/cpu-amd-epyc/results.jsonl

For a change that should move no stored figure (a restructuring, a faster test suite): run `make demo`,
then this against the committed reference. What a run on another day may change by itself is left out:
timings (throughput, wall and search seconds), when and from which commit and command a record was
made, and the machine's description. Prints each field that differs, then a count; exit 1 if any does.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

# the top-level fields, or dotted prefixes, that differ between two runs of the same code by themselves
UNSTABLE = ("throughput", "wall_s", "created_at", "git_commit", "command", "environment",
            "max_batch_train.search_s", "max_batch_infer.search_s")


def flat(record: dict, prefix: str = "") -> dict[str, object]:
    out = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flat(value, f"{name}."))
        else:
            out[name] = value
    return out


def stable(fields: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in fields.items() if not any(k == u or k.startswith(f"{u}.") for u in UNSTABLE)}


def records(path: Path) -> dict[str, dict]:
    """The last record of each request (its settings) in the store, as resume reads it."""
    by_request = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            record = json.loads(line)
            settings = {k: v for k, v in record["settings"].items() if k != "threads"}
            by_request[json.dumps(settings, sort_keys=True)] = record
    return by_request


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: same_figures.py NEW.jsonl REFERENCE.jsonl", file=sys.stderr)
        return 2
    new, reference = (records(Path(p)) for p in argv)
    differing = 0
    for request in sorted(set(new) | set(reference)):
        name = (new.get(request) or reference.get(request))["model_name"]
        size = json.loads(request)["image_size"]
        if request not in new or request not in reference:
            print(f"{name} @ {size} px: only in {argv[0] if request in new else argv[1]}")
            differing += 1
            continue
        a, b = stable(flat(new[request])), stable(flat(reference[request]))
        for field in sorted(set(a) | set(b)):
            if a.get(field) != b.get(field):
                print(f"{name} @ {size} px: {field}: {str(a.get(field))[:80]} != {str(b.get(field))[:80]}")
                differing += 1
    print(f"{len(new)} and {len(reference)} requests; {differing} differing field(s), images/s and timings aside")
    return 1 if differing else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
