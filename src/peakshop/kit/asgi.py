"""Helpers of the thin ASGI handlers (coupon validation, flash-sale admission): the two
hottest endpoints skip the framework's per-request machinery and decode, check and encode
with msgspec directly (measured in benchmarks/; their OpenAPI entries are written by hand).
"""

from __future__ import annotations

import re
from typing import TypeVar

import msgspec
from litestar.types import HTTPResponseBodyEvent, HTTPResponseStartEvent, Receive, Scope, Send

from peakshop.errors import InvalidInput, PeakshopError, RateLimited

T = TypeVar("T")
MAX_BODY_BYTES = 16 * 1024
_FIELD_RE = re.compile(r"`\$\.([A-Za-z_]+)|field `([A-Za-z_]+)`")
_JSON_HEADERS = [(b"content-type", b"application/json")]
# The framework's own handler maps these codes to their statuses; here it is done by hand.
_STATUS_OF_CODE = {"method_not_allowed": 405, "payload_too_large": 413}
_encoder = msgspec.json.Encoder()


def decode_error_field(exc: msgspec.MsgspecError) -> str | None:
    return decode_error_field_text(str(exc))


def decode_error_field_text(message: str) -> str | None:
    """The field named in a msgspec error message ("... - at `$.order_total`")."""
    match = _FIELD_RE.search(message)
    return (match.group(1) or match.group(2)) if match else None


def decode(decoder: msgspec.json.Decoder[T], body: bytes) -> T:
    """Decode and validate a body; bad input becomes an InvalidInput naming the field."""
    try:
        return decoder.decode(body)
    except msgspec.MsgspecError as exc:
        raise InvalidInput(str(exc), field=decode_error_field(exc)) from exc
    except UnicodeDecodeError as exc:  # invalid UTF-8 inside a JSON string
        raise InvalidInput("the request body is not valid UTF-8") from exc


async def send_json(
    send: Send, status: int, body: bytes, headers: tuple[tuple[bytes, bytes], ...] = ()
) -> None:
    start: HTTPResponseStartEvent = {
        "type": "http.response.start",
        "status": status,
        "headers": [*_JSON_HEADERS, (b"content-length", str(len(body)).encode()), *headers],
    }
    await send(start)
    end: HTTPResponseBodyEvent = {"type": "http.response.body", "body": body, "more_body": False}
    await send(end)


async def send_error(send: Send, exc: PeakshopError) -> None:
    """The same JSON error (and Retry-After) the application's error handler gives."""
    status = _STATUS_OF_CODE.get(exc.code, exc.status_code)
    headers = (
        ((b"retry-after", str(exc.retry_after).encode()),) if isinstance(exc, RateLimited) else ()
    )
    await send_json(send, status, _encoder.encode(exc.to_body()), headers)


async def read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise InvalidInput("client disconnected")
        chunk = message["body"]
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise PeakshopError(
                f"request body over {MAX_BODY_BYTES} bytes", code="payload_too_large"
            )
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def header(scope: Scope, name: bytes) -> bytes | None:
    """A request header by its lower-case name (ASGI gives them lower-cased)."""
    for key, value in scope["headers"]:
        if key == name:
            return value
    return None


def authorization(scope: Scope) -> bytes | None:
    return header(scope, b"authorization")


def client_ip(scope: Scope) -> str | None:
    client = scope.get("client")
    return client[0] if client else None
