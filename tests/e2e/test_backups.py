"""Backup and restore as a user runs them (`python -m services.launcher backup` while
the stack runs, `restore` once it is stopped), on the embedded database: a restore
brings back everything the backup held except what a participant had deleted since,
and refuses a damaged backup or a running stack without changing anything."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from pymongo import MongoClient

from services.common.runtime.settings import SERVICE_TOKEN_VARIABLE, ConfigError, Credentials
from services.launcher.backups import ARCHIVE, BackupSchedule, backups_in, checked_manifest
from services.launcher.config import SECRET_KEY_VARIABLE, StackConfig
from tests.conftest import Stack, run_stack, start_secantus
from tests.e2e.test_withdrawal_deletion import contribute, withdraw
from tests.media.conftest import opencv_video
from tests.support import (
    REPO,
    SECRET_KEY,
    SERVICE_TOKEN,
    TOKENS,
    enrolled,
    stack_config,
    wait_until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def launcher_command(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m services.launcher ...` with the settings this stack runs with."""
    config = stack.config
    env = {
        **config.passthrough_env,
        "EMOGO_DATA_DIR": str(config.data_dir),
        "EMOGO_DB_PORT": str(config.db_port),
        "DB_NAME": stack.db_name,
        **{f"EMOGO_{role.upper()}_TOKEN": token for role, token in TOKENS.items()},
        SECRET_KEY_VARIABLE: SECRET_KEY,
        SERVICE_TOKEN_VARIABLE: SERVICE_TOKEN,
    }
    return subprocess.run(
        [sys.executable, "-m", "services.launcher", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def counts(stack: Stack, study_id: str, user_id: str) -> tuple[int, int, int]:
    with stack.client("admin") as admin:
        scope = {"study_id": study_id, "user_id": user_id}
        sentiments = admin.get("/api/sentiments/count", params=scope).json()["count"]
        gps = admin.get("/api/gps/count", params=scope).json()["count"]
        vlogs = admin.get("/api/vlogs", params=scope).json()
    return sentiments, gps, len(vlogs)


def vlog_digests(stack: Stack, study_id: str) -> dict[str, str]:
    """Each vlog's id and the sha256 of the bytes it downloads as."""
    with stack.client("admin") as admin:
        listed = admin.get("/api/vlogs", params={"study_id": study_id, "limit": 100}).json()
        return {
            vlog["_id"]: hashlib.sha256(
                admin.get(f"/api/vlogs/{vlog['_id']}/download").content
            ).hexdigest()
            for vlog in listed
        }


def test_a_restore_brings_back_all_but_what_was_deleted_since(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    study_id = f"backup-{uuid.uuid4().hex[:8]}"
    videos = [opencv_video(tmp_path / f"clip{n}.mp4", "mp4v", 20 + n) for n in range(3)]
    with run_stack(None, data_dir, "emogo") as stack:
        with stack.client("admin") as admin:
            created = admin.post("/api/studies", json={"study_id": study_id, "name": "Backup"})
            assert created.status_code == 201, created.text
        tokens = enrolled(stack, study_id, ["P1", "P2", "P3"])
        for n, user_id in enumerate(tokens):
            contribute(stack, tokens[user_id], user_id, videos[n])
        before = {user_id: counts(stack, study_id, user_id) for user_id in tokens}
        digests = vlog_digests(stack, study_id)
        assert before["P1"] == (3, 2, 1)
        assert len(digests) == 3

        # Taken while the stack runs.
        taken = launcher_command(stack, "backup")
        assert taken.returncode == 0, taken.stderr
        [backup] = backups_in(data_dir / "backups")
        assert str(backup) in taken.stdout

        # After the backup, P1 withdraws with deletion.
        withdrawn = withdraw(stack, study_id, "P1")
        assert withdrawn.status_code == 200, withdrawn.text
        receipt = withdrawn.json()["deletion_receipt"]
        assert counts(stack, study_id, "P1") == (0, 0, 0)

        # A running stack's database is not replaced.
        refused = launcher_command(stack, "restore", str(backup))
        assert refused.returncode == 1
        assert "stop it" in refused.stderr

    # A damaged copy is refused, and nothing is changed.
    damaged = tmp_path / "damaged"
    shutil.copytree(backup, damaged)
    with (damaged / ARCHIVE).open("r+b") as archive:
        archive.seek(100)
        byte = archive.read(1)
        archive.seek(100)
        archive.write(bytes([byte[0] ^ 0xFF]))
    database_files = sorted(path.name for path in (data_dir / "db").iterdir())
    refused = launcher_command(stack, "restore", str(damaged))
    assert refused.returncode == 1
    assert "damaged" in refused.stderr
    assert sorted(path.name for path in (data_dir / "db").iterdir()) == database_files

    restored = launcher_command(stack, "restore", str(backup))
    assert restored.returncode == 0, restored.stderr
    manifest = json.loads((backup / "manifest.json").read_text())
    assert manifest["created_at"] in restored.stdout
    replaced = [path for path in data_dir.iterdir() if path.name.startswith("db.before-restore")]
    assert len(replaced) == 1, "the replaced database is kept"

    with run_stack(None, data_dir, "emogo") as stack:
        # The withdrawal is done again on start, from the receipt kept outside the database.
        wait_until(
            lambda: counts(stack, study_id, "P1") == (0, 0, 0), 60, "P1's deletion done again"
        )
        assert {user_id: counts(stack, study_id, user_id) for user_id in ("P2", "P3")} == {
            user_id: before[user_id] for user_id in ("P2", "P3")
        }
        p1_vlogs = [vlog_id for vlog_id in digests if vlog_id not in vlog_digests(stack, study_id)]
        assert len(p1_vlogs) == 1
        assert vlog_digests(stack, study_id) == {
            vlog_id: digest for vlog_id, digest in digests.items() if vlog_id not in p1_vlogs
        }
        with stack.client() as phone:
            posted = phone.post(
                "/api/sentiments",
                json={"user_id": "P1", "emotion": "calm", "intensity": 0.5},
                headers=tokens["P1"],
            )
            assert posted.status_code == 401, "P1's token stays revoked"
        with stack.client("admin") as admin:
            kept = admin.get(f"/api/deletion-receipts/{receipt['receipt_id']}")
            assert kept.json() == receipt, "the receipt P1 was given is the one kept"
            participants = admin.get(f"/api/studies/{study_id}/participants").json()
            status = {row["user_id"]: row["status"] for row in participants}
            assert status["P1"] == "withdrawn"
            assert status["P2"] != "withdrawn"


def test_scheduled_backups_keep_the_newest(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    database, uri = start_secantus(data_dir / "db", tmp_path / "database.log")
    try:
        config = dataclasses.replace(
            stack_config(data_dir, Credentials(**TOKENS), None, {}),
            db_port=int(uri.split(":")[2].split("/")[0]),
        )
        with MongoClient(uri) as client:
            client.emogo.kept.insert_one({"_id": "kept"})
        schedule = BackupSchedule(config, config.backup_dir, seconds=3600, keep=2)
        made = [schedule.step() for _ in range(3)]
        assert all(made)
        assert backups_in(config.backup_dir) == made[1:]
        for backup in made[1:]:
            checked_manifest(backup)
    finally:
        database.terminate()
        database.wait(30)


@pytest.mark.parametrize(
    ("every", "seconds"),
    [("", 0.0), ("3600", 3600.0), ("90m", 5400.0), ("6h", 21600.0), ("1d", 86400.0)],
)
def test_the_backup_schedule_reads_durations(tmp_path: Path, every: str, seconds: float) -> None:
    config = StackConfig.from_env({"EMOGO_DATA_DIR": str(tmp_path), "EMOGO_BACKUP_EVERY": every})
    assert config.backup_every_seconds == seconds


@pytest.mark.parametrize("every", ["6 hours", "h", "-1h", "400d"])
def test_a_bad_backup_schedule_names_the_variable(tmp_path: Path, every: str) -> None:
    with pytest.raises(ConfigError) as caught:
        StackConfig.from_env({"EMOGO_DATA_DIR": str(tmp_path), "EMOGO_BACKUP_EVERY": every})
    assert caught.value.variable == "EMOGO_BACKUP_EVERY"
