"""API keys: who is calling, and what they may see.

With no key set (``TAGDISTILL_API_KEYS`` and ``TAGDISTILL_ADMIN_KEYS`` empty) the service is
open: every caller sees every record, as an admin would. With any key set, every route except
``PUBLIC`` needs ``Authorization: Bearer <key>``. The key is compared in constant time with
every configured key (``hmac.compare_digest``, no early exit), so the answer's timing does not
tell how much of a key was right. A key names its owner; records carry their owner, and a
key sees only its owner's datasets, jobs and models (another owner's record is a 404, like
a missing one). An admin key sees them all.
"""

from __future__ import annotations

import hmac
import json
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.types import ASGIApp, Receive, Scope, Send

from service.errors import error_body

# Reachable without a key: liveness, the API docs, and the dashboard's page and static files
# (the dashboard asks for the key and sends it with each API call).
PUBLIC_PATHS = frozenset({"/health", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json", "/"})
PUBLIC_PREFIXES = ("/ui/",)


@dataclass(frozen=True)
class Caller:
    owner: str | None  # the key's owner; None when the service is open
    admin: bool  # sees every owner's records

    @property
    def only(self) -> str | None:
        """The owner whose records this caller may see; None for all of them."""
        return None if self.admin else self.owner


OPEN = Caller(owner=None, admin=True)


def is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path == "/ui" or path.startswith(PUBLIC_PREFIXES)


def match_key(presented: str, keys: dict[str, tuple[str, bool]]) -> Caller | None:
    """The caller whose key is ``presented``, or None. Compares with every key, in constant time."""
    given = presented.encode()
    found: Caller | None = None
    for key, (owner, admin) in keys.items():
        if hmac.compare_digest(given, key.encode()):
            found = Caller(owner=owner, admin=admin)
    return found


class ApiKeys:
    """ASGI middleware: 401 unless a route is public or the request carries a known key.

    The caller goes to ``scope["state"]["caller"]``, where ``get_caller`` finds it.
    """

    def __init__(self, app: ASGIApp, keys: dict[str, tuple[str, bool]]) -> None:
        self.app, self.keys = app, keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        caller: Caller | None = OPEN
        if self.keys:
            caller = None
            header = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
            scheme, _, token = header.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                caller = match_key(token.strip(), self.keys)
            if caller is None and not is_public(scope["path"]):
                if not header:
                    msg = "this service needs an API key: send 'Authorization: Bearer <key>'"
                    await _unauthorized(send, "api_key_missing", msg)
                elif scheme.lower() != "bearer" or not token.strip():
                    msg = "the Authorization header must be 'Bearer <key>'"
                    await _unauthorized(send, "authorization_invalid", msg)
                else:
                    await _unauthorized(
                        send, "api_key_invalid", "the API key is not valid", 'Bearer error="invalid_token"'
                    )
                return
        scope.setdefault("state", {})["caller"] = caller
        await self.app(scope, receive, send)


async def _unauthorized(send: Send, code: str, message: str, challenge: str = "Bearer") -> None:
    body = json.dumps(error_body(401, code, message, "header.Authorization")).encode()
    headers = [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"www-authenticate", challenge.encode()),
    ]
    await send({"type": "http.response.start", "status": 401, "headers": headers})
    await send({"type": "http.response.body", "body": body})


# Declares the Bearer scheme in the OpenAPI document (the docs' "Authorize" button); the check
# itself is the middleware's, so no route can be left out by mistake.
_bearer = HTTPBearer(auto_error=False, description="an API key, when the service has any")


def get_caller(
    request: Request, _: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)] = None
) -> Caller:
    # Without a public caller (a public path with no valid key) the caller sees nothing of anyone's.
    return getattr(request.state, "caller", None) or Caller(owner="", admin=False)


CallerDep = Annotated[Caller, Depends(get_caller)]
