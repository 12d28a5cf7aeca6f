"""`wavemix-profile report RESULTS.jsonl...`: re-render from stored results without measuring.

Several stores (from different GPUs, say) merge into one comparison with a device column.
"""
from __future__ import annotations

import sys
from pathlib import Path

from ..render.terminal import make_console

from ..errors import BadInputError
from ..store import Store


def run_report(args) -> int:
    results = []
    for path in args.stores:
        if not Path(path).is_file():
            raise BadInputError(f"no results store at {path!r}; pass the results.jsonl that compare wrote")
        results.extend(Store(path).read())
    if not results:
        raise BadInputError(f"no results in {', '.join(args.stores)}")
    out = Path(args.out) if args.out else Path(args.stores[0]).parent
    from .outputs import check_output_folder, write_outputs
    check_output_folder(out)
    written = write_outputs(results, out, command="wavemix-profile " + " ".join(sys.argv[1:]))
    make_console().print(f"wrote {', '.join(str(p) for p in written)}")
    return 0
