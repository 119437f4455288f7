"""The campaign endpoints: tracked links and opens, unsubscribe, double opt-in, the preference
page, and Web Push subscriptions.

==================================  ==========================================================
route                               what it does
==================================  ==========================================================
``GET /t/o/{send_id}.gif?s=``       1×1 transparent GIF, always (no-store); records an open
                                    only for a valid signature
``GET /t/c/{send_id}?u=&s=``        302 to ``u`` when signed for this send (records a click);
                                    a bad signature gets a 400 page, never a redirect
``GET /u/{send_id}?s=``             a confirmation page with a button; does **not** unsubscribe
``POST /u/{send_id}?s=``            RFC 8058 one-click (``List-Unsubscribe=One-Click``):
                                    revokes consent for the send's channel and topic; idempotent
``GET /optin/{token}``              a page with a confirm button; does **not** confirm
``POST /optin/{token}``             confirms the double opt-in
``GET|POST /prefs/{token}``         the customer's channels × topics, saved as consent
                                    (source ``preference_page``)
``GET /v1/push/key``                the VAPID ``applicationServerKey`` for ``pushManager``
``POST|DELETE /v1/push/subscribe``  store / drop a browser's ``PushSubscription`` (write key)
==================================  ==========================================================

Why GET never changes anything on the human-facing pages: mail scanners and link previewers
fetch every URL of a message; a GET that unsubscribed or confirmed would do it for the customer
without them (RFC 8058 §1 says the same; a scanner-confirmed opt-in proves nothing).

Every recorded event (opened, clicked, unsubscribed, opt-in confirmed, preferences and push
subscriptions changed) is stored through the collector's inbox (source ``journeymap``, one
deterministic message id per event) **before** the response is sent, so it is as durable as a
collected event, and the normal loader moves it into the lake. API routes answer with the
server's JSON error shape; pages answer with a small HTML page naming the problem.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qs, urlsplit

import jinja2
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from journeymap.channels.push import PushSubscriptionError, WebPushChannel
from journeymap.collect.errors import CollectorError, RequestRejectedError
from journeymap.collect.internal import submit_events
from journeymap.collect.wire import basic_write_key, parse_json
from journeymap.errors import ConfigError
from journeymap.orchestration.loop import TrackingError
from journeymap.orchestration.preferences import (
    PreferenceCenter,
    add_push_subscription,
    customer_event,
    find_opt_in,
    remove_push_subscriptions,
    send_info,
)
from journeymap.server.app import collector_error_response, error_response
from journeymap.server.collector_routes import read_body
from journeymap.storage.db import StoreUnavailableError

if TYPE_CHECKING:
    from fastapi import FastAPI

    from journeymap.server.app import ServerState

log = logging.getLogger(__name__)

#: The smallest transparent GIF (43 bytes).
PIXEL: Final = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)
NO_STORE: Final = {"Cache-Control": "no-store, max-age=0", "Pragma": "no-cache"}
#: Pages carry tokens in their URL: no referrer, no indexing, nothing external.
PAGE_HEADERS: Final = {
    **NO_STORE,
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex, nofollow",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "base-uri 'none'; frame-ancestors 'none'"
    ),
}
FORM_LIMIT: Final = 65_536
PUSH_BODY_LIMIT: Final = 16_384
PERMISSIONS: Final = ("granted", "denied", "default")

_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)

TEXTS: Final[dict[str, dict[str, str]]] = {
    "en": {
        "bad_link": "This link is damaged or incomplete",
        "bad_link_text": "Please use the link exactly as it came in the message. Nothing was "
        "changed.",
        "unknown_send": "This message is no longer known",
        "unknown_send_text": "The message this link belongs to was deleted. Nothing was changed.",
        "unsubscribe": "Unsubscribe",
        "unsubscribe_text": "Stop receiving {topic} messages by {channel}?",
        "unsubscribe_button": "Unsubscribe",
        "unsubscribed": "You are unsubscribed",
        "unsubscribed_text": "You will receive no more {topic} messages by {channel}.",
        "bad_one_click": "The request did not say List-Unsubscribe=One-Click",
        "bad_one_click_text": "Send the form body List-Unsubscribe=One-Click (RFC 8058). "
        "Nothing was changed.",
        "manage": "Manage all your preferences",
        "optin": "Confirm your subscription",
        "optin_text": "Please confirm that you want to receive messages by {channel}.",
        "optin_button": "Confirm",
        "optin_done": "Thank you: your subscription is confirmed",
        "optin_already": "Your subscription was confirmed already",
        "optin_unknown": "This confirmation link is unknown",
        "optin_unknown_text": "It may have been replaced by a newer one. Sign up again to get a "
        "new confirmation message.",
        "optin_expired": "This confirmation link has expired",
        "optin_expired_text": "Confirmation links are valid for 7 days. Sign up again to get a "
        "new one.",
        "prefs": "Your message preferences",
        "prefs_intro": "Choose which messages you want to receive. Unticked boxes mean no "
        "messages of that kind.",
        "prefs_caption": "Channels and topics",
        "prefs_empty": "There is nothing to choose yet.",
        "prefs_unknown": "We do not know this customer",
        "prefs_unknown_text": "The profile may have been deleted. Nothing was changed.",
        "prefs_saved": "Your preferences are saved.",
        "prefs_unchanged": "Nothing changed.",
        "prefs_bad": "The form could not be saved",
        "channel": "Channel",
        "topic": "Topic",
        "subscribed": "Subscribed",
        "save": "Save preferences",
        "all_topics": "All messages",
        "unavailable": "Please try again in a moment",
        "unavailable_text": "We could not store your request right now. Nothing is lost: "
        "send it again.",
        "too_large": "The form is too large",
    },
    "de": {
        "bad_link": "Dieser Link ist beschädigt oder unvollständig",
        "bad_link_text": "Bitte verwenden Sie den Link genau so, wie er in der Nachricht stand. "
        "Es wurde nichts geändert.",
        "unknown_send": "Diese Nachricht ist nicht mehr bekannt",
        "unknown_send_text": "Die Nachricht zu diesem Link wurde gelöscht. Es wurde nichts "
        "geändert.",
        "unsubscribe": "Abmelden",
        "unsubscribe_text": "Keine {topic}-Nachrichten per {channel} mehr erhalten?",
        "unsubscribe_button": "Abmelden",
        "unsubscribed": "Sie sind abgemeldet",
        "unsubscribed_text": "Sie erhalten keine {topic}-Nachrichten per {channel} mehr.",
        "bad_one_click": "Die Anfrage enthielt nicht List-Unsubscribe=One-Click",
        "bad_one_click_text": "Senden Sie den Formularinhalt List-Unsubscribe=One-Click "
        "(RFC 8058). Es wurde nichts geändert.",
        "manage": "Alle Einstellungen verwalten",
        "optin": "Anmeldung bestätigen",
        "optin_text": "Bitte bestätigen Sie, dass Sie Nachrichten per {channel} erhalten möchten.",
        "optin_button": "Bestätigen",
        "optin_done": "Vielen Dank: Ihre Anmeldung ist bestätigt",
        "optin_already": "Ihre Anmeldung war bereits bestätigt",
        "optin_unknown": "Dieser Bestätigungslink ist unbekannt",
        "optin_unknown_text": "Er wurde vielleicht durch einen neueren ersetzt. Melden Sie sich "
        "erneut an, um eine neue Bestätigung zu erhalten.",
        "optin_expired": "Dieser Bestätigungslink ist abgelaufen",
        "optin_expired_text": "Bestätigungslinks gelten 7 Tage. Melden Sie sich erneut an, um "
        "einen neuen zu erhalten.",
        "prefs": "Ihre Nachrichten-Einstellungen",
        "prefs_intro": "Wählen Sie, welche Nachrichten Sie erhalten möchten. Ohne Haken erhalten "
        "Sie keine Nachrichten dieser Art.",
        "prefs_caption": "Kanäle und Themen",
        "prefs_empty": "Es gibt noch nichts auszuwählen.",
        "prefs_unknown": "Dieser Kunde ist uns nicht bekannt",
        "prefs_unknown_text": "Das Profil wurde vielleicht gelöscht. Es wurde nichts geändert.",
        "prefs_saved": "Ihre Einstellungen sind gespeichert.",
        "prefs_unchanged": "Es wurde nichts geändert.",
        "prefs_bad": "Das Formular konnte nicht gespeichert werden",
        "channel": "Kanal",
        "topic": "Thema",
        "subscribed": "Abonniert",
        "save": "Einstellungen speichern",
        "all_topics": "Alle Nachrichten",
        "unavailable": "Bitte versuchen Sie es gleich noch einmal",
        "unavailable_text": "Ihre Anfrage konnte gerade nicht gespeichert werden. Es ging nichts "
        "verloren: senden Sie sie erneut.",
        "too_large": "Das Formular ist zu groß",
    },
}
CHANNEL_LABELS: Final = {
    "en": {"email": "Email", "push": "Push notifications", "sms": "SMS"},
    "de": {"email": "E-Mail", "push": "Push-Benachrichtigungen", "sms": "SMS"},
}


def language(accept_language: str | None) -> str:
    """``de`` or ``en`` (the default) from an ``Accept-Language`` header, by quality."""
    best, best_q = "en", 0.0
    for part in (accept_language or "").split(","):
        tag, _, params = part.strip().partition(";")
        lang = tag.strip().lower()[:2]
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        if lang in TEXTS and q > best_q:
            best, best_q = lang, q
    return best


class _Page:
    """Renders the pages of one request in its language."""

    def __init__(self, request: Request) -> None:
        self.lang = language(request.headers.get("accept-language"))
        self.t = TEXTS[self.lang]

    def channel(self, name: str) -> str:
        return CHANNEL_LABELS[self.lang].get(name, name)

    def topic(self, name: str) -> str:
        return self.t["all_topics"] if name == "*" else name.replace("_", " ")

    def render(
        self,
        status: int,
        title: str,
        *,
        template: str = "message.html",
        lines: Iterable[str] = (),
        **context: Any,
    ) -> HTMLResponse:
        values: dict[str, Any] = {
            "note": None,
            "error": False,
            "action": None,
            "fields": (),
            "button": None,
            "link": None,
            "link_text": None,
        }
        values.update(context)
        html = _ENV.get_template(template).render(
            lang=self.lang,
            title=title,
            lines=list(lines),
            t=self.t,
            channel_label=self.channel,
            topic_label=self.topic,
            **values,
        )
        return HTMLResponse(html, status, headers=PAGE_HEADERS)

    def problem(self, status: int, key: str) -> HTMLResponse:
        """An error page: the title ``key`` and its ``<key>_text`` explanation."""
        text = self.t.get(f"{key}_text")
        return self.render(status, self.t[key], lines=[text] if text else [], error=True)


async def record(state: ServerState, events: Iterable[Mapping[str, Any]]) -> None:
    """Store feedback events in the collector's inbox; returns once they are durable."""
    events = list(events)
    if events:
        await asyncio.wrap_future(submit_events(state.db, events))


