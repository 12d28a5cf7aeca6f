"""What a measuring child tells its parent: typed messages on a pipe that model code never writes to.

The parent opens a pipe for each child and passes its write end as a file descriptor; the child's
stdout and stderr, which a model's own prints share, carry nothing the parent parses. Each message
is one JSON object per line: the index of the request it is about, its kind, and its fields.
`decode` turns a line back into a typed message or raises ProtocolError; nothing is space-split.

A measurement reports, in order: Started, any number of Stage, Probe and Timing events, then
Finished with its Result. Stage, Probe and Timing are also what `measure` hands its `on_event`
callback in-process. After Timing(begins=True) a measuring child waits for its parent's go-ahead,
one byte on its lifeline (worker.py), so that its parent can first stop every other child of the
run (time_alone.TimeAlone): timed blocks run alone. A child asked only to check its requests sends
Started, then Checked, for each.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Optional, Union

from .results import Result, result_from_dict, to_dict


class ProtocolError(ValueError):
    """A line on the channel that is not a message of this protocol."""


@dataclass(frozen=True)
class Started:
    """The child began a request (its clock for --timeout starts here)."""


@dataclass(frozen=True)
class Stage:
    """A named measurement stage began: params, flops, memory, max-batch (train|infer), throughput."""

    name: str


@dataclass(frozen=True)
class Probe:
    """One max-batch probe landed: did `batch` images fit for `mode` ("train" or "infer")?"""

    mode: str
    batch: int
    fits: bool
    peak_bytes: Optional[int] = None


@dataclass(frozen=True)
class Timing:
    """Timed blocks begin (begins=True: nothing else of the run may run now) or have ended."""

    begins: bool


@dataclass(frozen=True)
class Finished:
    """The request's Result (an error Result when the measurement failed)."""

    result: Result


@dataclass(frozen=True)
class Checked:
    """A check-only child (isolation.check_isolated) loaded the request's model: None, or why it
    cannot run, one line naming what is wrong and what is accepted (the user's bad input)."""

    refusal: Optional[str] = None


Event = Union[Stage, Probe, Timing]
Message = Union[Started, Stage, Probe, Timing, Finished, Checked]
_KINDS = {cls.__name__.lower(): cls for cls in (Started, Stage, Probe, Timing, Finished, Checked)}
_FIELD_TYPES = {"name": str, "mode": str, "batch": int, "fits": bool, "peak_bytes": (int, type(None)),
                "begins": bool, "refusal": (str, type(None))}


def encode(request: int, message: Message) -> bytes:
    """One line: {"request": i, "kind": "...", fields...}."""
    fields = {"result": to_dict(message.result)} if isinstance(message, Finished) else dataclasses.asdict(message)
    return json.dumps({"request": request, "kind": type(message).__name__.lower(), **fields},
                      separators=(",", ":")).encode() + b"\n"


def decode(line: bytes) -> tuple[int, Message]:
    """The (request index, message) of one line; ProtocolError for anything else."""
    try:
        data = json.loads(line)
    except ValueError as exc:
        raise ProtocolError(f"not JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("request"), int) or data.get("kind") not in _KINDS:
        raise ProtocolError(f"not a message: {line[:80]!r}")
    request, cls = data.pop("request"), _KINDS[data.pop("kind")]
    if cls is Finished:
        try:
            return request, Finished(result_from_dict(data["result"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ProtocolError(f"bad result for request {request}: {exc}") from None
    names = {f.name for f in dataclasses.fields(cls)}
    required = {f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING}
    if not required <= set(data) <= names or any(
            not isinstance(data[k], _FIELD_TYPES[k]) or (_FIELD_TYPES[k] is int and isinstance(data[k], bool))
            for k in data):
        raise ProtocolError(f"bad fields for {cls.__name__}: {sorted(data)}")
    return request, cls(**data)
