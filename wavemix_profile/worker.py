"""Child-process entry point: measure one Settings and write the Result as JSON.

`python -m wavemix_profile.worker SETTINGS.json RESULT.json`. Progress goes to stdout as
`@@stage NAME` lines. Any exception becomes an error Result, so the parent always gets a record
unless the process itself dies (a signal, the OOM killer), which the parent turns into one.
"""
from __future__ import annotations

import json
import os
import sys
import time
import traceback

STAGE_PREFIX = "@@stage "


def main(argv: list[str]) -> int:
    settings_path, result_path = argv
    from .results import Settings, _from, result_to_json
    with open(settings_path, encoding="utf-8") as fh:
        settings = _from(Settings, json.load(fh))
    from .measure import error_result, measure
    began = time.perf_counter()
    try:
        result = measure(settings, on_stage=lambda name: print(STAGE_PREFIX + name, flush=True))
    except Exception as exc:  # every failure of a model must become its row's error, not a crash
        traceback.print_exc(file=sys.stderr)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        result = error_result(settings, f"{type(exc).__name__}: {first}"[:500], time.perf_counter() - began)
    tmp = result_path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(result_to_json(result))
    os.replace(tmp, result_path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