async def _form(request: Request) -> dict[str, list[str]]:
    body = await read_body(request, FORM_LIMIT)
    return parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)


def _action(request: Request) -> str:
    """The request's own path and query (forms post back to where they were shown)."""
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


Handler = Callable[[Request], Awaitable[Response]]


def _pixel(state: ServerState) -> Handler:
    async def pixel(request: Request) -> Response:
        send_id = request.path_params["send_id"]
        signature = request.query_params.get("s", "")
        try:
            event = await run_in_threadpool(state.campaigns.loop.opened, send_id, signature)
            await record(state, [event])
        except TrackingError:
            pass  # forged, damaged or erased: still a pixel, nothing recorded
        except Exception:  # a broken image in the customer's mail helps nobody
            log.exception("open of send %s not recorded", send_id)
        return Response(PIXEL, 200, NO_STORE, media_type="image/gif")

    return pixel


def _click(state: ServerState) -> Handler:
    async def click(request: Request) -> Response:
        send_id = request.path_params["send_id"]
        url = request.query_params.get("u", "")
        signature = request.query_params.get("s", "")
        page = _Page(request)
        rt = state.campaigns
        if (
            not url
            or urlsplit(url).scheme not in ("http", "https")
            or not rt.tracking.verify(signature, send_id, url)
        ):
            return page.problem(400, "bad_link")  # never an open redirect
        try:
            event = await run_in_threadpool(rt.loop.clicked, send_id, url, signature)
        except TrackingError:
            event = None  # the send was erased; the signed link keeps working
        if event is not None:
            try:
                await record(state, [event])
            except StoreUnavailableError as exc:  # the customer still gets where they wanted
                log.warning("click of send %s not recorded: %s", send_id, exc)
        return RedirectResponse(url, 302, headers={**NO_STORE, "Referrer-Policy": "no-referrer"})

    return click


