"""Rendering a campaign message: sandboxed Jinja2 with profile and event variables.

Templates come from campaign files that marketing edits, so they run in
``jinja2.sandbox.SandboxedEnvironment`` (no attribute access to internals); HTML is
autoescaped, subjects and text are not. Push title and body are cut to 50 and 120 characters.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import jinja2
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

from journeymap.model.campaigns import PUSH_BODY_MAX, PUSH_TITLE_MAX, Message


class _Sandbox(SandboxedEnvironment):
    """Missing variables render empty (a profile without ``first_name``), but reaching for
    internals fails loudly instead of rendering nothing."""

    def unsafe_undefined(self, obj: Any, attribute: str) -> jinja2.Undefined:
        raise SecurityError(
            f"access to attribute {attribute!r} of a {type(obj).__name__} object is unsafe"
        )


_TEXT = _Sandbox(autoescape=False, undefined=jinja2.ChainableUndefined)
_HTML = _Sandbox(autoescape=True, undefined=jinja2.ChainableUndefined)


class ContentError(ValueError):
    """A template failed to render (reported as a terminal ``content`` failure)."""


@functools.lru_cache(maxsize=1024)
def _compiled(env: SandboxedEnvironment, template: str) -> jinja2.Template:
    """Compiling is ~1 ms per template; a campaign renders the same ones for every customer."""
    return env.from_string(template)


def _render(env: SandboxedEnvironment, template: str, variables: Mapping[str, Any]) -> str:
    try:
        return _compiled(env, template).render(**variables)
    except jinja2.TemplateError as exc:
        raise ContentError(f"template {template[:60]!r}: {exc}") from exc


def _cut(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _json(value: Any, variables: Mapping[str, Any]) -> Any:
    if isinstance(value, str):
        return _render(_TEXT, value, variables)
    if isinstance(value, dict):
        return {k: _json(v, variables) for k, v in value.items()}
    if isinstance(value, list):
        return [_json(v, variables) for v in value]
    return value


def render_message(message: Message, variables: Mapping[str, Any]) -> dict[str, Any]:
    """Every rendering of ``message`` with ``variables`` (``profile``, ``event``, ``links`` …)."""
    out: dict[str, Any] = {}
    if message.email is not None:
        e = message.email
        out["email"] = {
            "subject": _cut(_render(_TEXT, e.subject, variables), 998),
            "html": _render(_HTML, e.html, variables) if e.html is not None else None,
            "text": _render(_TEXT, e.text, variables) if e.text is not None else None,
        }
    if message.push is not None:
        p = message.push
        out["push"] = {
            "title": _cut(_render(_TEXT, p.title, variables), PUSH_TITLE_MAX),
            "body": _cut(_render(_TEXT, p.body, variables), PUSH_BODY_MAX),
            "deep_link": _render(_TEXT, p.deep_link, variables) if p.deep_link else None,
        }
    if message.banner is not None:
        b = message.banner
        out["banner"] = {
            "headline": _render(_HTML, b.headline, variables),
            "cta": _render(_HTML, b.cta, variables),
            "url": _render(_TEXT, b.url, variables) if b.url else None,
            "slot": b.slot,
        }
    if message.webhook is not None:
        out["webhook"] = _json(message.webhook, variables)
    if message.text is not None:
        out["text"] = _render(_TEXT, message.text, variables)
    return out


def render_values(values: Mapping[str, Any], variables: Mapping[str, Any]) -> dict[str, Any]:
    """Profile updates: string values are templates too (``"{{ event.order_id }}"``)."""
    return {k: _json(v, variables) for k, v in values.items()}
