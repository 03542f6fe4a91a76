"""Single records that arrive together are stored together, and each is answered for
itself: stored once, or refused alone."""

from __future__ import annotations

import asyncio
import uuid

import httpx
from pymongo import AsyncMongoClient, monitoring
from pymongo.errors import DuplicateKeyError

from services.ingest.inserts import GroupInserter
from tests.conftest import Stack
from tests.support import bearer


class InsertCommands(monitoring.CommandListener):
    def __init__(self) -> None:
        self.sent = 0

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "insert":
            self.sent += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def test_concurrent_inserts_share_round_trips_and_refusals_stay_alone(
    mongodb_uri: str, db_name: str
) -> None:
    async def scenario() -> None:
        commands = InsertCommands()
        client: AsyncMongoClient = AsyncMongoClient(mongodb_uri, event_listeners=[commands])
        collection = client[db_name]["grouped"]
        await collection.create_index("key", unique=True)
        await collection.insert_one({"key": "taken"})
        inserter = GroupInserter(lambda: collection)
        keys = [f"k{n}" for n in range(60)] + ["taken", "k7"]
        outcomes = await asyncio.gather(
            *(inserter.insert({"key": key}) for key in keys), return_exceptions=True
        )
        # Refused: the key stored before, and the second k7 (whichever went second).
        refused = [key for key, outcome in zip(keys, outcomes, strict=True) if outcome]
        assert all(isinstance(o, DuplicateKeyError) for o in outcomes if o)
        assert sorted(refused) == ["k7", "taken"]
        stored = await collection.distinct("key")
        assert sorted(stored) == sorted({*keys})
        assert await collection.count_documents({}) == 61
        # 62 inserts went in far fewer round trips (the first alone, the rest grouped).
        assert commands.sent <= 4
        await inserter.drain()
        await client.close()

    asyncio.run(scenario())


def test_concurrent_posts_each_get_their_own_answer(stack: Stack) -> None:
    """Through the gateway: repeated client ids among many concurrent posts are
    refused with the stored record's id; every other post is stored once, readable by
    the id it was answered with."""
    participant = f"P-{uuid.uuid4().hex[:12]}"

    async def scenario() -> None:
        async with httpx.AsyncClient(
            base_url=stack.gateway, headers=bearer("device"), timeout=60
        ) as device:
            bodies = [
                {
                    "user_id": participant,
                    "emotion": "calm",
                    "intensity": n / 100,
                    "client_id": f"c{n % 40}",
                }
                for n in range(48)
            ]
            answers = await asyncio.gather(
                *(device.post("/api/sentiments", json=b) for b in bodies)
            )
        by_client: dict[str, list[httpx.Response]] = {}
        for body, answer in zip(bodies, answers, strict=True):
            by_client.setdefault(body["client_id"], []).append(answer)
        assert len(by_client) == 40
        with stack.client("viewer") as viewer:
            for client_id, group in by_client.items():
                created = [a for a in group if a.status_code == 201]
                assert len(created) == 1, client_id
                for repeat in (a for a in group if a is not created[0]):
                    assert repeat.status_code == 409
                    assert repeat.json()["detail"]["id"] == created[0].json()["id"]
                stored = viewer.get(f"/api/sentiments/{created[0].json()['id']}")
                assert stored.status_code == 200
                assert stored.json()["client_id"] == client_id
            count = viewer.get("/api/sentiments/count", params={"user_id": participant})
            assert count.json()["count"] == 40

    asyncio.run(scenario())
