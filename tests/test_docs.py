"""The docs site is held to the code: the codebook page is generated from the codebook's
declarations, and the configuration page names exactly the variables the code reads."""

from __future__ import annotations

import re
from pathlib import Path

from services.gateway.exports.codebook_documents import codebook_markdown

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SERVICES = ("ingest", "media", "admin", "gateway")
ROLES = ("admin", "viewer", "device")
VARIABLE = re.compile(r"\b(EMOGO_[A-Z0-9_]+|MONGODB_[A-Z_]+|DB_NAME)\b")
# Set by the processes themselves for their children, never by a user.
INTERNAL = {"EMOGO_WORKER"}


def variables_read_by_the_code() -> set[str]:
    """Every variable named literally in services/, plus those built per service or role
    (`f"EMOGO_{service}_PORT"`), expanded."""
    names: set[str] = set()
    sources = "".join(path.read_text() for path in (ROOT / "services").rglob("*.py"))
    temp_dir_users = tuple(re.findall(r"temp_dir\(\"(\w+)\"", sources))
    for source in (ROOT / "services").rglob("*.py"):
        text = source.read_text()
        names |= set(re.findall(r"\"(EMOGO_[A-Z0-9_]+|MONGODB_[A-Z_]+|DB_NAME)\"", text))
        for template in re.findall(
            r"f\"EMOGO_\{(?:name|service|role)\.upper\(\)\}_([A-Z_]+)\"", text
        ):
            expansions = {"TOKEN": ROLES, "TEMP_DIR": temp_dir_users}.get(template, SERVICES)
            names |= {f"EMOGO_{part.upper()}_{template}" for part in expansions}
    return names


def test_the_codebook_page_is_the_codebook_the_exports_carry() -> None:
    assert (DOCS / "codebook.md").read_text() == codebook_markdown(), (
        "docs/codebook.md is out of date: run `make docs-reference`"
    )


def test_the_configuration_page_names_every_variable_the_code_reads_and_no_other() -> None:
    documented = set(VARIABLE.findall((DOCS / "configuration.md").read_text()))
    read = variables_read_by_the_code() - INTERNAL
    assert read - documented == set(), "read by the code but not in docs/configuration.md"
    assert documented - read == set(), "in docs/configuration.md but read by no code"


def test_the_readme_stays_a_front_door() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    for command in ("make run", "make test"):
        assert command in readme


def test_every_decision_record_is_listed() -> None:
    records = sorted(path.name for path in (DOCS / "adr").glob("[0-9][0-9][0-9][0-9]-*.md"))
    assert len(records) >= 6
    index = (DOCS / "adr" / "index.md").read_text()
    assert [name for name in records if f"({name})" not in index] == []


def test_every_module_the_docs_name_exists() -> None:
    """A module moved or renamed takes its mentions in the docs with it."""
    named = re.compile(r"\b((?:services|generators|tests|bench)/[\w/]+\.py)\b")
    missing = {
        f"{page.relative_to(ROOT)}: {path}"
        for page in [ROOT / "README.md", *DOCS.rglob("*.md")]
        if not page.is_symlink() and "benchmarks" not in page.parts
        for path in named.findall(page.read_text())
        if not (ROOT / path).exists()
    }
    assert missing == set()
