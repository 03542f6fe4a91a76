"""Settings of the admin service, read once from the environment."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from services.common.runtime.settings import (
    DEFAULT_PORTS,
    ConfigError,
    Environment,
    ServiceSettings,
    common_fields,
    read_service_token,
)

# The defaults shipped with the project: a user config and the template characters.
SHIPPED_DEFAULTS = Path(__file__).resolve().parent / "defaults"
MIN_SECRET_KEY_LENGTH = 32


class AdminSettings(ServiceSettings, frozen=True, kw_only=True):
    # Comma-separated; the first encrypts provider keys, all decrypt (key rotation).
    secret_keys: tuple[str, ...]
    # The gateway's credential: the only one that may append to the audit trail.
    service_token: str
    # Folder with user_config.json and characters/*.json.
    defaults_dir: Path
    # How long a token from authenticate_user stays valid.
    user_token_seconds: float
    # Failed sign-ins in a row before a username is locked, and the first lock's length
    # (it doubles with each further failure).
    sign_in_failures_allowed: int
    sign_in_lock_seconds: float
    # Requests to register_user/authenticate_user per client address and minute.
    sign_in_requests_per_minute: int
    # Serve the unchanged old front end: user endpoints without any credential.
    open_user_endpoints: bool
    # Check and, with the admin credentials, create the application's database user.
    bootstrap_database: bool
    # How long an enrolment code stays valid, and exchange attempts per minute per
    # client address and per study (guessing is limited by both).
    enrolment_code_seconds: float
    enrolment_attempts_per_address: int
    enrolment_attempts_per_study: int
    # Daily notices of participants who stopped reporting (services.admin.research.notices): where
    # the compliance report is read (the gateway), how often studies are checked, and
    # the first retry's delay (doubling after each failure) and the attempts allowed.
    gateway_url: str
    notice_check_seconds: float
    notice_retry_seconds: float
    notice_attempts: int
    # Webhooks may point to loopback, link-local and private addresses (a receiver on
    # the lab's own network); off by default (services.admin.research.webhooks).
    webhook_allow_private: bool
    # Every deletion receipt, also kept outside the database: a database restored from
    # an older backup has those deletions done again (services.admin.research.journal).
    deletion_journal: Path

    def __repr__(self) -> str:
        return f"AdminSettings(port={self.port}, db={self.db_name!r})"


def load_settings(environ: Mapping[str, str] | None = None) -> AdminSettings:
    env = Environment(environ)
    keys = tuple(k.strip() for k in env.text("EMOGO_SECRET_KEY").split(",") if k.strip())
    if not keys or any(len(k) < MIN_SECRET_KEY_LENGTH for k in keys):
        raise ConfigError(
            "EMOGO_SECRET_KEY",
            f"must be at least {MIN_SECRET_KEY_LENGTH} characters (several: comma-separated, "
            "the first encrypts); for example: openssl rand -base64 32",
        )
    fields = common_fields("admin", env)
    return AdminSettings(
        **fields,  # type: ignore[arg-type]  # fields checked one by one by common_fields
        secret_keys=keys,
        service_token=read_service_token(env, fields["credentials"]),  # type: ignore[arg-type]  # fields checked one by one by common_fields
        defaults_dir=Path(env.text("EMOGO_ADMIN_DEFAULTS_DIR", str(SHIPPED_DEFAULTS))).resolve(),
        user_token_seconds=env.number("EMOGO_USER_TOKEN_SECONDS", 7 * 86400.0, 60.0, 366 * 86400),
        sign_in_failures_allowed=env.integer("EMOGO_SIGN_IN_FAILURES_ALLOWED", 5, 1, 100),
        sign_in_lock_seconds=env.number("EMOGO_SIGN_IN_LOCK_SECONDS", 30.0, 1.0, 86400.0),
        sign_in_requests_per_minute=env.integer("EMOGO_SIGN_IN_REQUESTS_PER_MINUTE", 30, 1, 10_000),
        open_user_endpoints=env.choice(
            "EMOGO_ADMIN_OPEN_USER_ENDPOINTS", "FALSE", ("TRUE", "FALSE")
        )
        == "TRUE",
        bootstrap_database=env.choice("EMOGO_ADMIN_BOOTSTRAP_DATABASE", "TRUE", ("TRUE", "FALSE"))
        == "TRUE",
        enrolment_code_seconds=env.number(
            "EMOGO_ENROLMENT_CODE_SECONDS", 7 * 86400.0, 60.0, 366 * 86400
        ),
        enrolment_attempts_per_address=env.integer(
            "EMOGO_ENROLMENT_ATTEMPTS_PER_ADDRESS", 10, 1, 10_000
        ),
        enrolment_attempts_per_study=env.integer(
            "EMOGO_ENROLMENT_ATTEMPTS_PER_STUDY", 60, 1, 100_000
        ),
        gateway_url=env.http_url(
            "EMOGO_GATEWAY_URL",
            f"http://127.0.0.1:{env.port('EMOGO_GATEWAY_PORT', DEFAULT_PORTS['gateway'])}",
        ),
        notice_check_seconds=env.number("EMOGO_NOTICE_CHECK_SECONDS", 300.0, 0.2, 86400.0),
        notice_retry_seconds=env.number("EMOGO_NOTICE_RETRY_SECONDS", 60.0, 0.1, 86400.0),
        notice_attempts=env.integer("EMOGO_NOTICE_ATTEMPTS", 8, 1, 50),
        webhook_allow_private=env.flag("EMOGO_WEBHOOK_ALLOW_PRIVATE", False),
        deletion_journal=Path(
            env.text(
                "EMOGO_DELETION_JOURNAL",
                str(Path(fields["data_dir"]) / "deletion-receipts.jsonl"),  # type: ignore[arg-type]  # a Path, from common_fields
            )
        ).resolve(),
    )
