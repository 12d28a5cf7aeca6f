"""The field reference: every field of a Result, by the one name it has everywhere.

A field's dotted path ("memory.peak_train_bytes") is its key path in a results.jsonl record and in
`--json` output, its attribute path in Python (`result.memory.peak_train_bytes`) and, for the fields
results.csv carries, its column (render.csv.COLUMNS). Each field's meaning is the comment beside or
above it in results.py, read from the source, so the reference cannot drift from the dataclasses;
render_field_reference() writes docs/fields.md. Never imports torch.
"""
from __future__ import annotations

import ast
import dataclasses
import inspect
import io
import tokenize
import types
import typing
from dataclasses import dataclass
from typing import Any, Iterator

from ..core import results
from ..core.results import Result
from .csv import COLUMNS

# The unit a field's name ends with (results.py puts units in names), first match wins.
UNIT_SUFFIXES: tuple[tuple[str, str], ...] = (
    ("_bytes", "bytes"), ("images_per_s", "images/s"), ("macs_per_image", "MACs/image"),
    ("flops_per_image", "FLOPs/image"), ("joules_per_image", "J/image"), ("_watts", "W"), ("_mfu", "fraction"),
    ("_cv", "fraction"), ("_s", "s"),
)
# Fields whose name has no unit suffix but whose value has a unit.
UNIT_NAMES = {"image_size": "px", "batch_size": "images", "throughput_batch_size": "images", "max_batch": "images",
              "batch": "images", "multiple_of": "images", "params_total": "parameters",
              "params_trainable": "parameters"}


@dataclass(frozen=True)
class FieldDoc:
    path: str        # "memory.peak_train_bytes"; an item of a list: "max_batch_train.probes[].batch"
    type: str        # "int", "float or null", "list of str"
    unit: str        # "" where the value has none
    meaning: str     # from results.py's comments


def unit_of(name: str) -> str:
    if name in UNIT_NAMES:
        return UNIT_NAMES[name]
    return next((unit for suffix, unit in UNIT_SUFFIXES if name.endswith(suffix)), "")


def _comments(source: str) -> dict[int, str]:
    """Line number -> the text of the comment on that line."""
    return {tok.start[0]: tok.string.lstrip("#").strip()
            for tok in tokenize.generate_tokens(io.StringIO(source).readline) if tok.type == tokenize.COMMENT}


def _meanings(cls: type, source: str, comments: dict[int, str]) -> dict[str, str]:
    """Field name -> meaning: the comment beside the field, after the comment lines right above it. A
    field with neither, right below another field, shares that field's comment lines above (a block
    comment said once for a pair: reserved_train_bytes and reserved_infer_bytes)."""
    node = next(n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.ClassDef) and n.name == cls.__name__)
    lines = source.splitlines()
    found: dict[str, str] = {}
    shared, previous_end = "", None
    for item in node.body:
        if not (isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)):
            continue
        above, line = [], item.lineno - 1
        while line in comments and lines[line - 1].lstrip().startswith("#"):
            above.insert(0, comments[line])
            line -= 1
        beside = [comments[n] for n in range(item.lineno, item.end_lineno + 1) if n in comments]
        if above:
            shared = " ".join(above)
        elif previous_end != item.lineno - 1:
            shared = ""
        found[item.target.id] = " ".join(filter(None, [shared if above or not beside else "", *beside]))
        if beside and not above:
            shared = ""
        previous_end = item.end_lineno
    return found


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        return f"{_type_name(inner[0])} or null"
    if typing.get_origin(tp) is tuple:
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    if dataclasses.is_dataclass(tp):
        return "object"
    return tp.__name__


def _walk(cls: type, prefix: str, source: str, comments: dict[int, str]) -> Iterator[FieldDoc]:
    meanings = _meanings(cls, source, comments)
    for field in dataclasses.fields(cls):
        tp = typing.get_type_hints(cls)[field.name]
        path = prefix + field.name
        meaning = meanings.get(field.name, "")
        if not meaning:
            raise ValueError(f"results.py: {cls.__name__}.{field.name} has no comment to say what it means")
        yield FieldDoc(path, _type_name(tp), unit_of(field.name), meaning)
        inner = [a for a in typing.get_args(tp) if a is not type(None) and a is not Ellipsis] or [tp]
        if dataclasses.is_dataclass(inner[0]):
            below = f"{path}[]." if typing.get_origin(tp) is tuple else f"{path}."
            yield from _walk(inner[0], below, source, comments)


def field_docs() -> list[FieldDoc]:
    """Every field of a Result, depth first in declaration order."""
    source = inspect.getsource(results)
    return list(_walk(Result, "", source, _comments(source)))


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render_field_reference() -> str:
    """docs/fields.md: the field names, types, units and meanings, and the columns of results.csv."""
    docs = field_docs()
    known = {d.path for d in docs}
    missing = [c for c in COLUMNS if c not in known]
    if missing:
        raise ValueError(f"results.csv columns that are no field of a Result: {', '.join(missing)}")
    lines = [
        "# Field names",
        "",
        "<!-- Generated by wavemix_profile/render/fields.py (render_field_reference); "
        "tests/test_fields.py keeps this file equal to it. -->",
        "",
        "A result has one set of field names. A field's dotted path is its key path in a `results.jsonl` "
        "record and in `--json` output, its attribute path in Python (`result.memory.peak_train_bytes` "
        "for `measure_model`'s Result) and, for the fields marked CSV, its column in `results.csv`. "
        "A measurement that was skipped or failed is `null` in JSON, `None` in Python and an empty "
        "cell in the CSV; so is a field an older record lacks. Units are in the names: `_bytes` bytes, "
        "`_s` seconds, `_images_per_s` images per second; MFU and spreads (`_cv`) are fractions, not "
        "percentages. One MAC (multiply-add) is 2 FLOPs.",
        "",
        f"Records carry `schema_version` {results.SCHEMA_VERSION}; the field meanings are the comments "
        "of the dataclasses in `wavemix_profile/core/results.py`.",
        "",
        "## results.csv",
        "",
        "Columns, in order: " + ", ".join(f"`{c}`" for c in COLUMNS) + ".",
        "",
        "## Every field",
        "",
        "| field | type | unit | CSV | meaning |",
        "|---|---|---|---|---|",
    ]
    csv_columns = set(COLUMNS)
    lines += [f"| `{d.path}` | {d.type} | {d.unit} | {'CSV' if d.path in csv_columns else ''} | {_cell(d.meaning)} |"
              for d in docs]
    return "\n".join(lines) + "\n"
