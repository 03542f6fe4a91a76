"""Beanie documents of the admin service (users, characters, configs)."""

from beanie import Document

DOCUMENTS: list[type[Document]] = []