def _unsubscribe(state: ServerState) -> Handler:
    async def unsubscribe(request: Request) -> Response:
        send_id = request.path_params["send_id"]
        signature = request.query_params.get("s", "")
        page = _Page(request)
        rt = state.campaigns
        if not rt.tracking.verify(signature, send_id, "unsubscribe"):
            return page.problem(400, "bad_link")
        info = await run_in_threadpool(send_info, state.db, send_id)
        if info is None:
            return page.problem(404, "unknown_send")
        what = {"topic": page.topic(info.topic), "channel": page.channel(info.channel)}
        manage = rt.tracking.preferences(info.customer_id)
        if request.method == "GET":
            return page.render(
                200,
                page.t["unsubscribe"],
                lines=[page.t["unsubscribe_text"].format(**what)],
                action=_action(request),
                fields=[("List-Unsubscribe", "One-Click")],
                button=page.t["unsubscribe_button"],
                link=manage,
                link_text=page.t["manage"],
            )
        try:
            form = await _form(request)
        except CollectorError:
            return page.problem(400, "bad_one_click")
        if form.get("List-Unsubscribe") != ["One-Click"]:
            return page.problem(400, "bad_one_click")
        try:
            event = await run_in_threadpool(rt.loop.unsubscribed, send_id, signature)
            await record(state, [event])
        except (TrackingError, ConfigError):  # the send or the profile was erased
            return page.problem(404, "unknown_send")
        except StoreUnavailableError:
            return page.problem(503, "unavailable")
        return page.render(
            200,
            page.t["unsubscribed"],
            lines=[page.t["unsubscribed_text"].format(**what)],
            link=manage,
            link_text=page.t["manage"],
        )

    return unsubscribe


