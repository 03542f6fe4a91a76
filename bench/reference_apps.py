"""The two reference apps `cpu_cost.py` measures EmoGo against, on the same database.

- `minimal`: the least a Litestar app can do for a sentiment: decode the body with
  msgspec into a struct, insert it with PyMongo's async client, answer the id; and a
  list page of 100 as raw documents.
- `seed-motor`: the seed's monolith as it was: FastAPI, a pydantic model per record,
  one insert per request through Motor, `_id` turned into a string for lists.
- `seed`: the same on PyMongo's async client, which replaces the deprecated Motor
  (what the seed would cost if ported to today's driver).

    python bench/reference_apps.py minimal|seed|seed-motor PORT MONGODB_URI DB_NAME
"""

import sys
from datetime import UTC, datetime

import msgspec
import uvicorn
from pymongo import AsyncMongoClient


def minimal_app(uri: str, db_name: str):
    from litestar import Litestar, Request, get, post

    class Sentiment(msgspec.Struct):
        user_id: str
        emotion: str
        intensity: float
        timestamp: float | str | None = None

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


if __name__ == "__main__":
    kind, port, uri, db_name = sys.argv[1:5]
    apps = {
        "minimal": lambda: minimal_app(uri, db_name),
        "seed": lambda: seed_app(uri, db_name),
        "seed-motor": lambda: seed_app(uri, db_name, driver="motor"),
    }
    uvicorn.run(apps[kind](), host="127.0.0.1", port=int(port), log_level="warning")
