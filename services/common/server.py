"""The HTTP/1.1 connection handling every process uses: uvicorn's httptools protocol
with the limits a public server needs and uvicorn does not apply by itself.

uvicorn waits for a request's headers and body as long as the client takes, and
accepts headers of any size and number. A few hundred clients that send one byte
at a time then hold every connection and every task of a process, without any
credential. Each connection here instead has:

- a deadline for its request line and headers (`header_timeout`), answered 408;
- limits on the size of the URL (414) and of the headers, and on their count (431),
  checked while they are parsed, so an oversized request costs no more than the limit;
- a minimum body rate: every `body_window` seconds the body must have advanced by
  `body_min_rate` bytes a second, unless the process itself paused reading (the app
  reads slowly) or the client waits for `100 Continue`; otherwise 408 and the
  connection is closed, and the app sees the client gone;
- optionally, at most `max_per_client` open connections per client address (the
  gateway, which faces the clients): more are answered 429 and closed.

Status codes follow RFC 9110 §15.5.9 (408), §15.5.15 (414) and RFC 6585 §5 (431).
The checks are a timer per connection and a few additions per header, not a task or
an await per read: `bench/connection_limits.py` measured the server's CPU per small
POST at 0.91 of uvicorn's stock protocol (0.159 against 0.175 ms, within noise).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass
from typing import Any

import httptools
import msgspec
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from services.common.errors import error_body

REASONS = {
    408: b"Request Timeout",
    414: b"URI Too Long",
    429: b"Too Many Requests",
    431: b"Request Header Fields Too Large",
}


@dataclass(frozen=True)
class ConnectionLimits:
    header_timeout: float = 10.0
    max_url_bytes: int = 16 * 1024
    max_header_bytes: int = 64 * 1024
    max_header_count: int = 100
    body_window: float = 10.0
    body_min_rate: int = 1024
    # 0: no limit (the services, which only the gateway talks to).
    max_per_client: int = 0


class _Refused(Exception):
    """Stops the parser: the request breaks a limit; the answer is already chosen."""

    def __init__(self, status: int, error: str) -> None:
        super().__init__(error)
        self.status = status
        self.error = error


def refusal(status: int, error: str) -> bytes:
    """A whole HTTP/1.1 response in the platform's JSON envelope, closing the connection."""
    body = msgspec.json.encode(error_body(status, error))
    head = (
        b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
        b"connection: close\r\n" % (status, REASONS[status], len(body))
    )
    if status == 429:
        head += b"retry-after: 5\r\n"
    return head + b"\r\n" + body


def guarded_protocol(limits: ConnectionLimits) -> type[HttpToolsProtocol]:
    """A protocol class for `uvicorn.run(http=...)` applying `limits`; the count of
    connections per client address is kept per process, for this class alone."""
    open_per_client: Counter[str] = Counter()

    class GuardedHttpToolsProtocol(HttpToolsProtocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._header_timer: asyncio.TimerHandle | None = None
            self._body_timer: asyncio.TimerHandle | None = None
            self._header_bytes = 0
            self._header_count = 0
            self._body_bytes = 0
            self._body_bytes_at_check = 0
            self._address: str | None = None

        # --- connection ------------------------------------------------------------

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if limits.max_per_client and self.client:
                self._address = self.client[0]
                open_per_client[self._address] += 1
                if open_per_client[self._address] > limits.max_per_client:
                    self._refuse(
                        429,
                        f"More than {limits.max_per_client} open connections from one address",
                    )
                    return
            self._arm_header_timer()

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel_timers()
            if self._address is not None:
                open_per_client[self._address] -= 1
                if open_per_client[self._address] <= 0:
                    del open_per_client[self._address]
                self._address = None
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self.transport.is_closing():
                return
            self._unset_keepalive_if_required()
            try:
                self.parser.feed_data(data)
            except httptools.HttpParserCallbackError as problem:
                refused = problem.__context__
                if isinstance(refused, _Refused):
                    self._refuse(refused.status, refused.error)
                else:
                    self.send_400_response("Invalid HTTP request received.")
            except httptools.HttpParserError:
                self.send_400_response("Invalid HTTP request received.")
            except httptools.HttpParserUpgrade:
                # No service speaks WebSocket; answer it as a plain request would be.
                self.send_400_response("Protocol upgrades are not supported.")

        def _refuse(self, status: int, error: str) -> None:
            self._cancel_timers()
            if self.cycle is not None and not self.cycle.response_complete:
                # The app's request, if one is running, ends as if the client had left.
                self.cycle.disconnected = True
                self.cycle.message_event.set()
                if self.cycle.response_started:
                    self.transport.close()
                    return
            self.transport.write(refusal(status, error))
            self.transport.close()

        # --- request line and headers ----------------------------------------------

        def _arm_header_timer(self) -> None:
            if self._header_timer is None:
                self._header_timer = self.loop.call_later(
                    limits.header_timeout, self._headers_too_slow
                )

        def _headers_too_slow(self) -> None:
            self._header_timer = None
            if not self.transport.is_closing():
                self._refuse(
                    408, f"The request headers did not arrive within {limits.header_timeout:g} s"
                )

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._header_bytes = 0
            self._header_count = 0
            self._arm_header_timer()

        def on_url(self, url: bytes) -> None:
            super().on_url(url)
            if len(self.url) > limits.max_url_bytes:
                raise _Refused(414, f"The URL is longer than {limits.max_url_bytes} bytes")

        def on_header(self, name: bytes, value: bytes) -> None:
            # httptools may hand one header over in pieces; each piece counts its bytes.
            self._header_bytes += len(name) + len(value)
            if self._header_bytes > limits.max_header_bytes:
                raise _Refused(
                    431, f"The request headers are larger than {limits.max_header_bytes} bytes"
                )
            if name:
                self._header_count += 1
                if self._header_count > limits.max_header_count:
                    raise _Refused(
                        431, f"The request has more than {limits.max_header_count} headers"
                    )
            super().on_header(name, value)

        def on_headers_complete(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None
            super().on_headers_complete()
            self._body_bytes = self._body_bytes_at_check = 0
            self._arm_body_timer()

        # --- body --------------------------------------------------------------------

        def _arm_body_timer(self) -> None:
            self._body_timer = self.loop.call_later(limits.body_window, self._check_body_rate)

        def _check_body_rate(self) -> None:
            self._body_timer = None
            cycle = self.cycle
            if cycle is None or not cycle.more_body or cycle.response_complete:
                return
            if self.transport.is_closing():
                return
            waiting_on_us = self.flow.read_paused or cycle.waiting_for_100_continue
            advanced = self._body_bytes - self._body_bytes_at_check
            if not waiting_on_us and advanced < limits.body_min_rate * limits.body_window:
                self._refuse(
                    408,
                    f"The request body arrives slower than {limits.body_min_rate} bytes/s",
                )
                return
            self._body_bytes_at_check = self._body_bytes
            self._arm_body_timer()

        def on_body(self, body: bytes) -> None:
            self._body_bytes += len(body)
            super().on_body(body)

        def on_message_complete(self) -> None:
            if self._body_timer is not None:
                self._body_timer.cancel()
                self._body_timer = None
            super().on_message_complete()

        def _cancel_timers(self) -> None:
            for timer in (self._header_timer, self._body_timer):
                if timer is not None:
                    timer.cancel()
            self._header_timer = self._body_timer = None

    return GuardedHttpToolsProtocol
