"""What the connection limits cost: uvicorn's stock httptools protocol against the
guarded one every process uses (services/common/runtime/server.py), side by side.

Two uvicorn processes serve the same minimal ASGI app (so the protocol is most of
the work), one with each protocol; rounds alternate between them: small POSTs with
a JSON body over keep-alive connections, at the same concurrency. The client is the
bottleneck here, so what counts is the server's CPU time per request (user + system,
read from the process around each round). Read the ratio.

    .venv/bin/python bench/connection_limits.py [--seconds 4] [--rounds 3] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
from pathlib import Path

import httpx
import psutil
from support import rate

from tests.support import free_port, http_ok, wait_until

SERVER = """
import sys
import uvicorn
from services.common.runtime.server import ConnectionLimits, guarded_protocol

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b'{"ok":true}'})

guarded = sys.argv[2] == "guarded"
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning",
            access_log=False, lifespan="off",
            http=guarded_protocol(ConnectionLimits(max_per_client=256)) if guarded else "httptools")
"""


def start(kind: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(port), kind],
        cwd=Path(__file__).resolve().parent.parent,
    )
    url = f"http://127.0.0.1:{port}"
    wait_until(http_ok(url), 30, f"the {kind} server")
    return process, url


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


async def rounds(
    servers: dict[str, tuple[subprocess.Popen[bytes], str]], args: argparse.Namespace
) -> dict[str, list[float]]:
    """Server CPU milliseconds per request, per round."""
    urls = {name: url for name, (_, url) in servers.items()}
    body = b'{"user_id": "P001", "emotion": "calm", "intensity": 0.5}'
    rates: dict[str, list[float]] = {name: [] for name in urls}
    limits = httpx.Limits(max_connections=args.concurrency)
    clients = {name: httpx.AsyncClient(base_url=url, limits=limits) for name, url in urls.items()}
    try:
        for number in range(1, args.rounds + 1):
            order = list(urls) if number % 2 else list(reversed(urls))
            for name in order:
                client = clients[name]

                async def post(client: httpx.AsyncClient = client) -> int:
                    headers = {"Content-Type": "application/json"}
                    response = await client.post("/", content=body, headers=headers)
                    assert response.status_code == 200
                    return 1

                server = psutil.Process(servers[name][0].pid)
                cpu_before = cpu_seconds(server)
                per_second = await rate(post, args.seconds, args.concurrency)
                requests = per_second * args.seconds
                cost = (cpu_seconds(server) - cpu_before) * 1000 / requests
                rates[name].append(cost)
                print(
                    f"round {number} {name:8s} {per_second:8.0f} req/s, "
                    f"server {cost:.3f} CPU ms/request",
                    flush=True,
                )
    finally:
        for client in clients.values():
            await client.aclose()
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    servers = {kind: start(kind) for kind in ("stock", "guarded")}
    try:
        rates = asyncio.run(rounds(servers, args))
    finally:
        for process, _ in servers.values():
            process.terminate()
            process.wait(10)
    medians = {name: statistics.median(values) for name, values in rates.items()}
    print(
        f"\nserver CPU per request: stock {medians['stock']:.3f} ms, guarded "
        f"{medians['guarded']:.3f} ms; guarded/stock {medians['guarded'] / medians['stock']:.2f}"
    )


if __name__ == "__main__":
    main()
