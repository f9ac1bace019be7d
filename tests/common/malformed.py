"""Raw requests that aiohttp's parser refuses itself, with the status each must get (SPEC 4)."""

from __future__ import annotations

import json

# (name, bytes sent on a fresh connection, status, bytes of the request the reply must not echo)
MALFORMED: list[tuple[str, bytes, int, bytes]] = [
    ("garbage request line", b"GARBAGE\r\n\r\n", 400, b"GARBAGE"),
    ("invalid method", b"G@T / HTTP/1.1\r\nHost: x\r\n\r\n", 400, b"G@T"),
    ("unknown HTTP version", b"GET /zz HTTP/9.9\r\nHost: x\r\n\r\n", 400, b"/zz"),
    ("TLS on the plain port", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400, b"\x16\x03"),
    ("no Host header", b"GET /healthz HTTP/1.1\r\n\r\n", 400, b"/healthz"),
    ("oversized URL", b"GET /" + b"u" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, b"uuuu"),
    (
        "oversized header",
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"h" * 9000 + b"\r\n\r\n",
        431,
        b"hhhh",
    ),
    (
        "too many headers",
        b"GET / HTTP/1.1\r\nHost: x\r\n"
        + b"".join(b"X-H%d: v\r\n" % i for i in range(200))
        + b"\r\n",
        431,
        b"X-H1",
    ),
    (
        "bad header name",
        b"GET / HTTP/1.1\r\nHost: x\r\nBad{Name: v\r\n\r\n",
        400,
        b"Bad{Name",
    ),
    (
        "bad chunk size",
        b"POST /v1/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"ZZ\r\nabc\r\n0\r\n\r\n",
        400,
        b"ZZ",
    ),
    (
        "two Content-Lengths",
        b"POST /v1/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
        400,
        b"Content-Length: 3",
    ),
]


def parse_reply(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (lower-case names) and body of one HTTP/1.x reply read to EOF."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", len(body)))
    return status, headers, body[:length]


def assert_json_refusal(raw: bytes, status: int, echoed: bytes) -> str:
    """The reply is SPEC section 4's JSON error with `status`, not echoing the request."""
    got, headers, body = parse_reply(raw)
    assert got == status, raw[:300]
    assert headers["content-type"].startswith("application/json"), headers
    error = json.loads(body)["error"]
    assert isinstance(error, str) and error
    assert echoed not in body, body
    return error
