"""Several worker processes of one service sharing one listening socket.

`EMOGO_<SERVICE>_WORKERS=N` (N > 1) makes `serve` bind the port once and fork N
workers that each run the whole app on that socket; the kernel hands each new
connection to one of them. A worker that dies is replaced at once (and with a
growing pause when it keeps dying at start), so a crash costs only the requests
that worker had in flight. SIGTERM or SIGINT stops every worker gracefully.

uvicorn's own `workers=` needs an import string and a protocol class it can pickle
for its spawned children; the guarded protocol (services.common.runtime.server) is built
per service from its settings, so the workers are forked here instead, after the
settings are read and before any event loop, thread or database client exists.
Everything the workers must agree on (rate limits, sign-in locks, rollups) lives
in MongoDB, never in a worker's memory.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable

# Environment variable telling a worker its number (1..N), for its log lines.
WORKER_VARIABLE = "EMOGO_WORKER"
# A worker that dies sooner than this after starting counts as failing to start.
EARLY_DEATH_SECONDS = 5.0
MAX_RESTART_PAUSE_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 15.0


def listening_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


class WorkerPool:
    """Forks `count` children running `run_worker(sock)` and keeps `count` alive."""

    def __init__(self, name: str, count: int, run_worker: Callable[[socket.socket], None]) -> None:
        self.name = name
        self.count = count
        self.run_worker = run_worker
        self.children: dict[int, tuple[int, float]] = {}  # pid -> (number, started)
        self.stopping = False
        self.pause = 0.0

    def spawn(self, number: int, sock: socket.socket) -> None:
        pid = os.fork()
        if pid == 0:  # the worker
            code = 0
            try:
                for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
                    signal.signal(signum, signal.SIG_DFL)
                os.environ[WORKER_VARIABLE] = str(number)
                self.run_worker(sock)
            except BaseException:  # reported, then the worker ends
                traceback.print_exc()
                code = 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        self.children[pid] = (number, time.monotonic())

    def _stop(self, signum: int, _frame: object) -> None:
        self.stopping = True
        for pid in list(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    def run(self, sock: socket.socket) -> None:
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        for number in range(1, self.count + 1):
            self.spawn(number, sock)
        deadline: float | None = None
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                if self.stopping:
                    deadline = deadline or time.monotonic() + STOP_TIMEOUT_SECONDS
                    if time.monotonic() > deadline:
                        for child in self.children:
                            with contextlib.suppress(ProcessLookupError):
                                os.kill(child, signal.SIGKILL)
                time.sleep(0.05)
                continue
            number, started = self.children.pop(pid)
            if self.stopping:
                continue
            self._restart(number, started, status, sock)

    def _restart(self, number: int, started: float, status: int, sock: socket.socket) -> None:
        code = os.waitstatus_to_exitcode(status)
        early = time.monotonic() - started < EARLY_DEATH_SECONDS
        self.pause = min(MAX_RESTART_PAUSE_SECONDS, max(0.5, self.pause * 2)) if early else 0.0
        print(
            f"{self.name} worker {number} (exit {code}) died; starting a new one"
            + (f" in {self.pause:.1f} s" if self.pause else ""),
            file=sys.stderr,
            flush=True,
        )
        if self.pause:
            time.sleep(self.pause)
        if not self.stopping:
            self.spawn(number, sock)
