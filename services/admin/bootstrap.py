"""First-run MongoDB bootstrap: make sure the application's credentials can read and
write its database, creating the database user with the admin credentials if needed.

Runs when the admin service starts (unless EMOGO_ADMIN_BOOTSTRAP_DATABASE=false) and
as a command:

    python -m services.admin.bootstrap

It only ever adds: an existing user keeps its other roles, and a second run against a
working setup changes nothing.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.errors import OperationFailure, PyMongoError
from pymongo.uri_parser import parse_uri

from services.common.runtime.settings import ConfigError, Environment

USER_EXISTS = 51003
TIMEOUT_MS = 5000


class BootstrapError(RuntimeError):
    """The application cannot use its database and this could not fix it; says what to do."""


@dataclass(frozen=True)
class Target:
    mongodb_uri: str
    db_name: str
    admin_username: str
    admin_password: str | None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Target:
        env = Environment(environ)
        return cls(
            mongodb_uri=env.mongodb_uri("MONGODB_URI", "mongodb://127.0.0.1:27017"),
            db_name=env.text("DB_NAME", "emogo", "EMOGO_DB_NAME"),
            admin_username=env.text("MONGODB_ADMIN_USERNAME", "admin"),
            admin_password=env.raw("MONGODB_ADMIN_PASSWORD"),
        )


async def problem_with(uri: str, db_name: str, **credentials: Any) -> str | None:
    """None when these credentials can list, write and drop in `db_name`; else why not."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        uri, serverSelectionTimeoutMS=TIMEOUT_MS, **credentials
    )
    try:
        database = client[db_name]
        await database.list_collection_names()
        probe = database[f"emogo_bootstrap_probe_{uuid.uuid4().hex[:8]}"]
        await probe.insert_one({"probe": True})
        await probe.drop()
        return None
    except OperationFailure as failure:
        return f"{failure.details.get('errmsg', failure) if failure.details else failure}"
    except PyMongoError as failure:
        raise BootstrapError(
            f"Cannot reach MongoDB ({type(failure).__name__}); check MONGODB_URI"
        ) from None
    finally:
        await client.close()


async def bootstrap(target: Target) -> str:
    """Makes the application credentials work; returns what it found or did."""
    problem = await problem_with(target.mongodb_uri, target.db_name)
    if problem is None:
        return f"The application credentials can read and write {target.db_name!r}."
    parsed = parse_uri(target.mongodb_uri)
    username, password = parsed.get("username"), parsed.get("password")
    if not username or not password:
        raise BootstrapError(
            f"MongoDB refused the application ({problem}) and MONGODB_URI names no user: "
            "put the application's user and password in MONGODB_URI"
        )
    if not target.admin_password:
        raise BootstrapError(
            f"MongoDB refused user {username!r} ({problem}). Either give it readWrite on "
            f"{target.db_name!r}, or set MONGODB_ADMIN_USERNAME and MONGODB_ADMIN_PASSWORD "
            "so that it can be created"
        )
    options = {name.lower(): value for name, value in parsed["options"].items()}
    # Where the driver will authenticate the user, so that is where it must live.
    auth_db = options.get("authsource") or parsed.get("database") or "admin"
    admin: dict[str, Any] = {
        "username": target.admin_username,
        "password": target.admin_password,
        "authSource": "admin",
    }
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        target.mongodb_uri, serverSelectionTimeoutMS=TIMEOUT_MS, **admin
    )
    role = {"role": "readWrite", "db": target.db_name}
    try:
        users = client[auth_db]
        try:
            await users.command("createUser", username, pwd=password, roles=[role])
            done = f"Created user {username!r} with readWrite on {target.db_name!r}."
        except OperationFailure as failure:
            if failure.code != USER_EXISTS:
                raise
            await users.command("updateUser", username, pwd=password)
            await users.command("grantRolesToUser", username, roles=[role])
            done = f"Gave the existing user {username!r} readWrite on {target.db_name!r}."
    except OperationFailure as failure:
        raise BootstrapError(
            f"The admin credentials (MONGODB_ADMIN_USERNAME={target.admin_username!r}) could "
            f"not create the application user: {(failure.details or {}).get('errmsg', failure)}"
        ) from None
    finally:
        await client.close()
    problem = await problem_with(target.mongodb_uri, target.db_name)
    if problem is not None:
        raise BootstrapError(f"User {username!r} still cannot use {target.db_name!r}: {problem}")
    return done


def main() -> int:
    try:
        print(asyncio.run(bootstrap(Target.from_env())))
    except ConfigError as problem:
        print(f"configuration error: {problem}", file=sys.stderr)
        return 2
    except BootstrapError as problem:
        print(f"bootstrap failed: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
