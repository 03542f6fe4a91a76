"""What a column of an export is: its name, type, unit, meaning and time, and how a
viewer of a protected study is shown it (its treatment); and a record kind, an ordered
set of columns with a schema version. The declarations are in
services.common.research.codebook.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


@dataclass(frozen=True)
class Variable:
    """One column."""

    name: str
    # A Python type; Annotated value types carry their range and description.
    type: Any
    description: str
    unit: str | None = None
    optional: bool = False
    # Few distinct values: dictionary-encoded (a category) in Parquet.
    category: bool = False
    time: str | None = None
    # For a derived feature: the method it follows (a key of SOURCES).
    source: str | None = None
    # A family of columns, one per value found in the data (an emotion's count):
    # `name` holds "{emotion}" where the value goes.
    pattern: str | None = None
    # Present only in these exports (the ZIP's path of a video); None: in every one.
    only_in: tuple[str, ...] | None = None


class Treatment(StrEnum):
    """How a viewer of a protected study is shown a field (services.common.research.privacy)."""

    KEPT = "kept"  # as stored: the server's own values, measurements, labels
    PSEUDONYM = "pseudonym"  # the participant id: the study's pseudonym of it
    DISGUISED = "disguised"  # text a phone wrote: every participant id of the study replaced
    DIGESTED = "digested"  # an opaque phone id: a keyed, stable digest
    COARSENED = "coarsened"  # a coordinate: on the study's grid
    DROPPED = "dropped"  # what would narrow a coarsened fix back down: left out


@dataclass(frozen=True)
class RecordKind:
    name: str
    version: str
    description: str
    variables: tuple[Variable, ...]
    # Each variable's treatment for a protected viewer, by name; every variable has one
    # (a test holds every kind and every wire field to it).
    treatments: dict[str, Treatment] = field(default_factory=dict)
    # Fields a service's records carry that exports leave out (none today).
    api_only: frozenset[str] = field(default_factory=frozenset)

    @property
    def schema_id(self) -> str:
        return f"emogo.{self.name}/{self.version}"

    def columns(
        self, pattern_values: dict[str, list[str]] | None = None, within: str = "file"
    ) -> list[str]:
        """The columns of an export (`within` a standalone "file" or the "zip"), in
        order; a pattern column once per value found."""
        names = []
        for variable in self.variables:
            if variable.only_in is not None and within not in variable.only_in:
                continue
            if variable.pattern is None:
                names.append(variable.name)
                continue
            for value in (pattern_values or {}).get(variable.pattern, []):
                names.append(variable.name.replace("{" + variable.pattern + "}", value))
        return names

    def variable(self, column: str) -> Variable | None:
        for variable in self.variables:
            if variable.pattern is None and variable.name == column:
                return variable
            if variable.pattern is not None and pattern_regex(variable).fullmatch(column):
                return variable
        return None


def pattern_regex(variable: Variable) -> re.Pattern[str]:
    head, _, tail = variable.name.partition("{" + (variable.pattern or "") + "}")
    return re.compile(re.escape(head) + r"[a-z0-9_]+" + re.escape(tail))


def column_word(label: str) -> str:
    """A free label (an emotion) as part of a column name: lower-case letters, digits, _."""
    return re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_") or "unnamed"
