"""Configuration read once from the environment into frozen settings objects.

Every value has one environment variable; a missing or invalid value stops the
process at start-up with a message that names the variable and says what to fix.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from services.common.runtime.server import ConnectionLimits

# The services behind the gateway, and every process's default port.
SERVICE_NAMES = ("ingest", "media", "admin")
DEFAULT_PORTS = {"gateway": 8000, "ingest": 8001, "media": 8002, "admin": 8003}
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
N = TypeVar("N", int, float)


class ConfigError(Exception):
    """A configuration value is missing or invalid; the message says which and why."""

    def __init__(self, variable: str, reason: str) -> None:
        super().__init__(f"{variable}: {reason}")
        self.variable = variable
        self.reason = reason


DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class Environment:
    """Typed reads of environment variables, each failing with a `ConfigError`."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = os.environ if environ is None else environ

    def raw(self, name: str) -> str | None:
        """The value, or None when the variable is unset or blank."""
        value = self._environ.get(name)
        if value is None or value.strip() == "":
            return None
        return value.strip()

    def text(self, name: str, default: str | None = None, *aliases: str) -> str:
        for candidate in (name, *aliases):
            value = self.raw(candidate)
            if value is not None:
                return value
        if default is None:
            raise ConfigError(name, "is required but not set")
        return default

    def integer(self, name: str, default: int, minimum: int, maximum: int) -> int:
        return self._bounded(name, default, minimum, maximum, int, "a whole number")

    def number(self, name: str, default: float, minimum: float, maximum: float) -> float:
        return self._bounded(name, default, minimum, maximum, float, "a number")

    def _bounded(
        self, name: str, default: N, minimum: N, maximum: N, parse: type[N], kind: str
    ) -> N:
        value = self.raw(name)
        if value is None:
            return default
        try:
            number = parse(value)
        except ValueError:
            raise ConfigError(name, f"must be {kind}, got {value!r}") from None
        if not minimum <= number <= maximum:
            raise ConfigError(name, f"must be between {minimum} and {maximum}, got {number}")
        return number

    def duration(self, name: str, default: float, minimum: float, maximum: float) -> float:
        """Seconds, written as a number of seconds or with a unit: 90, 90s, 30m, 6h, 1d."""
        value = self.raw(name)
        if value is None:
            return default
        unit = value[-1].lower()
        scale = DURATION_UNITS.get(unit)
        try:
            seconds = float(value[:-1] if scale else value) * (scale or 1)
        except ValueError:
            raise ConfigError(
                name, f"must be a duration such as 90s, 30m, 6h or 1d, got {value!r}"
            ) from None
        if not minimum <= seconds <= maximum:
            raise ConfigError(
                name, f"must be between {minimum:g} s and {maximum:g} s, got {seconds:g} s"
            )
        return seconds

    def port(self, name: str, default: int) -> int:
        return self.integer(name, default, 1, 65535)

    def time_zone(self, name: str, default: str) -> str:
        value = self.text(name, default)
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(
                name, f"must be an IANA time zone such as Asia/Taipei, got {value!r}"
            ) from None
        return value

    def http_url(self, name: str, default: str) -> str:
        value = self.text(name, default)
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(
                name, f"must be an http(s) URL such as http://127.0.0.1:8001, got {value!r}"
            )
        return value.rstrip("/")

    def http_urls(self, name: str, default: str) -> tuple[str, ...]:
        """One URL or several separated by commas (replicas of one service)."""
        urls = []
        for part in self.text(name, default).split(","):
            if part.strip():
                urls.append(Environment({name: part}).http_url(name, default))
        if len(set(urls)) != len(urls):
            raise ConfigError(name, "lists a URL twice")
        return tuple(urls)

    def mongodb_uri(self, name: str, default: str) -> str:
        value = self.text(name, default)
        if not value.startswith(("mongodb://", "mongodb+srv://")):
            raise ConfigError(name, "must start with mongodb:// or mongodb+srv://")
        return value

    def flag(self, name: str, default: bool) -> bool:
        value = self.raw(name)
        if value is None:
            return default
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(name, f"must be true or false, got {value!r}")

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.text(name, default).upper()
        if value not in choices:
            raise ConfigError(name, f"must be one of {', '.join(choices)}, got {value!r}")
        return value


