"""The Temporal codec server protocol, so the Web UI and the `temporal` CLI can read encrypted payloads.

POST .../encode and .../decode take and give {"payloads": [...]}, each payload in protobuf
JSON (base64 metadata values and data). The API key comes in the Authorization header
(`temporal --codec-endpoint http://HOST/codec --codec-auth "Bearer KEY"`) or, for the Web
UI, which sends no headers of its own, in the endpoint path: http://HOST/codec/key/KEY.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from google.protobuf import json_format
from starlette.middleware.cors import CORSMiddleware
from temporalio.api.common.v1 import Payloads

from pageperfect.runtime.codec import EncryptionCodec, PayloadKeyError
from pageperfect.settings import Settings

OPERATIONS = ("encode", "decode")
# Payloads in protobuf JSON: metadata values and data are base64.
PAYLOADS = {
    "type": "object",
    "required": ["payloads"],
    "properties": {
        "payloads": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "metadata": {"type": "object", "additionalProperties": {"type": "string", "format": "byte"}},
                    "data": {"type": "string", "format": "byte"},
                },
            },
        }
    },
}


def codec_router(codec: EncryptionCodec | None) -> APIRouter:
    router = APIRouter(tags=["codec"])

    async def convert(operation: str, request: Request) -> Response:
        if operation not in OPERATIONS:
            raise HTTPException(404, f"the codec answers /encode and /decode, not /{operation}")
        try:
            payloads = json_format.Parse(await request.body(), Payloads(), ignore_unknown_fields=True)
        except (json_format.ParseError, ValueError, TypeError) as err:
            raise HTTPException(400, f'expected {{"payloads": [...]}} in protobuf JSON: {err}') from None
        if codec is None:
            # Encryption is off: nothing was encrypted, so payloads pass through unchanged.
            converted = list(payloads.payloads)
        else:
            try:
                convert_with = codec.encode if operation == "encode" else codec.decode
                converted = await convert_with(payloads.payloads)
            except PayloadKeyError as err:
                raise HTTPException(400, str(err)) from None
        body = {"payloads": json_format.MessageToDict(Payloads(payloads=converted)).get("payloads", [])}
        return JSONResponse(body)

    @router.post(
        "/codec/{operation}",
        summary="Temporal codec server: encode or decode payloads",
        openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": PAYLOADS}}}},
        responses={
            200: {
                "description": "The payloads, encoded or decoded",
                "content": {"application/json": {"schema": PAYLOADS}},
            }
        },
    )
    async def with_header_key(operation: str, request: Request) -> Response:
        return await convert(operation, request)

    @router.post("/codec/key/{api_key}/{operation}", include_in_schema=False)
    async def with_path_key(api_key: str, operation: str, request: Request) -> Response:
        return await convert(operation, request)  # the key was checked by the app's API-key dependency

    return router


def codec_origins(settings: Settings) -> list[str]:
    configured = [o.strip().rstrip("/") for o in settings.codec_cors_origins.split(",") if o.strip()]
    return configured or [f"http://localhost:{settings.ui_port}", f"http://127.0.0.1:{settings.ui_port}"]


class CodecCORS:
    """CORS for the codec paths only: the Web UI calls them from its own origin."""

    def __init__(self, app, origins: list[str]) -> None:
        self.app = app
        self.cors = CORSMiddleware(
            app,
            allow_origins=origins,
            allow_methods=["POST"],
            allow_headers=["Content-Type", "Authorization", "X-Namespace"],
            allow_credentials=True,
        )

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/codec/"):
            await self.cors(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def install_codec(app, settings: Settings) -> None:
    """The codec routes and their CORS, on the API app."""
    from pageperfect.runtime.codec import codec_from_settings

    app.add_middleware(CodecCORS, origins=codec_origins(settings))
    app.include_router(codec_router(codec_from_settings(settings)))
