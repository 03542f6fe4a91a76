"""What `make run` runs with: ports, the data folder, the database to use, and the
role tokens (generated once, kept in the data folder's credentials.env, mode 0600)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from services.common.runtime.settings import (
    DEFAULT_PORTS,
    SERVICE_TOKEN_VARIABLE,
    Credentials,
    Environment,
    read_credentials,
)

ROLES = ("admin", "viewer", "device")


DEFAULT_DB_PORT = 27018


CREDENTIALS_FILE = "credentials.env"


SECRET_KEY_VARIABLE = "EMOGO_SECRET_KEY"  # noqa: S105 - the variable's name


class StackError(Exception):
    """The stack cannot start or keep running; the message says why and what to do."""


@dataclass(frozen=True)
class StackConfig:
    data_dir: Path
    host: str
    ports: dict[str, int]  # gateway, ingest, media, admin
    db_port: int
    external_mongodb_uri: str | None
    credentials: Credentials
    credentials_file: Path
    # Encrypts the admin service's provider keys (EMOGO_SECRET_KEY).
    secret_key: str
    # The gateway's own credential towards the services (EMOGO_SERVICE_TOKEN).
    service_token: str
    # Scheduled backups of the embedded database (services.launcher.backups): where,
    # how often (0: never) and how many are kept.
    backup_dir: Path
    backup_every_seconds: float
    backup_keep: int
    db_name: str = "emogo"
    passthrough_env: dict[str, str] = field(default_factory=dict)

    @property
    def mongodb_uri(self) -> str:
        return self.external_mongodb_uri or local_mongodb_uri(self.db_port)

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    def url(self, name: str) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{host}:{self.ports[name]}"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> StackConfig:
        environ = dict(os.environ if environ is None else environ)
        env = Environment(environ)
        data_dir = Path(env.text("EMOGO_DATA_DIR", "./data")).resolve()
        ports = {
            name: env.port(f"EMOGO_{name.upper()}_PORT", default)
            for name, default in DEFAULT_PORTS.items()
        }
        credentials, secrets_of, credentials_file = load_or_create_credentials(data_dir, environ)
        return cls(
            data_dir=data_dir,
            host=env.text("EMOGO_HOST", "127.0.0.1"),
            ports=ports,
            db_port=env.port("EMOGO_DB_PORT", DEFAULT_DB_PORT),
            external_mongodb_uri=env.raw("MONGODB_URI"),
            credentials=credentials,
            credentials_file=credentials_file,
            secret_key=secrets_of[SECRET_KEY_VARIABLE],
            service_token=secrets_of[SERVICE_TOKEN_VARIABLE],
            backup_dir=Path(env.text("EMOGO_BACKUP_DIR", str(data_dir / "backups"))).resolve(),
            backup_every_seconds=env.duration("EMOGO_BACKUP_EVERY", 0.0, 0.0, 366 * 86400.0),
            backup_keep=env.integer("EMOGO_BACKUP_KEEP", 7, 1, 10_000),
            db_name=env.text("DB_NAME", "emogo", "EMOGO_DB_NAME"),
            passthrough_env=environ,
        )


def load_or_create_credentials(
    data_dir: Path, environ: Mapping[str, str]
) -> tuple[Credentials, dict[str, str], Path]:
    """The role tokens, and the secret key and service token by their variables. Values
    in the environment win; the rest come from the data folder's credentials file,
    created on first run, readable only by its owner."""
    path = data_dir / CREDENTIALS_FILE
    stored: dict[str, str] = {}
    if path.exists():
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)
        for line in path.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep and not key.startswith("#"):
                stored[key.strip()] = value.strip()
    generated = [
        *(f"EMOGO_{role.upper()}_TOKEN" for role in ROLES),
        SECRET_KEY_VARIABLE,
        SERVICE_TOKEN_VARIABLE,
    ]
    missing = [name for name in generated if not environ.get(name) and not stored.get(name)]
    if missing:
        for name in missing:
            stored[name] = secrets.token_urlsafe(32)
        data_dir.mkdir(parents=True, exist_ok=True)
        text = "# EmoGo role tokens and secret key, generated on first run. Keep private.\n"
        text += "".join(f"{k}={v}\n" for k, v in sorted(stored.items()))
        temporary = path.with_suffix(".tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(text)
        temporary.replace(path)
    merged = {**stored, **{k: v for k, v in environ.items() if k in generated and v}}
    internal = {name: merged[name] for name in (SECRET_KEY_VARIABLE, SERVICE_TOKEN_VARIABLE)}
    return read_credentials(Environment(merged)), internal, path


def local_mongodb_uri(port: int) -> str:
    """The URI of a database server on this machine, such as the embedded one.

    Without retryable writes: the embedded server is one node on this machine, so the
    driver's single retry has no failover to bridge, and the server's bookkeeping of
    retryable writes made each insert cost it more and more (0.74 ms of its CPU at
    first, 10-11 ms once 12,000 had been made; 0.55 ms throughout without it:
    bench/embedded_writes.py). A write whose answer is lost fails instead of being sent
    again; it was never confirmed, and phones resend it with its `client_id`. A
    `MONGODB_URI` keeps the driver's defaults."""
    return f"mongodb://127.0.0.1:{port}/?directConnection=true&retryWrites=false"