class Credentials(msgspec.Struct, frozen=True, kw_only=True):
    """The three role tokens. `repr` never shows them."""

    admin: str
    viewer: str
    device: str

    def __repr__(self) -> str:
        return "Credentials(admin=***, viewer=***, device=***)"

    def by_role(self) -> dict[str, str]:
        return {"admin": self.admin, "viewer": self.viewer, "device": self.device}


MIN_TOKEN_LENGTH = 8
# The gateway's own credential towards the services, for what only the gateway may do
# (append to the audit trail). Never a role token: holding the admin token is not enough.
SERVICE_TOKEN_VARIABLE = "EMOGO_SERVICE_TOKEN"  # noqa: S105 - the variable's name


def read_service_token(env: Environment, credentials: Credentials) -> str:
    token = env.text(SERVICE_TOKEN_VARIABLE)
    if len(token) < 16 or any(ch.isspace() for ch in token):
        raise ConfigError(SERVICE_TOKEN_VARIABLE, "must be at least 16 characters without spaces")
    if token in credentials.by_role().values():
        raise ConfigError(SERVICE_TOKEN_VARIABLE, "must differ from the role tokens")
    return token


def read_credentials(env: Environment) -> Credentials:
    tokens: dict[str, str] = {}
    for role in ("admin", "viewer", "device"):
        variable = f"EMOGO_{role.upper()}_TOKEN"
        token = env.text(variable)
        if len(token) < MIN_TOKEN_LENGTH or any(ch.isspace() for ch in token):
            raise ConfigError(
                variable, f"must be at least {MIN_TOKEN_LENGTH} characters without spaces"
            )
        if token in tokens.values():
            raise ConfigError(variable, "must differ from the other role tokens")
        tokens[role] = token
    return Credentials(**tokens)


class ServiceSettings(msgspec.Struct, frozen=True, kw_only=True):
    """What every service process needs. Services subclass it with their own fields."""

    service: str
    host: str
    port: int
    data_dir: Path
    log_dir: Path
    log_level: str
    # What also goes to stdout; the launcher keeps its console files to warnings, since
    # the log file already holds every line.
    console_log_level: str
    credentials: Credentials
    mongodb_uri: str
    db_name: str
    mongodb_admin_username: str
    mongodb_admin_password: str | None
    # Seconds a service keeps retrying the database at start-up before giving up.
    db_startup_timeout: float
    # Deadline of each database operation; past it the request answers 503.
    db_timeout: float
    max_json_body_bytes: int
    # Deadlines and size limits of each client connection (services.common.runtime.server).
    connection_limits: ConnectionLimits
    # Web origins whose pages may call the API (CORS); empty: same origin only.
    cors_origins: tuple[str, ...]
    # Proxies in front of this process whose X-Forwarded-For is believed
    # (EMOGO_TRUSTED_PROXIES: addresses or networks); none by default, so no client,
    # a local one included, chooses the address rate limits and the audit trail see.
    trusted_proxies: tuple[str, ...]
    # Processes serving this service's port (services.common.runtime.workers).
    workers: int
    # The time zone of a study that has none of its own (the days it is counted in,
    # the times its pages show); exported times are always UTC.
    display_timezone: str

    def __repr__(self) -> str:
        name = type(self).__name__
        return f"{name}(service={self.service!r}, port={self.port}, db={self.db_name!r})"


def common_fields(service: str, env: Environment) -> dict[str, object]:
    """The `ServiceSettings` fields, read from the environment for one service."""
    data_dir = Path(env.text("EMOGO_DATA_DIR", "./data")).resolve()
    log_dir = Path(env.text("EMOGO_LOG_DIR", str(data_dir / "logs"))).resolve()
    return {
        "service": service,
        "host": env.text("EMOGO_HOST", "127.0.0.1"),
        "port": env.port(f"EMOGO_{service.upper()}_PORT", DEFAULT_PORTS[service]),
        "data_dir": data_dir,
        "log_dir": log_dir,
        "log_level": (level := env.choice("EMOGO_LOG_LEVEL", "INFO", LOG_LEVELS)),
        "console_log_level": env.choice("EMOGO_CONSOLE_LOG_LEVEL", level, LOG_LEVELS),
        "credentials": read_credentials(env),
        "mongodb_uri": env.mongodb_uri("MONGODB_URI", "mongodb://127.0.0.1:27017"),
        "db_name": env.text("DB_NAME", "emogo", "EMOGO_DB_NAME"),
        "mongodb_admin_username": env.text("MONGODB_ADMIN_USERNAME", "admin"),
        "mongodb_admin_password": env.raw("MONGODB_ADMIN_PASSWORD"),
        "db_startup_timeout": env.number("EMOGO_DB_STARTUP_TIMEOUT", 30.0, 0.0, 600.0),
        "db_timeout": env.number("EMOGO_DB_TIMEOUT", 5.0, 0.1, 600.0),
        "max_json_body_bytes": env.integer(
            "EMOGO_MAX_JSON_BODY_BYTES", 1024 * 1024, 1024, 256 * 1024 * 1024
        ),
        "connection_limits": connection_limits(service, env),
        "cors_origins": cors_origins(env),
        "trusted_proxies": trusted_proxies(env),
        "workers": env.integer(f"EMOGO_{service.upper()}_WORKERS", 1, 1, 64),
        "display_timezone": env.time_zone("EMOGO_DISPLAY_TIMEZONE", "UTC"),
    }


