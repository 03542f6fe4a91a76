"""Beanie documents of the ingest service (sentiments and GPS fixes)."""

from beanie import Document

DOCUMENTS: list[type[Document]] = []
