"""The collector's HTTP routes (shared/COLLECTOR.md): HTTP in, ``Collector.accept`` out.

=============================================  ============================================
route                                          body
=============================================  ============================================
``POST /v1/batch``, ``/v1/b``, ``/v1/import``  Segment / RudderStack batch
``POST /v1/{identify,track,page,screen,…}``    one message of that type (also ``/v1/t`` …)
``POST /v1/consent``                           a consent message (userId or anonymousId,
                                               ``consent``: ``{channel: status}`` …)
``POST /batch/``, ``/batch``, ``/capture/``,   PostHog batch, list or single event
``/capture``, ``/e/``, ``/e``, ``/i/v0/e/``
``OPTIONS`` on each                            CORS preflight
=============================================  ============================================

Success is exactly ``200 {"success": true}``, sent once the batch is durable.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from journeymap.collect.errors import CollectorError, RequestRejectedError
from journeymap.collect.wire import (
    SEGMENT_TYPES,
    basic_write_key,
    decode_body,
    parse_json,
    posthog_envelope,
    segment_envelope,
    too_large,
)
from journeymap.server.app import collector_error_response, error_response

if TYPE_CHECKING:
    from fastapi import FastAPI

    from journeymap.server.app import ServerState

OK_BODY: Final = b'{"success": true}'
_ALLOW_HEADERS: Final = "Authorization, Content-Type, Content-Encoding, X-Retry-Count"
POSTHOG_PATHS: Final = ("/batch/", "/batch", "/capture/", "/capture", "/e/", "/e", "/i/v0/e/")


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refused (400) as soon as it passes ``limit`` bytes."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise too_large(limit)
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_large(limit)
            chunks.append(chunk)
    except ClientDisconnect:
        raise RequestRejectedError("client_disconnected", "the client went away") from None
    return b"".join(chunks)


def _cors_headers(state: ServerState, request: Request) -> dict[str, str]:
    origin = state.allowed_origin(request.headers.get("origin"))
    if origin is None:
        return {}
    return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}


def _endpoint(
    state: ServerState, protocol: str, route_type: str | None
) -> Callable[[Request], Awaitable[Response]]:
    collector = state.collector
    limit = collector.config.max_request_bytes

    async def collect(request: Request) -> Response:
        cors = _cors_headers(state, request)
        try:
            headers = request.headers
            header_key = basic_write_key(headers.get("authorization"))
            source = collector.authenticate(header_key) if header_key else None
            body = await read_body(request, limit)
            encoding = headers.get("content-encoding")
            if encoding is None and request.query_params.get("compression") == "gzip-js":
                encoding = "gzip"  # posthog-js says it in the query string
            doc = parse_json(decode_body(body, encoding, limit))
            if protocol == "posthog":
                envelope = posthog_envelope(doc)
            else:
                envelope = segment_envelope(doc, route_type)
            if source is None:
                source = collector.authenticate(envelope.write_key)
            await collector.accept(source, envelope)
        except CollectorError as exc:
            return collector_error_response(exc, cors)
        return Response(OK_BODY, 200, cors, media_type="application/json")

    return collect


def _preflight(state: ServerState) -> Callable[[Request], Awaitable[Response]]:
    async def preflight(request: Request) -> Response:
        cors = _cors_headers(state, request)
        if not cors:
            return error_response(
                403,
                "origin_not_allowed",
                "this origin may not send events; add it to the cors_origins setting",
                {"origin": request.headers.get("origin")},
            )
        cors.update(
            {
                "Access-Control-Allow-Methods": "POST, OPTIONS",
                "Access-Control-Allow-Headers": _ALLOW_HEADERS,
                "Access-Control-Max-Age": "86400",
            }
        )
        return Response(status_code=204, headers=cors)

    return preflight


def add_collector_routes(app: FastAPI, state: ServerState) -> None:
    routes: list[tuple[str, str, str | None]] = [
        ("/v1/batch", "segment", None),
        ("/v1/b", "segment", None),
        ("/v1/import", "segment", None),
        ("/v1/consent", "segment", "consent"),
    ]
    routes += [(f"/v1/{name}", "segment", kind) for name, kind in SEGMENT_TYPES.items()]
    routes += [(path, "posthog", None) for path in POSTHOG_PATHS]
    preflight = _preflight(state)
    for path, protocol, kind in routes:
        app.add_route(path, _endpoint(state, protocol, kind), methods=["POST"])
        app.add_route(path, preflight, methods=["OPTIONS"])
