"""The admin API: everything that is not collection, behind ``Authorization: Bearer <token>``.

The token is the content of the ``admin_token_file`` setting (``journeymap serve`` creates it);
without one the admin API answers 403. Routes add parsing and formatting only.
"""

from __future__ import annotations

import dataclasses
import hmac
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from journeymap.collect.errors import CollectorError, UnknownWriteKeyError
from journeymap.errors import ConfigError
from journeymap.storage.profiles import ConsentChange, parse_consent

if TYPE_CHECKING:
    from journeymap.server.app import ServerState


class AdminForbiddenError(CollectorError):
    status = 403


class NotFoundError(CollectorError):
    status = 404


class SourceIn(BaseModel):
    name: str
    rate_limit: int | None = Field(default=None, gt=0)


class ConsentIn(BaseModel):
    """``{"email": true}``, ``{"email": {"newsletter": "granted"}}`` or a list of
    ``{"channel", "topic", "status"}``."""

    consent: dict[str, Any] | list[dict[str, Any]]
    source: str = "admin"


def _plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {k: _plain(v) for k, v in dataclasses.asdict(obj).items()}
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    if hasattr(obj, "isoformat"):
        return obj.isoformat()
    return obj


def admin_router(state: ServerState) -> APIRouter:
    def require_admin(request: Request) -> None:
        token = state.admin_token
        if token is None:
            raise AdminForbiddenError(
                "admin_disabled",
                "the admin API is off: no token in the admin_token_file setting's file "
                "(`journeymap serve` creates one)",
            )
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip(), token):
            raise UnknownWriteKeyError(
                "invalid_admin_token",
                "send the admin token as Authorization: Bearer <token>",
            )

    router = APIRouter(prefix="/admin", dependencies=[Depends(require_admin)])

    @router.get("/status")
    async def status() -> dict[str, Any]:
        inbox = await run_in_threadpool(state.collector.inbox.stats)
        thread = state.loader_thread
        return {
            "inbox": _plain(inbox),
            "writer": _plain(state.db.stats),
            "loader": {
                "running": thread is not None,
                "rounds": thread.rounds if thread else 0,
                "last_error": thread.last_error if thread else None,
            },
            "lake_version": await run_in_threadpool(state.store.version),
            "database": repr(state.db),
        }

    @router.get("/sources")
    async def list_sources() -> list[dict[str, Any]]:
        return [_plain(s) for s in await run_in_threadpool(state.collector.registry.list)]

    @router.post("/sources", status_code=201)
    async def add_source(body: SourceIn) -> dict[str, Any]:
        try:
            src, key = await run_in_threadpool(
                lambda: state.collector.registry.add(body.name, rate_limit=body.rate_limit)
            )
        except ConfigError as exc:
            raise CollectorError("invalid_source", str(exc)) from None
        return {**_plain(src), "write_key": key}

    @router.post("/sources/{name}/rotate")
    async def rotate_source(name: str) -> dict[str, Any]:
        try:
            key = await run_in_threadpool(state.collector.registry.rotate, name)
        except ConfigError as exc:
            raise NotFoundError("unknown_source", str(exc)) from None
        return {"name": name, "write_key": key}

    @router.delete("/sources/{name}")
    async def remove_source(name: str) -> dict[str, Any]:
        try:
            await run_in_threadpool(state.collector.registry.remove, name)
        except ConfigError as exc:
            raise NotFoundError("unknown_source", str(exc)) from None
        return {"removed": name}

    @router.get("/dead-letters")
    async def dead_letters(limit: int = 100, source: str | None = None) -> list[dict[str, Any]]:
        rows = await run_in_threadpool(state.collector.inbox.dead_letters, limit, source)
        return [_plain(r) for r in rows]

    @router.post("/load")
    async def load() -> dict[str, Any]:
        results = await run_in_threadpool(state.loader.load_all)
        return {"rounds": _plain(results)}

    @router.get("/customers/{customer_id}")
    async def customer(customer_id: str) -> dict[str, Any]:
        profiles = state.loader.profiles
        profile = await run_in_threadpool(profiles.find, customer_id)
        if profile is None:
            raise NotFoundError("unknown_customer", f"no profile for {customer_id!r}")
        consent = await run_in_threadpool(profiles.consents, profile.profile_id)
        return {"profile": _plain(profile), "consent": _plain(consent)}

    @router.put("/customers/{customer_id}/consent")
    async def set_consent(customer_id: str, body: ConsentIn) -> dict[str, Any]:
        try:
            changes: list[ConsentChange] = parse_consent(body.consent)
        except ValueError as exc:
            raise CollectorError("invalid_consent", str(exc)) from None
        try:
            profile = await run_in_threadpool(
                lambda: state.loader.profiles.set_consent(customer_id, changes, source=body.source)
            )
        except ConfigError as exc:
            raise NotFoundError("unknown_customer", str(exc)) from None
        consent = await run_in_threadpool(state.loader.profiles.consents, profile.profile_id)
        return {"profile": _plain(profile), "consent": _plain(consent)}

    @router.get("/customers/{customer_id}/export")
    async def export(customer_id: str) -> dict[str, Any]:
        from journeymap.gdpr import export_customer

        return await run_in_threadpool(export_customer, state.db, state.store, customer_id)

    @router.delete("/customers/{customer_id}")
    async def erase(customer_id: str) -> dict[str, Any]:
        from journeymap.gdpr import delete_customer

        receipt = await run_in_threadpool(
            lambda: delete_customer(
                state.db, state.store, customer_id, cache_dirs=(state.settings.cache_dir,)
            )
        )
        return receipt.to_dict()

    return router
