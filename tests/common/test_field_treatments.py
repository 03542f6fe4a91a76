"""Every field a record kind has, on the wire or in an export, declares how a viewer of
a protected study is shown it (services.common.research.columns.Treatment); privacy applies
those declarations, so a field added without one fails here, not in a viewer's hands."""

from __future__ import annotations

import msgspec
import pytest

from services.common.research.codebook import KINDS
from services.common.research.columns import Treatment
from services.common.research.pseudonyms import DIGEST_PREFIX, digest
from services.ingest.schemas import GpsFixOut, SentimentOut
from services.media.schemas import VlogOut

# Wire names that stand for a codebook variable of another name.
WIRE_ALIASES = {"id": "_id"}
WIRE = {"sentiments": SentimentOut, "gps": GpsFixOut, "vlogs": VlogOut}


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_codebook_variable_has_a_treatment(kind: str) -> None:
    record_kind = KINDS[kind]
    missing = [v.name for v in record_kind.variables if v.name not in record_kind.treatments]
    assert missing == [], f"{kind}: no treatment for {missing}"
    unknown = set(record_kind.treatments) - {v.name for v in record_kind.variables}
    assert unknown == set(), f"{kind}: treatments of no variable: {unknown}"


@pytest.mark.parametrize("kind", list(WIRE))
def test_every_wire_field_has_a_treatment(kind: str) -> None:
    fields = [field.encode_name for field in msgspec.structs.fields(WIRE[kind])]
    treatments = KINDS[kind].treatments
    missing = [f for f in fields if WIRE_ALIASES.get(f, f) not in treatments]
    # The API's names for export columns of another name.
    assert missing == [], f"{kind}: no treatment for wire fields {missing}"


def test_phone_supplied_strings_are_never_kept() -> None:
    """Text and ids that phones send are disguised or digested, never kept as sent."""
    phone_strings = {
        "sentiments": ("note", "context", "client_id"),
        "gps": ("location_name", "client_id"),
        "vlogs": ("title", "description", "original_name", "video_url"),
    }
    for kind, names in phone_strings.items():
        for name in names:
            assert KINDS[kind].treatments[name] in (Treatment.DISGUISED, Treatment.DIGESTED)


def test_a_digest_is_keyed_stable_and_opaque() -> None:
    key_a, key_b = "11" * 32, "22" * 32
    value = "alice-mood-1"
    assert digest(key_a, "client_id", value) == digest(key_a, "client_id", value)
    assert digest(key_a, "client_id", value) != digest(key_b, "client_id", value)
    assert digest(key_a, "client_id", value).startswith(DIGEST_PREFIX)
    assert "alice" not in digest(key_a, "client_id", value)