def _optin(state: ServerState) -> Handler:
    async def optin(request: Request) -> Response:
        token = request.path_params["token"]
        page = _Page(request)
        rt = state.campaigns
        found = await run_in_threadpool(find_opt_in, state.db, token)
        if found is None:
            return page.problem(404, "optin_unknown")
        now = rt.clock.now()
        if found.expired(now):
            return page.problem(404, "optin_expired")
        channel = page.channel(found.channel)
        if request.method == "GET":
            if found.confirmed_at is not None:
                return page.render(200, page.t["optin_already"])
            return page.render(
                200,
                page.t["optin"],
                lines=[page.t["optin_text"].format(channel=channel)],
                action=_action(request),
                button=page.t["optin_button"],
            )
        confirmed = await run_in_threadpool(rt.engine.confirm_opt_in, token)
        event = customer_event(
            found.customer_id,
            "Opt-In Confirmed",
            found.confirmed_at or now,
            {"channel": found.channel, "double_opt_in": True},
            channel=found.channel,
            key=f"optin\x1f{found.customer_id}\x1f{found.channel}\x1f{token}",
        )
        try:  # also when confirmed before: a retry after a failed store records it now
            await record(state, [event])
        except StoreUnavailableError:
            return page.problem(503, "unavailable")
        title = page.t["optin_done"] if confirmed else page.t["optin_already"]
        return page.render(
            200,
            title,
            link=rt.tracking.preferences(found.customer_id),
            link_text=page.t["manage"],
        )

    return optin


