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
  gateway, which faces the clients): more are answered 429 and closed;
- a lingering close (as nginx's `lingering_close`): when an answer that closes the
  connection is sent before the request's body has all arrived (a refusal: 401, 403,
  413, 415), the answer is sent and the sending side shut, then the rest of the body
  is read and dropped, up to `linger_bytes` or `linger_seconds`, before closing.
  Closing at once would leave unread bytes that make the kernel reset the connection,
  and clients that send their whole body before reading (Python's urllib) would see
  "connection reset" instead of the answer.

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

from services.common.web.errors import error_body

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
    linger_bytes: int = 64 * 1024 * 1024
    linger_seconds: float = 10.0


class LingeringTransport:
    """The connection's transport as uvicorn sees it: `close()` lingers while the
    request's body is still arriving (see the module)."""

    def __init__(self, transport: asyncio.Transport, protocol: Any) -> None:
        self._transport = transport
        self._protocol = protocol

    def close(self) -> None:
        protocol = self._protocol
        if protocol.body_pending and not protocol.lingering and not self._transport.is_closing():
            protocol.linger()
        else:
            self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


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
            # Whether the current request's body is still arriving, and the lingering
            # close under way (bytes dropped so far, its timer).
            self.body_pending = False
            self.lingering = False
            self._dropped = 0
            self._linger_timer: asyncio.TimerHandle | None = None

        # --- connection ------------------------------------------------------------

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]  # uvicorn's protocol, given a transport that lingers
            super().connection_made(LingeringTransport(transport, self))  # type: ignore[arg-type]  # a transport that lingers, standing in for asyncio's
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
            if self._linger_timer is not None:
                self._linger_timer.cancel()
                self._linger_timer = None
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
            if self.lingering:
                self._dropped += len(data)
                if self._dropped > limits.linger_bytes:
                    self.transport._transport.close()  # type: ignore[attr-defined]  # uvicorn keeps the wrapped transport here
                return
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

        def linger(self) -> None:
            """Sends what is written and shuts the sending side; reads and drops the rest
            of the body until the client closes, or the bounds are reached."""
            real = self.transport._transport  # type: ignore[attr-defined]  # uvicorn keeps the wrapped transport here
            self.lingering = True
            self._cancel_timers()
            if real.can_write_eof():
                real.write_eof()
            self._linger_timer = self.loop.call_later(limits.linger_seconds, real.close)

        def eof_received(self) -> None:
            if self.lingering:
                self.transport._transport.close()  # type: ignore[attr-defined]  # uvicorn keeps the wrapped transport here
                return
            super().eof_received()

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
            self.body_pending = True
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
            self.body_pending = False
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
