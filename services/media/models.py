"""Beanie documents of the media service (vlogs and their stored videos)."""

from beanie import Document

DOCUMENTS: list[type[Document]] = []
