"""What logging costs each request: a request id and the JSON access line, written
as every process writes them (`services.common.runtime.logs`: the redacting JSON formatter,
the rotating file), against the standard library's plain `logging` of the same
message to a file with its default format, in the same run. Prints microseconds
per request for both and their ratio.

    .venv/bin/python bench/access_line.py [--lines 20000]
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from services.common.runtime.logs import access_logger, configure_logging, new_request_id

FIELDS = {
    "method": "POST",
    "path": "/api/sentiments",
    "status": 201,
    "duration_ms": 3.21,
    "client": "127.0.0.1",
}


def microseconds_each(step: Callable[[], None], count: int) -> float:
    """The best of five timed runs of `count` steps, after a warm-up."""
    for _ in range(count // 10):
        step()
    best = float("inf")
    for _ in range(5):
        began = time.perf_counter()
        for _ in range(count):
            step()
        best = min(best, (time.perf_counter() - began) / count)
    return best * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lines", type=int, default=20000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="emogo-bench-logs-") as name:
        measure_both(Path(name), args.lines)


def measure_both(folder: Path, lines: int) -> None:

    plain = logging.getLogger("bench.plain")
    plain.propagate = False
    plain.addHandler(logging.FileHandler(folder / "plain.log"))
    plain.setLevel(logging.INFO)

    def plain_line() -> None:
        plain.info("%s %s %s", "POST", "/api/sentiments", 201)

    plain_cost = microseconds_each(plain_line, lines)

    configure_logging(
        "gateway",
        folder,
        "INFO",
        secrets=["an-admin-token-of-32-characters", "a-viewer-token-of-32-characters"],
        console_level="WARNING",  # as under the launcher: the console gets warnings only
    )

    def our_line() -> None:
        new_request_id(None)
        access_logger.info("%s %s %s", "POST", "/api/sentiments", 201, extra=FIELDS)

    our_cost = microseconds_each(our_line, lines)
    print(f"standard logging, plain line:     {plain_cost:6.1f} µs per request")
    print(f"request id + JSON access line:    {our_cost:6.1f} µs per request")
    print(f"ratio: {our_cost / plain_cost:.2f}")


if __name__ == "__main__":
    main()