def temp_dir(service: str, env: Environment, data_dir: Path) -> Path:
    """Where a service keeps temporary files: `EMOGO_<SERVICE>_TEMP_DIR`, by default
    `<data dir>/tmp`."""
    return Path(env.text(f"EMOGO_{service.upper()}_TEMP_DIR", str(data_dir / "tmp"))).resolve()


_ORIGIN = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$")


def trusted_proxies(env: Environment) -> tuple[str, ...]:
    """EMOGO_TRUSTED_PROXIES: comma-separated addresses or networks (`10.0.0.5`,
    `172.18.0.0/16`) of reverse proxies whose X-Forwarded-For names the client."""
    found = []
    for item in env.text("EMOGO_TRUSTED_PROXIES", "").split(","):
        if not item.strip():
            continue
        try:
            found.append(str(ipaddress.ip_network(item.strip(), strict=False)))
        except ValueError:
            raise ConfigError(
                "EMOGO_TRUSTED_PROXIES", f"{item.strip()!r} is not an address or network"
            ) from None
    return tuple(found)


def cors_origins(env: Environment) -> tuple[str, ...]:
    """EMOGO_CORS_ORIGINS: comma-separated origins (`https://app.example.org`). `*`
    (any page anywhere) only in the explicit open mode, where no credential is
    involved (EMOGO_ADMIN_OPEN_USER_ENDPOINTS=true)."""
    origins = tuple(
        o.strip().rstrip("/") for o in env.text("EMOGO_CORS_ORIGINS", "").split(",") if o.strip()
    )
    for origin in origins:
        if origin == "*":
            if not env.flag("EMOGO_ADMIN_OPEN_USER_ENDPOINTS", False):
                raise ConfigError(
                    "EMOGO_CORS_ORIGINS",
                    "'*' lets any web page call the API and is allowed only in the open mode "
                    "(EMOGO_ADMIN_OPEN_USER_ENDPOINTS=true); list the front end's origins, "
                    "such as https://app.example.org",
                )
        elif not _ORIGIN.match(origin):
            raise ConfigError(
                "EMOGO_CORS_ORIGINS",
                f"{origin!r} is not an origin: scheme, host and optional port, such as "
                "https://app.example.org or http://localhost:5173",
            )
    return origins


def connection_limits(service: str, env: Environment) -> ConnectionLimits:
    defaults = ConnectionLimits()
    return ConnectionLimits(
        header_timeout=env.number("EMOGO_HEADER_TIMEOUT", defaults.header_timeout, 0.5, 600.0),
        max_header_bytes=env.integer(
            "EMOGO_MAX_HEADER_BYTES", defaults.max_header_bytes, 1024, 1024 * 1024
        ),
        max_header_count=env.integer("EMOGO_MAX_HEADER_COUNT", defaults.max_header_count, 8, 1000),
        body_window=env.number("EMOGO_BODY_TIMEOUT", defaults.body_window, 0.5, 600.0),
        body_min_rate=env.integer("EMOGO_BODY_MIN_RATE", defaults.body_min_rate, 0, 10**9),
        # Only the gateway faces clients; the services see the gateway's address alone.
        max_per_client=(
            env.integer("EMOGO_MAX_CONNECTIONS_PER_CLIENT", 256, 0, 1_000_000)
            if service == "gateway"
            else 0
        ),
    )


def load_service_settings(
    service: str, environ: Mapping[str, str] | None = None
) -> ServiceSettings:
    return ServiceSettings(**common_fields(service, Environment(environ)))  # type: ignore[arg-type]  # fields checked one by one by common_fields
