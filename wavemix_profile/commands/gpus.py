"""`wavemix-profile gpus`: the cards --target-gpu names, with the memory that becomes their budget."""
from __future__ import annotations


def run_gpus(args) -> int:
    from ..core.gpus import CARDS, find_card
    from ..render.gpus import gpu_markdown, gpu_table
    from ..render.terminal import make_console
    cards = CARDS
    if args.name:
        found = find_card(args.name)
        if found is None:
            from ..core.errors import BadInputError
            raise BadInputError(f"no card of the table fits {args.name!r}; accepted: "
                                + ", ".join(c.name for c in CARDS))
        cards = (found.card,)
        if found.note:
            print(f"note: {found.note}")
    if args.markdown:
        print(gpu_markdown(cards), end="")
    else:
        make_console().print(gpu_table(cards))
    return 0
