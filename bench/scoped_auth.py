"""What a participant's own token costs per request against the global device token.

Starts a throw-away stack, creates a study and enrols one participant (trading the
code for the token as a phone would), then alternates rounds of single sentiment
posts through the gateway with the device token and with the participant's token,
and prints the median rates and their ratio (aim: >= 0.9). A participant's token is
looked up by its SHA-256 in MongoDB and then kept for 5 s in each process, and its
study is checked to be open the same way, so the ratio shows what that costs.

    .venv/bin/python bench/scoped_auth.py [--seconds 4] [--rounds 3] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import httpx
from support import bearer, rate, throwaway_stack


def enrol_one(gateway: str, admin: dict[str, str]) -> dict[str, str]:
    with httpx.Client(base_url=gateway, timeout=60) as client:
        study = {"study_id": "bench", "name": "Bench"}
        client.post("/api/studies", json=study, headers=admin).raise_for_status()
        issued = client.post(
            "/api/studies/bench/participants", json={"user_ids": ["B001"]}, headers=admin
        )
        issued.raise_for_status()
        code = issued.json()["participants"][0]["code"]
        answer = client.post("/api/enrol", json={"study_id": "bench", "code": code})
        answer.raise_for_status()
        return {"Authorization": f"Bearer {answer.json()['token']}"}


async def posts_per_second(
    gateway: str, headers: dict[str, str], user_id: str | None, seconds: float, concurrency: int
) -> float:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    body: dict = {"emotion": "calm", "intensity": 0.5, "timestamp": time.time() - 60}
    if user_id:
        body["user_id"] = user_id
    async with httpx.AsyncClient(
        base_url=gateway, headers=headers, limits=limits, trust_env=False, timeout=60
    ) as client:

        async def one_post() -> int:
            response = await client.post("/api/sentiments", json=body)
            if response.status_code != 201:
                raise SystemExit(f"answered {response.status_code}: {response.text[:200]}")
            return 1

        await one_post()  # warm the connections and the token cache
        return await rate(one_post, seconds, concurrency)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per credential")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight")
    args = parser.parse_args()
    with throwaway_stack() as (config, _):
        gateway = config.url("gateway")
        credentials = {
            "device token": (bearer(config, "device"), "B999"),
            "participant token": (enrol_one(gateway, bearer(config, "admin")), None),
        }
        rates: dict[str, list[float]] = {name: [] for name in credentials}
        for round_number in range(1, args.rounds + 1):
            for name, (headers, user_id) in credentials.items():
                measured = asyncio.run(
                    posts_per_second(gateway, headers, user_id, args.seconds, args.concurrency)
                )
                rates[name].append(measured)
                print(f"round {round_number} {name:18s} {measured:8.0f} posts/s", flush=True)
        medians = {name: statistics.median(values) for name, values in rates.items()}
        print()
        for name, value in medians.items():
            print(f"{name:18s} median {value:8.0f} posts/s")
        ratio = medians["participant token"] / medians["device token"]
        print(f"\nparticipant/device ratio: {ratio:.2f} (aim: >= 0.90)")


if __name__ == "__main__":
    main()
