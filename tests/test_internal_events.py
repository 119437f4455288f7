"""journeymap's own events (message feedback, exposures) reach the lake through the inbox,
once each, with channel, campaign and properties intact."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

from journeymap.collect.internal import INTERNAL_SOURCE, record_events
from journeymap.collect.loader import InboxLoader
from journeymap.storage.lake import DeltaEventStore

T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)


def _event(kind: str, **extra):
    return {
        "event_id": f"jm-msg-abc-{kind}",
        "customer_id": "c1",
        "ts": T0,
        "event": kind,
        "channel": "email",
        "campaign": "reminder",
        "properties": json.dumps({"send_id": "abc", "step": "s1", "variant": "B"}),
        **extra,
    }


def test_recorded_events_reach_the_lake_once_with_their_fields(db, tmp_path):
    store = DeltaEventStore(tmp_path / "lake")
    opened = _event("Message Opened")
    converted = _event("Campaign Converted", event_id="jm-conv-1", revenue=Decimal("19.90"))
    assert record_events(db, [opened, converted]) == 2
    # the same pixel loaded again, and a replayed batch: nothing new
    assert record_events(db, [opened]) == 0
    InboxLoader(db, store).load_all()
    rows = sorted(store.read().to_pylist(), key=lambda r: r["event"])
    assert [r["event"] for r in rows] == ["Campaign Converted", "Message Opened"]
    conv, op = rows
    assert op["customer_id"] == "c1"
    assert op["ts"] == T0
    assert (op["channel"], op["campaign"], op["source"]) == ("email", "reminder", INTERNAL_SOURCE)
    assert json.loads(op["properties"]) == {"send_id": "abc", "step": "s1", "variant": "B"}
    assert conv["revenue"] == Decimal("19.90")
    assert conv["currency"] == "EUR"
