"""Bearer API keys, required on every route the app serves except the open ones.

Applied once, as an app-wide dependency, so a router added later is covered
without doing anything. /docs and /openapi.json are served outside the routes and
stay open for reading; /healthz stays open for load balancers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import HTTPException, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from pageperfect.services.apikeys import KeyStatus, check_key
from pageperfect.settings import Settings

OPEN_PATHS = frozenset({"/healthz"})
# A route whose path holds {api_key} takes the key from there: the Temporal Web UI's
# codec client cannot send headers of its own.
PATH_KEY_PARAM = "api_key"

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="APIKey",
    description="An API key from PAGEPERFECT_API_KEYS or `pageperfect keys create`",
)


def require_api_key(settings: Settings) -> Callable[..., Awaitable[None]]:
    env_keys = settings.env_api_keys

    async def api_key(request: Request, credentials: HTTPAuthorizationCredentials | None = Security(bearer)) -> None:
        route = request.scope.get("route")
        if getattr(route, "path", None) in OPEN_PATHS:
            return
        presented = request.path_params.get(PATH_KEY_PARAM) or (credentials.credentials if credentials else None)
        if not presented:
            raise HTTPException(
                401,
                "an API key is required: send the header 'Authorization: Bearer <key>' "
                "(a key from PAGEPERFECT_API_KEYS or `pageperfect keys create`)",
                headers={"WWW-Authenticate": 'Bearer realm="pageperfect"'},
            )
        status = await check_key(request.app.state.pool, presented, env_keys)
        if status is KeyStatus.UNKNOWN:
            raise HTTPException(
                401,
                "unknown API key: check the key, or make one with `pageperfect keys create`",
                headers={"WWW-Authenticate": 'Bearer realm="pageperfect", error="invalid_token"'},
            )
        if status is KeyStatus.REVOKED:
            raise HTTPException(
                403, "this API key has been revoked; use another one (`pageperfect keys create` makes a new one)"
            )

    return api_key
