"""What a measuring command asks for: the Settings fields its options give, with the defaults a user
expects. A named GPU brings its memory as the max-batch budget (an explicit --memory-budget wins), a
torchvision or timm model its own head (sources.default_num_classes), and the training step uses the
optimizer asked for. Shared by compare, scale, max-batch and profile."""
from __future__ import annotations

import sys
from typing import Optional

from ..core.errors import BadInputError


def parse_budget(text: Optional[str]) -> Optional[int]:
    """A budget string to bytes; the parser's ValueError becomes the user's one-line error. A budget in
    GB or MB (powers of 10) gets a one-line note on stderr: GPU memory is sized in GiB, and a "24 GB"
    card holds about 24 GiB, not 24 x 10^9 bytes."""
    if text is None:
        return None
    from ..measure.maxbatch import parse_bytes
    try:
        n_bytes = parse_bytes(text)
    except ValueError as exc:
        raise BadInputError(str(exc)) from None
    unit = text.strip().lstrip("0123456789. ").lower()
    if unit in ("gb", "mb"):
        binary = text.strip()[:-2].strip() + unit[0].upper() + "iB"
        print(f"note: --memory-budget {text.strip()} is {n_bytes:,} bytes = {n_bytes / 2**30:.2f} GiB (GB and MB are "
              f"powers of 10); a GPU's memory is sized in GiB, so write {binary} if you meant that", file=sys.stderr)
    return n_bytes


def max_batch_budget(args, device: str) -> Optional[int]:
    """The max-batch budget in bytes: --memory-budget; else on the CPU the memory of the card
    --target-gpu names, or the default 16 GiB (gpus.DEFAULT_BUDGET_BYTES); else (a GPU) None, the
    whole device."""
    from ..core.gpus import DEFAULT_BUDGET_BYTES, card_budget
    explicit = parse_budget(getattr(args, "memory_budget", None))
    if explicit is not None or device != "cpu":
        return explicit
    return card_budget(args.target_gpu) or DEFAULT_BUDGET_BYTES


def say_target(args) -> None:
    """One line on stderr when --target-gpu fits several cards of the table: which one was taken."""
    from ..core.gpus import find_card
    found = find_card(args.target_gpu) if args.target_gpu else None
    if found is not None and found.note:
        print(f"note: --target-gpu {found.note}", file=sys.stderr)


def num_classes(args, model: str) -> int:
    """--num-classes, or the model's own (sources.default_num_classes)."""
    from ..sources.sources import default_num_classes
    return args.num_classes or default_num_classes(model)


def step_fields(args, device: str) -> dict:
    """The Settings fields every measuring command takes from the options of _add_measure_options."""
    return dict(batch_size=args.batch_size, device=device, amp=args.amp, channels_last=args.channels_last,
                compile=args.compile, optimizer=args.optimizer, keep_grads=args.keep_grads,
                target_gpu=args.target_gpu, target_cuda=args.target_cuda, inference=args.inference,
                threads=args.threads)