def _preferences(state: ServerState) -> Handler:
    async def preferences(request: Request) -> Response:
        token = request.path_params["token"]
        page = _Page(request)
        rt = state.campaigns
        customer_id = rt.tracking.preference_customer(token)
        if customer_id is None:
            return page.problem(400, "bad_link")
        center = PreferenceCenter(state.db, rt.flows)
        note: str | None = None
        error = False
        if request.method == "POST":
            try:
                form = await _form(request)
            except CollectorError:
                return page.problem(400, "too_large")
            now = rt.clock.now()
            try:
                changes = await run_in_threadpool(
                    center.save, customer_id, form.get("shown", []), form.get("c", []), now
                )
            except LookupError:
                return page.problem(404, "prefs_unknown")
            except ValueError as exc:
                changes, note, error = [], f"{page.t['prefs_bad']}: {exc}", True
            if changes:
                event = customer_event(
                    customer_id,
                    "Preferences Updated",
                    now,
                    {
                        "changes": [
                            {"channel": c.channel, "topic": c.topic, "status": c.status}
                            for c in changes
                        ],
                        "source": "preference_page",
                    },
                )
                try:
                    await record(state, [event])
                except StoreUnavailableError:
                    return page.problem(503, "unavailable")
            if not error:
                note = page.t["prefs_saved"] if changes else page.t["prefs_unchanged"]
        rows = await run_in_threadpool(center.preferences, customer_id)
        if rows is None:
            return page.problem(404, "prefs_unknown")
        return page.render(
            400 if error else 200,
            page.t["prefs"],
            template="preferences.html",
            rows=rows,
            action=_action(request),
            note=note,
            error=error,
        )

    return preferences


# -- Web Push subscriptions (an API: JSON errors, write-key auth, CORS) ---------------------
def _cors(state: ServerState, request: Request) -> dict[str, str]:
    origin = state.allowed_origin(request.headers.get("origin"))
    return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"} if origin else {}


def _push_channel(state: ServerState) -> WebPushChannel:
    channel = state.campaigns.registry.get("push")
    if not isinstance(channel, WebPushChannel):
        raise ConfigError(f"the channel 'push' is a {type(channel).__name__}, not Web Push")
    return channel


def _push_key(state: ServerState) -> Handler:
    async def key(request: Request) -> Response:
        cors = _cors(state, request)
        try:
            channel = _push_channel(state)
            server_key = await run_in_threadpool(lambda: channel.key.application_server_key)
        except ConfigError as exc:
            return error_response(
                503,
                "push_not_configured",
                f"Web Push is not available: {exc}. Install the push extra "
                "(pip install 'journeymap[push]') and set vapid_private_key_file",
                None,
                cors,
            )
        return JSONResponse(
            {"applicationServerKey": server_key},
            headers={**cors, "Cache-Control": "public, max-age=3600"},
        )

    return key


def _text_id(doc: Mapping[str, Any], key: str) -> str | None:
    value = doc.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > 100:
        raise RequestRejectedError(
            "invalid_request", f"{key} must be text of at most 100 characters", {"field": key}
        )
    return value


