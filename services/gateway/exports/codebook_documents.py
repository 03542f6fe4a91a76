"""The codebook as documents: a JSON Schema per record kind (`codebook.json`) and one
table of every column (`codebook.csv`), both made from the declarations in
services.common.research.codebook, and each column's base type, which Parquet files are typed
by. The gateway alone serves them (exports, the ZIP)."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime
from typing import Any, get_args, get_origin

import msgspec

from services.common.research.codebook import KINDS, SOURCES
from services.common.research.columns import RecordKind, Variable, pattern_regex


def _schema_of(annotation: Any) -> dict[str, Any]:
    """The JSON Schema of a column's type, with its range and description."""
    if annotation is date:
        return {"type": "string", "format": "date"}
    return msgspec.json.schema(annotation)


def variable_schema(variable: Variable) -> dict[str, Any]:
    schema = _schema_of(variable.type | None if variable.optional else variable.type)
    described = {**schema, "description": variable.description}
    if schema.get("description") and schema["description"] != variable.description:
        described["description"] = f"{variable.description} {schema['description']}"
    for key, value in (
        ("x-unit", variable.unit),
        ("x-time", variable.time),
        ("x-source", SOURCES.get(variable.source or "")),
        ("x-only-in", list(variable.only_in) if variable.only_in else None),
        ("x-category", variable.category or None),
    ):
        if value is not None:
            described[key] = value
    return described


def kind_schema(kind: RecordKind) -> dict[str, Any]:
    """A JSON Schema (2020-12) of one exported row of `kind`."""
    properties: dict[str, Any] = {}
    patterns: dict[str, Any] = {}
    for variable in kind.variables:
        if variable.pattern is not None:
            patterns["^" + pattern_regex(variable).pattern + "$"] = {
                **variable_schema(variable),
                "x-column": variable.name,
            }
        else:
            properties[variable.name] = variable_schema(variable)
    schema: dict[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": kind.schema_id,
        "title": kind.name,
        "description": kind.description,
        "x-schema-version": kind.version,
        "type": "object",
        "properties": properties,
        "required": [
            v.name for v in kind.variables if not v.optional and not v.pattern and not v.only_in
        ],
    }
    if patterns:
        schema["patternProperties"] = patterns
    return schema


def codebook() -> dict[str, Any]:
    return {
        "codebook": "EmoGo exports",
        "schema_versions": {name: kind.version for name, kind in KINDS.items()},
        "sources": SOURCES,
        "kinds": {name: kind_schema(kind) for name, kind in KINDS.items()},
    }


def type_name(annotation: Any) -> str:
    """A short type name for the CSV codebook."""
    base = _base(annotation)
    return {
        str: "string",
        float: "number",
        int: "integer",
        bool: "boolean",
        datetime: "timestamp (UTC)",
        date: "date",
    }.get(base, "string")


def _base(annotation: Any) -> Any:
    """The plain type under Annotated and Optional."""
    while get_origin(annotation) is not None:
        annotation = next(a for a in get_args(annotation) if a is not type(None))
    return annotation


def base_type(variable: Variable) -> Any:
    return _base(variable.type)


def codebook_csv() -> bytes:
    """variable, kind, type, unit, optional, allowed, time, description, source."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(
        ["variable", "kind", "type", "unit", "optional", "allowed", "time", "description", "source"]
    )
    for name, kind in KINDS.items():
        for variable in kind.variables:
            schema = _schema_of(variable.type)
            allowed = ", ".join(
                f"{word} {schema[key]}"
                for key, word in (
                    ("minimum", ">="),
                    ("maximum", "<="),
                    ("minLength", "length >="),
                    ("maxLength", "length <="),
                )
                if key in schema
            )
            writer.writerow(
                [
                    variable.name,
                    name,
                    type_name(variable.type),
                    variable.unit or "",
                    "yes" if variable.optional else "no",
                    allowed,
                    variable.time or "",
                    variable.description,
                    SOURCES.get(variable.source or "", ""),
                ]
            )
    return ("\ufeff" + buffer.getvalue()).encode()


def codebook_markdown() -> str:
    """The codebook as the docs site's reference page (docs/codebook.md): one table per
    record kind, the same rows as codebook.csv. tests/test_docs.py holds the page to it."""
    rows = list(csv.reader(io.StringIO(codebook_csv().decode().lstrip("\ufeff"))))
    header, body = rows[0], rows[1:]
    lines = [
        "# Codebook",
        "",
        "Every column of every export, made from the declarations in",
        "`services/common/research/codebook.py` (regenerate with `make docs-reference`).",
        "Each export's ZIP carries the same codebook as `codebook.json` (a JSON Schema per",
        "kind) and `codebook.csv`.",
    ]
    for name, kind in KINDS.items():
        lines += ["", f"## {name}", "", kind.description, ""]
        columns = [column for column in header if column != "kind"]
        lines.append("| " + " | ".join(columns) + " |")
        lines.append("|" + "---|" * len(columns))
        for row in body:
            cells = dict(zip(header, row, strict=True))
            if cells["kind"] != name:
                continue
            values = [cells[column].replace("|", "\\|") for column in columns]
            values[0] = f"`{values[0]}`"
            lines.append("| " + " | ".join(values) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(codebook_markdown(), end="")
