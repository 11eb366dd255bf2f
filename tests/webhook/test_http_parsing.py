"""The request-head parser of the event loop: its CRLF fast path and its line-by-line path
agree on every head, and both take LF line ends, incomplete heads and the limits."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from kube_lxcfs.webhook.https import MAX_HEADERS, _parse_head_by_line, _Reject, parse_head

API_SERVER_HEAD = (
    b"POST /mutate?timeout=10s HTTP/1.1\r\nHost: kube-lxcfs-webhook.kube-lxcfs.svc:443\r\n"
    b"Content-Type: application/json\r\nAccept: application/json, */*\r\n"
    b"User-Agent: kube-apiserver-admission\r\nContent-Length: 1770\r\n\r\n"
)


def outcome(parse, buf: bytes) -> object:  # type: ignore[no-untyped-def]
    try:
        return parse(buf)
    except _Reject as exc:
        return exc.code


def test_the_api_servers_head() -> None:
    head = parse_head(API_SERVER_HEAD + b"{}")
    assert head is not None
    assert (head.method, head.target, head.version) == ("POST", "/mutate?timeout=10s", "HTTP/1.1")
    assert head.headers["content-length"] == "1770"
    assert head.headers["user-agent"] == "kube-apiserver-admission"
    assert head.size == len(API_SERVER_HEAD)


def test_lf_line_ends_and_incomplete_heads() -> None:
    head = parse_head(b"POST /mutate HTTP/1.1\nContent-Length: 2\n\n{}")
    assert head is not None and head.headers == {"content-length": "2"}
    assert parse_head(b"POST /mutate HTTP/1.1\r\nContent-Length: 2\r\n") is None
    assert parse_head(b"POST /mut") is None


def test_limits() -> None:
    many = b"".join(b"X-%d: y\r\n" % i for i in range(MAX_HEADERS))
    assert outcome(parse_head, b"POST / HTTP/1.1\r\n" + many + b"\r\n") == 431
    fewer = b"".join(b"X-%d: y\r\n" % i for i in range(MAX_HEADERS - 1))
    assert parse_head(b"POST / HTTP/1.1\r\n" + fewer + b"\r\n") is not None
    assert outcome(parse_head, b"POST / HTTP/2.0\r\n\r\n") == 505
    assert outcome(parse_head, b"POST /\r\n\r\n") == 400
    assert outcome(parse_head, b"POST / HTTP/1.1\r\nnocolon\r\n\r\n") == 400


PIECES = [
    b"POST",
    b"GET",
    b" ",
    b"\t",
    b"/mutate",
    b"HTTP/1.1",
    b"HTTP/1.0",
    b"HTTP/2",
    b"\r\n",
    b"\n",
    b"\r",
    b":",
    b"Content-Length",
    b"12",
    b"\x00",
    b"\xff",
    b"x",
]


@settings(max_examples=2000, deadline=None)
@given(
    st.lists(st.sampled_from(PIECES), max_size=40).map(b"".join),
    st.sampled_from([b"", b"\r\n", b"\r\n\r\n", b"\n\n", b"\r\n\r\n{}"]),
)
def test_fast_path_and_line_by_line_agree(raw: bytes, end: bytes) -> None:
    buf = bytearray(raw + end)
    assert outcome(parse_head, buf) == outcome(_parse_head_by_line, buf)