def _push_subscribe(state: ServerState) -> Handler:
    async def subscribe(request: Request) -> Response:
        cors = _cors(state, request)
        collector = state.collector
        rt = state.campaigns
        try:
            header_key = basic_write_key(request.headers.get("authorization"))
            doc = parse_json(await read_body(request, PUSH_BODY_LIMIT))
            if not isinstance(doc, dict):
                raise RequestRejectedError(
                    "invalid_request",
                    'the body must be a JSON object: {"userId" or "anonymousId", '
                    '"subscription", "permission"}',
                )
            write_key = header_key or doc.get("writeKey")
            source = collector.authenticate(write_key if isinstance(write_key, str) else None)
            collector.admit(source, 1)
            user_id, anonymous_id = _text_id(doc, "userId"), _text_id(doc, "anonymousId")
            if not user_id and not anonymous_id:
                raise RequestRejectedError(
                    "identity_missing", "send userId or anonymousId with the subscription"
                )
            permission = doc.get("permission", "default")
            if permission not in PERMISSIONS:
                raise RequestRejectedError(
                    "invalid_request",
                    f"permission {permission!r} is not one of {', '.join(PERMISSIONS)} "
                    "(the browser's Notification.permission)",
                    {"field": "permission"},
                )
            now = rt.clock.now()
            if request.method == "DELETE":
                sub = doc.get("subscription")
                endpoint = doc.get("endpoint") or (
                    sub.get("endpoint") if isinstance(sub, dict) else None
                )
                if not isinstance(endpoint, str) or not endpoint:
                    raise RequestRejectedError(
                        "invalid_request",
                        "send the endpoint (or the subscription) of the device to remove",
                        {"field": "endpoint"},
                    )
                change = await run_in_threadpool(
                    lambda: remove_push_subscriptions(
                        state.db,
                        [endpoint],
                        user_id=user_id,
                        anonymous_id=anonymous_id,
                        denied=permission == "denied",
                        now=now,
                    )
                )
                name = "Push Unsubscribed"
            else:
                if "subscription" not in doc:
                    raise PushSubscriptionError(
                        "subscription is missing: send the browser's PushSubscription JSON "
                        "(subscription.toJSON())"
                    )
                change = await run_in_threadpool(
                    lambda: add_push_subscription(
                        state.db,
                        doc["subscription"],
                        user_id=user_id,
                        anonymous_id=anonymous_id,
                        granted=permission == "granted",
                        now=now,
                    )
                )
                name = "Push Subscribed"
            if change.changed and change.customer_id is not None:
                event = customer_event(
                    change.customer_id,
                    name,
                    now,
                    {"devices": change.devices, "permission": permission},
                    channel="push",
                )
                await record(state, [event])
        except CollectorError as exc:
            return collector_error_response(exc, cors)
        except PushSubscriptionError as exc:
            return error_response(400, "invalid_subscription", str(exc), None, cors)
        except StoreUnavailableError as exc:
            return error_response(
                503, "store_unavailable", "retry shortly", str(exc), {**cors, "Retry-After": "1"}
            )
        return JSONResponse({"success": True, "devices": change.devices}, headers=cors)

    return subscribe


def _push_preflight(state: ServerState) -> Handler:
    async def preflight(request: Request) -> Response:
        cors = _cors(state, request)
        if not cors:
            return error_response(
                403,
                "origin_not_allowed",
                "this origin may not subscribe to push; add it to the cors_origins setting",
                {"origin": request.headers.get("origin")},
            )
        cors.update(
            {
                "Access-Control-Allow-Methods": "GET, POST, DELETE, OPTIONS",
                "Access-Control-Allow-Headers": "Authorization, Content-Type",
                "Access-Control-Max-Age": "86400",
            }
        )
        return Response(status_code=204, headers=cors)

    return preflight


def add_campaign_routes(app: FastAPI, state: ServerState) -> None:
    app.add_route("/t/o/{send_id}.gif", _pixel(state), methods=["GET"])
    app.add_route("/t/c/{send_id}", _click(state), methods=["GET"])
    app.add_route("/u/{send_id}", _unsubscribe(state), methods=["GET", "POST"])
    app.add_route("/optin/{token}", _optin(state), methods=["GET", "POST"])
    app.add_route("/prefs/{token}", _preferences(state), methods=["GET", "POST"])
    app.add_route("/v1/push/key", _push_key(state), methods=["GET"])
    app.add_route("/v1/push/subscribe", _push_subscribe(state), methods=["POST", "DELETE"])
    preflight = _push_preflight(state)
    for path in ("/v1/push/key", "/v1/push/subscribe"):
        app.add_route(path, preflight, methods=["OPTIONS"])
