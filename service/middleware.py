"""ASGI middleware: request body limits (413), text UTF-8 cannot encode (422), a 500 that keeps
the connection, and one JSON access-log line per request."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from typing import Any

from python_multipart.multipart import parse_options_header
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import ApiError, error_body, invalid, respond

log = logging.getLogger("tagdistill.access")
errors_log = logging.getLogger("tagdistill.api")


class _Http:
    """ASGI middleware for HTTP requests (``handle``); anything else (lifespan) passes through."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.handle(scope, receive, send)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        raise NotImplementedError


class BodyLimit(_Http):
    """413 for a body over ``limit(path)`` bytes: at once from Content-Length, else while it arrives."""

    def __init__(self, app: ASGIApp, limit: Callable[[str], int]) -> None:
        super().__init__(app)
        self.limit = limit

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self.limit(scope["path"])
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._reject(send, limit)
            return
        received, started, rejected = 0, False, False

        async def counting_receive() -> Message:
            nonlocal received, rejected
            if rejected:
                return {"type": "http.disconnect"}
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:
                # Answer 413 now and tell the app the client left, so it stops reading.
                rejected = True
                if not started:
                    await self._reject(send, limit)
                return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if rejected:
                return  # the 413 went out already
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            if not rejected:
                raise

    @staticmethod
    async def _reject(send: Send, limit: int) -> None:
        msg = f"request body over the limit of {limit} bytes"
        body = json.dumps(error_body(413, "body_too_large", msg)).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class AccessLog(_Http):
    """One JSON log line per request; an unhandled error becomes a JSON 500 that keeps the connection.

    Starlette's own 500 re-raises the exception to the server, and uvicorn then closes the
    connection: a client's next request on it was reset. Added outermost, so it sees every error.
    """

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        started, status = time.perf_counter(), None

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        except Exception:
            if status is not None:
                raise  # half a response is out: only closing the connection ends it
            errors_log.exception("unhandled error", extra={"path": scope["path"]})
            msg = "internal error; it is logged on the server"
            await respond(ApiError(500, "internal_error", msg))(scope, receive, send_status)
        finally:
            log.info(
                "request",
                extra={
                    "method": scope["method"], "path": scope["path"], "status": status or 500,
                    "ms": round((time.perf_counter() - started) * 1000, 1),
                },
            )


# Where a JSON body can hold a surrogate: a \ud800-\udfff escape, or its bytes (json.loads of bytes
# lets them through). Bodies without one, nearly all, are not parsed a second time.
_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]")


class Utf8Input(_Http):
    """422 naming the field when a request would bring in text that UTF-8 cannot encode.

    Such text (a lone surrogate) fails wherever it is encoded later (Redis, logs, responses) as a
    500; checked here once for every route. Python's json turns an escape like "\\ud800" into one
    without complaint: JSON bodies (those FastAPI parses: application/json and application/*+json) are
    checked. Starlette decodes form fields and file names with the multipart charset, and utf-7
    or unicode_escape make one: only UTF-8 is taken. Query strings, paths and url-encoded forms
    are decoded with replacement and cannot hold one.
    """

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        ctype, params = parse_options_header(dict(scope["headers"]).get(b"content-type", b""))
        charset = params.get(b"charset", b"utf-8").lower()
        major, _, minor = ctype.partition(b"/")
        is_json = major == b"application" and (minor == b"json" or minor.endswith(b"+json"))
        if ctype == b"multipart/form-data" and charset not in (b"utf-8", b"utf8"):
            msg = "multipart bodies are read as UTF-8: give no charset, or charset=utf-8"
            await _reject(scope, receive, send, ["header", "content-type"], msg, "charset_unsupported")
            return
        if not is_json:
            await self.app(scope, receive, send)
            return
        messages = [await receive()]
        while messages[-1]["type"] == "http.request" and messages[-1].get("more_body", False):
            messages.append(await receive())
        body = b"".join(m.get("body", b"") for m in messages)
        loc = _unencodable(body) if _SURROGATE.search(body) else None
        if loc is not None:
            msg = "not Unicode text: a lone surrogate (such as \\ud800) that UTF-8 cannot encode"
            await _reject(scope, receive, send, ["body", *loc], msg, "text_not_unicode")
            return
        replay = iter(messages)

        async def replaying_receive() -> Message:
            return next(replay, None) or await receive()

        await self.app(scope, replaying_receive, send)


async def _reject(
    scope: Scope, receive: Receive, send: Send, loc: list[str | int], msg: str, code: str
) -> None:
    """A 422 like the routes' own."""
    await respond(invalid(loc, msg, code))(scope, receive, send)


def _unencodable(body: bytes) -> list[str | int] | None:
    """The path of the first string (or key) in JSON ``body`` that UTF-8 cannot encode, if any.

    Iterative, as the document may be nested as deep as json allows. A body that is not JSON
    is the app's to report.
    """
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        return None
    stack: list[tuple[list[str | int], Any]] = [([], doc)]
    while stack:
        loc, value = stack.pop()
        if isinstance(value, str) and not _encodes(value):
            return loc
        if isinstance(value, dict):
            if not all(_encodes(key) for key in value):
                return loc  # the key itself cannot be shown in the answer
            stack.extend(([*loc, key], item) for key, item in reversed(value.items()))
        elif isinstance(value, list):
            stack.extend(([*loc, i], item) for i, item in reversed(list(enumerate(value))))
    return None


def _encodes(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True
