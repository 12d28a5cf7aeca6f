"""`wavemix-profile report RESULTS.jsonl...`: re-render from stored results without measuring.

Several stores (from different GPUs, say) merge into one comparison with a device column.
"""
from __future__ import annotations

from pathlib import Path

from ..render.terminal import make_console

from ..core.errors import BadInputError
from ..store.store import Store


def run_report(args) -> int:
    results = []
    for path in args.stores:
        if not Path(path).is_file():
            raise BadInputError(f"no results store at {path!r}; pass the results.jsonl that compare wrote")
        results.extend(Store(path).read())
    if not results:
        raise BadInputError(f"no results in {', '.join(args.stores)}")
    out = Path(args.out) if args.out else Path(args.stores[0]).parent
    from ..render.cross_device import machines, pick_reference, write_cross_device
    from .outputs import check_output_folder, latest_per_key, read_accuracies, write_outputs
    accuracies = read_accuracies(args.accuracy)
    if args.reference:  # checked before anything is written
        try:
            pick_reference(machines(results), args.reference)
        except ValueError as exc:
            raise BadInputError(str(exc)) from None
    check_output_folder(out)
    written = write_outputs(results, out, command=args.command_line,
                            accuracies=accuracies)
    written += write_cross_device(latest_per_key(results), out, reference=args.reference,  # several devices
                                  command=args.command_line)
    make_console().print(f"wrote {', '.join(str(p) for p in written)}")
    return 0
