"""Litestar glue every service uses, knowing nothing of studies or participants: the
app builder, one error hierarchy, body and query validation, OpenAPI, cursor pages,
time-banded reads, health."""
