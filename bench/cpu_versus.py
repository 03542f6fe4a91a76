"""CPU per single post of this checkout's gateway and ingest against another revision's,
in alternating blocks: the way to tell whether a change to the hot path pays.

`cpu_cost.py` measures each app once, in turn; on these machines the load of the
host moves by a third within minutes, so two of its runs cannot show a change of a
few percent. Here both versions run side by side on one embedded database (each in
its own database name): an ingest and a gateway of this checkout and of a `git
worktree` of REV, started alike (the stack around them serves media, admin and the
database). Blocks of single posts (concurrency 16) alternate
between them, starting with each in turn, and each block's CPU per post is read from
/proc as `cpu_cost.py` does. The median of the per-block ratios is what to read; the
spread of the ratios says how far to trust it.

    .venv/bin/python bench/cpu_versus.py REV [--blocks 12] [--posts 1500]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from cpu_cost import alternating_blocks, drive, median_and_range, single_posts
from support import bearer, started_pair, throwaway_stack

from services.launcher.config import StackConfig

ROOT = Path(__file__).resolve().parent.parent
PROCESSES = ("gateway", "ingest")


@contextmanager
def worktree(revision: str) -> Iterator[Path]:
    """A checkout of `revision` in a temporary folder while the block runs."""
    folder = Path(tempfile.mkdtemp(prefix="emogo-versus-")) / "tree"
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(folder), revision],
        check=True,
        capture_output=True,
    )
    try:
        yield folder
    finally:
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(folder)],
            check=False,
            capture_output=True,
        )
        shutil.rmtree(folder.parent, ignore_errors=True)


async def compare(
    config: StackConfig,
    here: tuple[dict[str, int], str],
    there: tuple[dict[str, int], str],
    args: argparse.Namespace,
) -> None:
    limits = httpx.Limits(max_connections=16)
    headers = bearer(config, "device")
    clients = {
        label: (httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=600), pids)
        for label, (pids, url) in (("this checkout", here), (args.revision, there))
    }
    for client, _ in clients.values():  # warm-up
        await drive(single_posts(client), 800, 16, 201)
    ratios: dict[str, list[float]] = {name: [] for name in (*PROCESSES, "pair")}
    print(f"{'block':<7}{'CPU ms per post':<24}{'gateway':>9}{'ingest':>9}")
    sides = {label: (pids, single_posts(client)) for label, (client, pids) in clients.items()}
    number = 0
    async for costs in alternating_blocks(sides, args.blocks, args.posts, 16, 201):
        number += 1
        for label, cost in costs.items():
            print(
                f"{number:<7}{label:<24}" + "".join(f"{cost[name]:9.3f}" for name in PROCESSES),
                flush=True,
            )
        mine, theirs = costs["this checkout"], costs[args.revision]
        for name in PROCESSES:
            ratios[name].append(mine[name] / theirs[name])
        ratios["pair"].append(sum(mine.values()) / sum(theirs.values()))
    print(f"\nthis checkout / {args.revision}, median of {args.blocks} blocks (min-max):")
    for name, values in ratios.items():
        print(f"  {name:<8}{median_and_range(values)}")
    for client, _ in clients.values():
        await client.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("revision", help="the git revision to compare with (e.g. HEAD~3)")
    parser.add_argument("--blocks", type=int, default=12)
    parser.add_argument("--posts", type=int, default=1500, help="single posts per block")
    args = parser.parse_args()
    with (
        worktree(args.revision) as tree,
        throwaway_stack(EMOGO_LOG_LEVEL="INFO") as (config, _),
        started_pair(config, ROOT, "emogo_versus_here") as (here, here_url),
        started_pair(config, tree, "emogo_versus_there") as (there, there_url),
    ):
        asyncio.run(compare(config, (here, here_url), (there, there_url), args))


if __name__ == "__main__":
    main()
