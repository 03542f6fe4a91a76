"""A stand-in upstream service for gateway tests, run as its own uvicorn process.

- any method on /echo...: reads the body as a stream; answers with its size, sha256,
  the path and query it saw and the headers it received, plus hop-by-hop headers
  of its own that the gateway must drop;
- GET /stream?size=N: sends N bytes in 1 MiB chunks, counting aborted streams;
- GET /slow?seconds=S: answers after S seconds;
- GET /gzip: a gzip-encoded body, to be passed on still encoded;
- any method on /stall: never reads the body nor answers (a service that hangs);
- GET /stats: how many streams were aborted by the client going away.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
from urllib.parse import parse_qs

STATS = {"aborted_streams": 0, "completed_streams": 0}
CHUNK = b"\x5a" * (1024 * 1024)


async def _json(send, body: dict, extra: list | None = None) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                *(extra or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


async def app(scope, receive, send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    query = {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}
    path = scope["path"]
    if path.endswith("/stream"):
        size = int(query.get("size", "0"))
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/octet-stream"),
                    (b"content-length", str(size).encode()),
                ],
            }
        )
        gone = asyncio.Event()

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()

        watcher = asyncio.create_task(watch())
        sent = 0
        while sent < size and not gone.is_set():
            piece = CHUNK[: min(len(CHUNK), size - sent)]
            await send({"type": "http.response.body", "body": piece, "more_body": True})
            sent += len(piece)
            await asyncio.sleep(0)
        if gone.is_set():
            STATS["aborted_streams"] += 1
            return
        await send({"type": "http.response.body", "body": b""})
        STATS["completed_streams"] += 1
        watcher.cancel()
        return
    if path.endswith("/gzip"):
        payload = gzip.compress(b"compressed hello " * 100)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/plain"),
                    (b"content-encoding", b"gzip"),
                    (b"content-length", str(len(payload)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})
        return
    if path.endswith("/stats"):
        await _json(send, STATS)
        return
    if path.endswith("/stall"):
        await asyncio.sleep(3600)
        return
    if path.endswith("/slow"):
        await asyncio.sleep(float(query.get("seconds", "5")))
        await _json(send, {"slow": True})
        return
    digest, size = hashlib.sha256(), 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        digest.update(chunk)
        size += len(chunk)
        if not message.get("more_body", False):
            break
    await _json(
        send,
        {
            "method": scope["method"],
            "path": scope["raw_path"].decode(),
            "query": scope["query_string"].decode(),
            "size": size,
            "sha256": digest.hexdigest(),
            "headers": [[k.decode(), v.decode()] for k, v in scope["headers"]],
        },
        extra=[
            (b"connection", b"x-upstream-private"),
            (b"x-upstream-private", b"secret-hop"),
            (b"keep-alive", b"timeout=5"),
            (b"x-upstream-public", b"kept"),
            (b"x-request-id", b"upstream-made-this-up"),
        ],
    )
