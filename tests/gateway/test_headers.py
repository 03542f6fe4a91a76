"""Which headers cross the gateway, unit by unit."""

from services.gateway.proxy.forwarding import end_to_end_headers, upstream_request_headers


def test_hop_by_hop_headers_and_those_named_in_connection_are_dropped() -> None:
    headers = [
        (b"Connection", b"keep-alive, X-Secret-Hop"),
        (b"Keep-Alive", b"timeout=5"),
        (b"Transfer-Encoding", b"chunked"),
        (b"TE", b"trailers"),
        (b"Upgrade", b"websocket"),
        (b"Proxy-Authorization", b"Basic abc"),
        (b"X-Secret-Hop", b"1"),
        (b"Content-Type", b"video/mp4"),
        (b"Authorization", b"Bearer t"),
    ]
    assert end_to_end_headers(headers) == [
        (b"content-type", b"video/mp4"),
        (b"authorization", b"Bearer t"),
    ]


def test_upstream_headers_carry_request_id_and_forwarding_chain() -> None:
    scope = {
        "headers": [
            (b"host", b"emogo.example"),
            (b"x-forwarded-for", b"203.0.113.9"),
            (b"x-request-id", b"client-sent"),
            (b"content-length", b"12"),
        ],
        "client": ("198.51.100.7", 5555),
        "scheme": "https",
    }
    headers = upstream_request_headers(scope, "rid-1")
    assert headers.getall("x-request-id") == ["rid-1"]
    assert headers.getall("x-forwarded-for") == ["203.0.113.9, 198.51.100.7"]
    assert headers.getall("x-forwarded-proto") == ["https"]
    assert headers.getall("x-forwarded-host") == ["emogo.example"]
    assert headers["content-length"] == "12"
    assert "host" not in headers
