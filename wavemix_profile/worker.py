"""Child-process entry point: measure a list of Settings (one model) and write each Result as JSON.

`python -m wavemix_profile.worker SETTINGS.json OUT_DIR`. SETTINGS.json holds a list; result i is
written to OUT_DIR/i.json and announced on stdout as `@@result i`, so the parent can store it at
once. Progress goes to stdout as `@@stage NAME` lines. Any exception becomes an error Result, so
the parent gets a record for every request unless the process itself dies (a signal, the OOM
killer), which the parent turns into one.
"""
from __future__ import annotations

import json
import os
import sys
import time
import traceback

STAGE_PREFIX = "@@stage "
RESULT_PREFIX = "@@result "


def main(argv: list[str]) -> int:
    settings_path, out_dir = argv
    from .results import Settings, _from, result_to_json
    with open(settings_path, encoding="utf-8") as fh:
        requests = [_from(Settings, item) for item in json.load(fh)]
    from .measure import error_result, measure
    for index, settings in enumerate(requests):
        began = time.perf_counter()
        try:
            result = measure(settings, on_stage=lambda name: print(STAGE_PREFIX + name, flush=True))
        except Exception as exc:  # every failure of a model must become its row's error, not a crash
            traceback.print_exc(file=sys.stderr)
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            result = error_result(settings, f"{type(exc).__name__}: {first}"[:500], time.perf_counter() - began)
        path = os.path.join(out_dir, f"{index}.json")
        with open(path + ".tmp", "w", encoding="utf-8") as fh:
            fh.write(result_to_json(result))
        os.replace(path + ".tmp", path)
        print(f"{RESULT_PREFIX}{index}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
