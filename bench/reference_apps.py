"""The two reference apps `cpu_cost.py` measures EmoGo against, on the same database.

- `minimal`: the least a Litestar app can do for a sentiment: decode the body with
  msgspec into a struct, insert it with PyMongo's async client, answer the id; and a
  list page of 100 as raw documents.
- `seed-motor`: the seed's monolith as it was: FastAPI, a pydantic model per record,
  one insert per request through Motor, `_id` turned into a string for lists.
- `seed`: the same on PyMongo's async client, which replaces the deprecated Motor
  (what the seed would cost if ported to today's driver).
- `bare-ingest` and `bare-relay`: the floor of a gateway and a service as two
  processes. Plain ASGI under uvicorn, no framework, no checks, no logging: the
  service decodes the body with msgspec and stores it through ingest's group commit;
  the relay passes each request to it through the gateway's aiohttp client settings
  and the answer back. What these two cost together is the least any gateway hop in
  front of a Python service can cost on this machine.

    python bench/reference_apps.py minimal|seed|seed-motor|bare-ingest PORT MONGODB_URI DB_NAME
    python bench/reference_apps.py bare-relay PORT UPSTREAM_URL
"""

import sys
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import msgspec
import uvicorn
from pymongo import AsyncMongoClient

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


class Sentiment(msgspec.Struct):
    """What the minimal app and the bare service decode a post into."""

    user_id: str
    emotion: str
    intensity: float
    timestamp: float | str | None = None


def minimal_app(uri: str, db_name: str):
    from litestar import Litestar, Request, get, post

    client: AsyncMongoClient = AsyncMongoClient(uri)
    sentiments = client[db_name]["reference_minimal"]

    @post("/api/sentiments", status_code=201)
    async def create(request: Request) -> dict:
        record = msgspec.json.decode(await request.body(), type=Sentiment)
        document = msgspec.structs.asdict(record)
        document["received_at"] = datetime.now(UTC)
        result = await sentiments.insert_one(document)
        return {"message": "Sentiment created successfully", "id": str(result.inserted_id)}

    @get("/api/sentiments")
    async def listing() -> list[dict]:
        found = await sentiments.find().limit(100).to_list()
        for document in found:
            document["_id"] = str(document["_id"])
        return found

    return Litestar([create, listing])


def seed_app(uri: str, db_name: str, driver: str = "pymongo"):
    from fastapi import FastAPI
    from pydantic import BaseModel, Field

    class SentimentCreate(BaseModel):
        user_id: str
        emotion: str
        intensity: float = Field(ge=0, le=1)
        timestamp: datetime | None = None
        note: str | None = None
        context: str | None = None

    if driver == "motor":  # the seed exactly: Motor runs PyMongo's sync client in threads
        from motor.motor_asyncio import AsyncIOMotorClient

        sentiments = AsyncIOMotorClient(uri)[db_name]["reference_seed"]
    else:
        sentiments = AsyncMongoClient(uri)[db_name]["reference_seed"]
    app = FastAPI()

    @app.post("/api/sentiments", status_code=201)
    async def create(sentiment: SentimentCreate) -> dict:
        document = sentiment.model_dump()
        document["timestamp"] = document["timestamp"] or datetime.now(UTC)
        result = await sentiments.insert_one(document)
        return {"message": "Sentiment created successfully", "id": str(result.inserted_id)}

    @app.get("/api/sentiments")
    async def listing(limit: int = 100) -> list[dict]:
        found = await sentiments.find().sort("timestamp", -1).limit(limit).to_list(limit)
        for document in found:
            document["_id"] = str(document["_id"])
        return found

    return app


async def whole_body(receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


def bare_ingest_app(uri: str, db_name: str):
    from services.ingest.inserts import GroupInserter

    client: AsyncMongoClient = AsyncMongoClient(uri)
    inserter = GroupInserter(lambda: client[db_name]["reference_bare"])
    encode = msgspec.json.Encoder().encode

    async def app(scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        status, answer = 404, {"detail": "Not Found"}
        if scope["path"] == "/api/sentiments" and scope["method"] == "POST":
            record = msgspec.json.decode(await whole_body(receive), type=Sentiment)
            document = msgspec.structs.asdict(record)
            document["received_at"] = datetime.now(UTC)
            await inserter.insert(document)
            status = 201
            answer = {"message": "Sentiment created successfully", "id": str(document["_id"])}
        elif scope["path"] == "/api/sentiments":
            status, answer = 200, []
        body = encode(answer)
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


def bare_relay_app(upstream: str):
    import aiohttp
    from yarl import URL

    from services.gateway.proxy.relay import ReverseProxy

    # The gateway's defaults (services.gateway.settings).
    settings = SimpleNamespace(
        max_upstream_connections=200, pool_timeout=5.0, connect_timeout=3.0, read_timeout=300.0
    )
    sessions: list[aiohttp.ClientSession] = []

    async def app(scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        if not sessions:  # made on the server's loop, as the gateway's lifespan does
            sessions.append(ReverseProxy.make_session(settings))
        body = await whole_body(receive)
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
        url = URL(upstream + scope["raw_path"].decode("latin-1"), encoded=True)
        async with sessions[0].request(scope["method"], url, headers=headers, data=body) as reply:
            answer = await reply.read()
            start = {"type": "http.response.start", "status": reply.status}
            await send({**start, "headers": reply.raw_headers})
            await send({"type": "http.response.body", "body": answer})

    return app


if __name__ == "__main__":
    kind, port = sys.argv[1:3]
    if kind == "bare-relay":
        app = bare_relay_app(sys.argv[3])
    else:
        uri, db_name = sys.argv[3:5]
        apps = {
            "minimal": lambda: minimal_app(uri, db_name),
            "seed": lambda: seed_app(uri, db_name),
            "seed-motor": lambda: seed_app(uri, db_name, driver="motor"),
            "bare-ingest": lambda: bare_ingest_app(uri, db_name),
        }
        app = apps[kind]()
    uvicorn.run(app, host="127.0.0.1", port=int(port), log_level="warning")
