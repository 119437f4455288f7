"""PostHog events as Segment-spec messages, so one validator and one loader serve both.

=====================  ======================================================================
PostHog event          message
=====================  ======================================================================
``$identify``          identify: ``userId`` = distinct_id, ``anonymousId`` =
                       ``$anon_distinct_id``, traits from ``$set`` (and ``$set_once``)
``$set``/``$set_once`` identify of distinct_id with those traits (``$set_once`` only fills
                       traits the profile does not have)
``$create_alias``      alias: ``previousId`` = ``properties.distinct_id``, ``userId`` =
                       ``properties.alias`` (posthog-python's ``alias(previous_id, distinct_id)``)
``$groupidentify``     group: ``groupId`` = ``<$group_type>:<$group_key>``, traits
                       ``$group_set``; group traits only, no membership (the distinct_id is
                       often a random one)
``$pageview``          page (``name`` = ``$current_url``); ``$screen``: screen (``$screen_name``)
anything else          track with the event's name
=====================  ======================================================================

``uuid`` is the message id, ``timestamp`` the time. distinct_id is a user id, except when the
event is personless (``$process_person_profile: false``) or the distinct_id is the browser's
``$device_id`` (posthog-js before identification): then it is an anonymous id. ``$set`` on
any event updates traits, as in PostHog. ``$lib``/``$lib_version`` become
``context.library``; ``$device_type`` ``context.device.type``; ``utm_*``
``context.campaign``.
"""

from __future__ import annotations

from typing import Any

_UTM = {
    "utm_source": "source",
    "utm_medium": "medium",
    "utm_campaign": "name",
    "utm_term": "term",
    "utm_content": "content",
}


def _as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def posthog_message(ev: Any) -> Any:
    """The Segment-spec message of a PostHog event (non-objects are returned unchanged)."""
    if not isinstance(ev, dict):
        return ev
    props = _as_dict(ev.get("properties"))
    name = ev.get("event")
    distinct = ev.get("distinct_id", props.get("distinct_id"))
    msg: dict[str, Any] = {
        "messageId": ev.get("uuid"),
        "timestamp": ev.get("timestamp"),
        "properties": props,
    }
    if ev.get("sent_at") is not None:
        msg["sentAt"] = ev["sent_at"]
    context: dict[str, Any] = {}
    if isinstance(props.get("$lib"), str):
        context["library"] = {"name": props["$lib"], "version": props.get("$lib_version")}
    if isinstance(props.get("$device_type"), str):
        context["device"] = {"type": props["$device_type"]}
    campaign = {k: props[p] for p, k in _UTM.items() if isinstance(props.get(p), str)}
    if campaign:
        context["campaign"] = campaign
    if isinstance(props.get("$ip"), str):
        context["ip"] = props["$ip"]
    if context:
        msg["context"] = context

    anonymous = props.get("$process_person_profile") is False or (
        distinct is not None and distinct == props.get("$device_id")
    )
    msg["anonymousId" if anonymous else "userId"] = distinct

    set_traits = ev.get("$set", props.get("$set"))
    set_once = ev.get("$set_once", props.get("$set_once"))
    if name == "$identify":
        msg["type"] = "identify"
        msg["userId"] = distinct
        msg.pop("anonymousId", None)
        if props.get("$anon_distinct_id") is not None:
            msg["anonymousId"] = props["$anon_distinct_id"]
    elif name in ("$set", "$set_once"):
        msg["type"] = "identify"
    elif name == "$create_alias":
        msg["type"] = "alias"
        msg["previousId"] = props.get("distinct_id", distinct)
        msg["userId"] = props.get("alias")
        msg.pop("anonymousId", None)
    elif name == "$groupidentify":
        msg["type"] = "group"
        gtype, gkey = props.get("$group_type"), props.get("$group_key")
        msg["groupId"] = f"{gtype}:{gkey}" if gtype is not None and gkey is not None else None
        msg["traits"] = _as_dict(props.get("$group_set"))
        msg["groupTraitsOnly"] = True
        return msg
    elif name == "$pageview":
        msg["type"] = "page"
        msg["name"] = props.get("$current_url")
    elif name == "$screen":
        msg["type"] = "screen"
        msg["name"] = props.get("$screen_name")
    else:
        msg["type"] = "track"
        msg["event"] = name
    if isinstance(set_traits, dict) and set_traits:
        msg["traits"] = set_traits
    if isinstance(set_once, dict) and set_once:
        msg["traitsOnce"] = set_once
    return msg
