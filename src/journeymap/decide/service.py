"""The decide service: which banner or in-app offer a customer sees next in a slot.

``decide`` runs, for one customer and slot:

1. a **campaign banner** queued for them (a campaign ``send`` step on channel ``banner``, still
   in the outbox and not yet shown) is served first — the gate checked its policies when it was
   queued; only consent is checked again, as it may have been revoked since;
2. otherwise the offers of the slot, in order: active dates → **eligibility** (phase, persona,
   conditions) → **consent** for channel ``banner`` and the offer's topic → **frequency caps**
   on banner exposures per local day and week (the ``banner`` caps of the policies, else the
   overall ones; plus the offer's own ``cap``) → **Thompson sampling** per (offer, persona)
   (``decide.bandit``) → the **global control group** and the winner's **holdout** get nothing,
   but the decision names the offer they would have seen, so uplift can be measured.

Consent default: a banner is content on the shop's own pages, not a message sent to someone,
so ``banner`` is an **opt-out** channel: with no consent record for ``banner`` the offer is
shown; a ``denied`` or ``revoked`` record for the topic (or the channel's ``*``) stops it.
(The same rule holds at the send gate: ``PolicySettings.opt_out_channels``.)

**Every decision is logged**, shown or not (with its reason): a row of ``decide_exposures``
(caps, conversion attribution, uplift), the ``offer_stats`` exposure count, and an event in
the collector's inbox (``Offer Shown``, ``Banner Shown`` or ``Offer Withheld``) that the loader
moves into the lake, in one transaction. The server answers once the decision is **durable in
the decision journal** (``decide.journal``: an fsynced local file, group commit), which moves
it into the database within a fraction of a second and is replayed at the next start after a
crash; so a decision the page received is never missing, and the answer never waits for the
database's writer (the loader holds it for whole rounds). Without a journal (library use),
``log`` commits to the database directly, also before returning.

The hot path reads the profile (traits, consent) and the queued campaign banners in one read
transaction; offers, personas, sampling counts and the exposures of the last eight days (for
caps) are in memory. With several server processes the caps are counted per process between
refreshes (each process seeds from the database at start).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal
from urllib.parse import quote

import jinja2
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from journeymap.channels.tracking import TrackingLinks
from journeymap.decide.bandit import Counts, ThompsonSampler
from journeymap.decide.journal import DecisionJournal, recover
from journeymap.decide.offers import Offer, OfferCatalog, OfferError, load_offers
from journeymap.decide.personas import UNKNOWN_PERSONA, PersonaIndex
from journeymap.errors import JourneymapError
from journeymap.orchestration.clock import Clock, SystemClock
from journeymap.orchestration.content import _HTML, _TEXT, ContentError
from journeymap.orchestration.engine import evaluate
from journeymap.orchestration.phases import PHASE_TRAIT as PHASE_TRAIT_NAME
from journeymap.orchestration.policies import (
    ANY_CHANNEL,
    Period,
    PolicySettings,
    bucket,
    customer_zone,
    period_start,
    zone,
)
from journeymap.storage.db import (
    OperationalDB,
    campaign_outbox,
    decide_exposures,
    offer_stats,
)
from journeymap.storage.profiles import ANY_TOPIC

if TYPE_CHECKING:
    from journeymap.orchestration.runtime import CampaignRuntime
    from journeymap.storage.lake import DeltaEventStore

log = logging.getLogger(__name__)

CHANNEL: Final = "banner"
PHASE_TRAIT: Final = PHASE_TRAIT_NAME  # kept live by the worker (orchestration.phases)
#: A queued campaign banner not shown within this time is left alone (the moment has passed).
BANNER_TTL: Final = dt.timedelta(days=7)
#: Exposures kept in memory for caps (a local week plus a day of time-zone slack).
_CAP_MEMORY: Final = dt.timedelta(days=8)
EVENTS: Final = {"offer": "Offer Shown", "campaign": "Banner Shown", "none": "Offer Withheld"}
CLICK_EVENT: Final = "Offer Clicked"
Reason = Literal["campaign", "sampled", "control", "holdout", "cap", "no_consent", "no_offer"]
Group = Literal["treatment", "holdout", "control"]


class DecideError(JourneymapError, ValueError):
    """A decide request the service cannot answer; ``code``, ``status`` and ``detail`` are
    what the server sends back."""

    def __init__(self, code: str, message: str, detail: Any = None, status: int = 400) -> None:
        super().__init__(message)
        self.code, self.message, self.detail, self.status = code, message, detail, status


class TrackingLinkError(DecideError):
    """A click URL with a wrong signature or an unknown decision."""


@dataclass(frozen=True)
class ShownOffer:
    id: str
    headline: str
    body: str
    cta: str
    url: str | None
    image: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "headline": self.headline,
            "body": self.body,
            "cta": self.cta,
            "url": self.url,
            "image": self.image,
        }


@dataclass(frozen=True)
class Decision:
    """The answer of ``decide``; ``offer`` is ``None`` when nothing is shown (``reason``)."""

    decision_id: str
    slot: str
    offer: ShownOffer | None
    reason: Reason
    persona: str
    group: Group
    customer_id: str
    #: the offer the decision is about (also for control and holdout), and the campaign send
    offer_id: str | None = None
    send_id: str | None = None
    campaign: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "decision_id": self.decision_id,
            "slot": self.slot,
            "offer": self.offer.to_json() if self.offer is not None else None,
            "reason": self.reason,
            "persona": self.persona,
            "group": self.group,
        }


@dataclass(frozen=True)
class _Record:
    """What one decision writes (a ``decide_exposures`` row, an inbox row, its count, the
    outbox): plain JSON values, so that the journal can hold it."""

    decision_id: str
    decided_at: str
    #: ``decide_exposures`` values in column order (``decided_at`` as ISO text)
    exposure: list[Any]
    #: ``inbox`` values: source, message id, received at (µs), payload
    inbox: list[Any]
    stats: list[str] | None
    send_id: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "decision_id": self.decision_id,
            "decided_at": self.decided_at,
            "exposure": self.exposure,
            "inbox": self.inbox,
            "stats": self.stats,
            "send_id": self.send_id,
        }

    @classmethod
    def of(cls, value: _Record | Mapping[str, Any]) -> _Record:
        if isinstance(value, _Record):
            return value
        return cls(
            value["decision_id"],
            value["decided_at"],
            list(value["exposure"]),
            list(value["inbox"]),
            list(value["stats"]) if value.get("stats") else None,
            value.get("send_id"),
        )


@dataclass
class RefreshResult:
    conversions: int = 0
    events_scanned: int = 0
    offers: int = 0
    counts: dict[tuple[str, str], Counts] = field(default_factory=dict)


def _iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


class DecideService:
    """Decisions for the offers in ``offers`` (a file, reloaded when it changes, or a fixed
    catalogue) on the operational database ``db``."""

    def __init__(
        self,
        db: OperationalDB,
        offers: str | Path | OfferCatalog,
        *,
        tracking: TrackingLinks,
        settings: PolicySettings | None = None,
        personas: PersonaIndex | None = None,
        clock: Clock | None = None,
        seed: int | None = None,
        campaign_slots: Sequence[str] = (),
        phases: Sequence[str] | None = None,
        check_seconds: float = 5.0,
        journal_dir: str | Path | None = None,
    ) -> None:
        self.db = db
        self.tracking = tracking
        self.settings = settings or PolicySettings()
        self.personas = personas
        self.clock: Clock = clock or SystemClock()
        self.sampler = ThompsonSampler(seed)
        self.campaign_slots = list(campaign_slots)
        self.phases = phases
        self.check_seconds = check_seconds
        self.journal_dir = Path(journal_dir) if journal_dir is not None else None
        self.journal: DecisionJournal | None = None
        self._path: Path | None = None
        self._catalog: OfferCatalog | None = None
        self._stamp: tuple[int, int] | None = None
        self._checked = float("-inf")
        self.catalog_error: OfferError | None = None
        if isinstance(offers, OfferCatalog):
            self._catalog = offers
        else:
            self._path = Path(offers)
            self._reload(force=True)
        self._tz = zone(self.settings.default_timezone)
        self._templates: dict[tuple[bool, str], jinja2.Template] = {}
        self._lock = threading.Lock()
        self._shown: dict[str, list[tuple[dt.datetime, str]]] = {}
        self._served: dict[str, None] = {}
        self._seeded = False
        # The hot path bypasses SQLAlchemy's statement building (it cost more than the
        # queries): plain SQL, parameters converted once by the columns' own processors.
        m = "?" if db.dialect == "sqlite" else "%s"
        dialect = db.engine.dialect
        self._bind_time = decide_exposures.c.decided_at.type.bind_processor(dialect)
        self._time_index = [c.name for c in decide_exposures.columns].index("decided_at")
        self._sql_pid = (
            f"SELECT 0, profile_id FROM profiles WHERE customer_id = {m} UNION ALL "
            "SELECT CASE id_kind WHEN 'user' THEN 1 ELSE 2 END, profile_id FROM identities "
            f"WHERE id_kind IN ('user', 'anonymous') AND id_value = {m} ORDER BY 1 LIMIT 1"
        )
        self._sql_anonymous = (
            f"SELECT 0, profile_id FROM identities WHERE id_kind = 'anonymous' AND id_value = {m}"
        )
        self._sql_profile = (
            f"SELECT 'p', customer_id, NULL FROM profiles WHERE profile_id = {m} UNION ALL "
            f"SELECT 't', name, value FROM traits WHERE profile_id = {m} UNION ALL "
            f"SELECT 'c', topic, status FROM consents WHERE profile_id = {m} "
            f"AND channel = '{CHANNEL}'"
        )
        columns = [c.name for c in decide_exposures.columns]
        self._sql_exposure = (
            f"INSERT INTO decide_exposures ({', '.join(columns)}) "
            f"VALUES ({', '.join([m] * len(columns))})"
        )
        self._sql_inbox = (
            "INSERT INTO inbox (source, message_id, received_at_us, payload) VALUES "
            f"({m}, {m}, {m}, {m}) ON CONFLICT (source, message_id) DO NOTHING"
        )
        self._sql_bump = {
            col: (
                f"INSERT INTO offer_stats (offer, persona, exposures, clicks, conversions) "
                f"VALUES ({m}, {m}, {'%s' if col == 'exposures' else 0}, "
                f"{'%s' if col == 'clicks' else 0}, {'%s' if col == 'conversions' else 0}) "
                f"ON CONFLICT (offer, persona) DO UPDATE SET {col} = offer_stats.{col} + "
                f"excluded.{col}"
            ).replace("%s", m)
            for col in ("exposures", "clicks", "conversions")
        }

    @classmethod
    def open(cls, runtime: CampaignRuntime, **options: Any) -> DecideService:
        """The decide service of a project: its offers file, personas, policies and tracking."""
        from journeymap.model.campaigns import SendStep

        settings = runtime.settings
        slots = []
        for c in runtime.flows:
            for s in c.steps:
                if isinstance(s, SendStep) and s.channel == CHANNEL and s.message.banner:
                    slots.append(s.message.banner.slot)
        phases: list[str] | None = None
        try:
            from journeymap.model.spec import load_spec

            phases = load_spec(settings.spec).phase_ids()
        except (JourneymapError, OSError, ValueError):
            phases = None  # no spec yet: phases are not checked against it
        options.setdefault("personas", PersonaIndex(settings.cache_dir))
        options.setdefault("journal_dir", settings.project_dir / ".journeymap" / "decide-journal")
        return cls(
            runtime.db,
            settings.offers,
            tracking=runtime.tracking,
            settings=runtime.policy,
            clock=runtime.clock,
            campaign_slots=slots,
            phases=phases,
            **options,
        )

    # -- offers ----------------------------------------------------------------------------
    def _reload(self, *, force: bool = False) -> None:
        assert self._path is not None
        now = time.monotonic()
        if not force and now - self._checked < self.check_seconds:
            return
        self._checked = now
        try:
            st = self._path.stat()
            stamp: tuple[int, int] | None = (st.st_mtime_ns, st.st_size)
        except OSError:
            stamp = None
        if stamp == self._stamp and self._catalog is not None:
            return
        try:
            catalog = load_offers(self._path, phases=self.phases)
        except OfferError as exc:
            # keep serving the last valid offers; the error is visible in the log and status
            self.catalog_error = exc
            self._stamp = stamp
            log.error("decide: %s", exc)
            return
        self._catalog, self._stamp, self.catalog_error = catalog, stamp, None

    def catalog(self) -> OfferCatalog:
        """The current offers; ``DecideError`` (503) when the file never was valid."""
        if self._path is not None:
            self._reload()
        if self._catalog is None:
            err = self.catalog_error
            raise DecideError(
                "offers_invalid",
                f"the offers file is invalid; fix it and the decide API picks it up: {err}",
                [str(p) for p in err.problems] if err is not None else None,
                status=503,
            )
        return self._catalog

    def slots(self) -> list[str]:
        known = dict.fromkeys(self.catalog().known_slots())
        known.update(dict.fromkeys(self.campaign_slots))
        return list(known)

    # -- the decision ----------------------------------------------------------------------
    def decide(
        self,
        slot: str,
        *,
        user_id: str | None = None,
        anonymous_id: str | None = None,
        context: Mapping[str, Any] | None = None,
        source: str = "decide",
    ) -> tuple[Decision, _Record]:
        """Decide for one request; ``log(record)`` makes it durable (``decide_and_log`` both)."""
        if not user_id and not anonymous_id:
            raise DecideError(
                "missing_customer",
                "give userId (a known customer) or anonymousId (a visitor) to decide for",
            )
        catalog = self.catalog()
        known = self.slots()
        if slot not in known:
            raise DecideError(
                "unknown_slot",
                f"unknown slot {slot!r}; known slots: {', '.join(known) or 'none'} (slots come "
                f"from the offers file and campaign banner steps)",
                {"slot": slot, "known_slots": known},
            )
        self._seed_caps()
        context = dict(context or {})
        now = self.clock.now()
        any_id = user_id or anonymous_id
        assert any_id is not None
        with self.db.connect() as conn:
            found = conn.exec_driver_sql(
                self._sql_pid if user_id else self._sql_anonymous,
                (any_id, any_id) if user_id else (any_id,),
            ).first()
            customer_id, traits_, consent = self._profile(conn, found[1] if found else None)
            key = customer_id or user_id or any_id
            queued = (
                self._queued(conn, {key, any_id}, slot, now) if slot in self.campaign_slots else []
            )
        persona = (
            self.personas.persona(customer_id or user_id, traits_)
            if self.personas is not None
            else UNKNOWN_PERSONA
        )
        s = self.settings
        control = bucket("global", s.global_control_salt, key) < s.global_control
        decision_id = uuid.uuid4().hex
        variables = {
            "profile": traits_,
            "customer_id": key,
            "persona": persona,
            "context": context,
        }

        def done(
            reason: Reason,
            group: Group,
            offer: ShownOffer | None = None,
            offer_id: str | None = None,
            queued_row: Any = None,
        ) -> tuple[Decision, _Record]:
            d = Decision(
                decision_id,
                slot,
                offer,
                reason,
                persona,
                group,
                key,
                offer_id,
                queued_row.send_id if queued_row is not None else None,
                queued_row.campaign if queued_row is not None else None,
            )
            uid = user_id or customer_id
            return d, self._record(d, uid, anonymous_id, source, context, now, queued_row)

        # 1. a campaign banner queued for this customer and slot
        for row in queued:
            if self._consented(consent, row.topic):
                banner = json.loads(row.payload).get("renderings", {}).get("banner") or {}
                shown = ShownOffer(
                    f"campaign:{row.campaign}:{row.step}",
                    str(banner.get("headline") or ""),
                    str(banner.get("body") or ""),
                    str(banner.get("cta") or ""),
                    self.click_url(decision_id, banner["url"]) if banner.get("url") else None,
                    banner.get("image"),
                )
                with self._lock:
                    self._served[row.send_id] = None
                    self._remember(key, now, f"campaign:{row.campaign}")
                return done("campaign", "treatment", shown, None, row)

        # 2. the offers of the slot
        phase = traits_.get(PHASE_TRAIT)
        offers = [
            o
            for o in catalog.for_slot(slot)
            if o.active(now, self._tz) and self._eligible(o, phase, persona, traits_, context)
        ]
        if not offers:
            return done("no_offer", "control" if control else "treatment")
        offers = [o for o in offers if self._consented(consent, o.topic)]
        if not offers:
            return done("no_consent", "control" if control else "treatment")
        tz = customer_zone(traits_, s)
        offers = self._within_caps(key, offers, tz, now)
        if not offers:
            return done("cap", "control" if control else "treatment")
        draws = self.sampler.draw([o.id for o in offers], persona)
        by_id = {o.id: o for o in offers}
        winner = by_id[draws[0][1]]
        if control:
            return done("control", "control", None, winner.id)
        if bucket("holdout", "offer", winner.id, key) < winner.holdout:
            return done("holdout", "holdout", None, winner.id)
        for _, offer_id in draws:
            if (
                offer_id != winner.id
                and bucket("holdout", "offer", offer_id, key) < by_id[offer_id].holdout
            ):
                continue
            try:
                shown = self._render(by_id[offer_id], variables, decision_id)
            except ContentError as exc:
                log.warning("decide: offer %s does not render: %s", offer_id, exc)
                continue
            self.sampler.add(offer_id, persona, exposures=1)
            with self._lock:
                self._remember(key, now, offer_id)
            return done("sampled", "treatment", shown, offer_id)
        return done("no_offer", "treatment")

    def log(self, record: _Record) -> Future[Any]:
        """Make the decision durable; the future completes when it is. With a journal
        (``start``): fsynced there, applied to the database shortly after; without: the
        database's next group commit."""
        if self.journal is not None:
            return self.journal.append(record.to_json())
        return self.db.submit_grouped("decide", self._write, record)

    async def log_async(self, record: _Record) -> None:
        """``log`` for the event loop: waits without blocking it."""
        await asyncio.wrap_future(self.log(record))

    def flush(self) -> int:
        """Apply the journaled decisions to the database now (tests, shutdown)."""
        return self.journal.flush() if self.journal is not None else 0

    def decide_and_log(self, slot: str, **request: Any) -> Decision:
        """``decide``, wait until the decision is durable and in the database."""
        decision, record = self.decide(slot, **request)
        self.log(record).result()
        self.flush()
        return decision

    def start(self) -> int:
        """Apply the journals of processes that died, then journal this one's decisions
        (``journal_dir``); returns the decisions recovered. The server calls it at start."""
        if self.journal_dir is None or self.journal is not None:
            return 0
        recovered = recover(self.journal_dir, self._apply)
        self.journal = DecisionJournal(self.journal_dir, self._apply)
        return recovered

    def close(self) -> None:
        """Apply what is journaled and stop the journal (the server calls it at shutdown)."""
        if self.journal is not None:
            journal, self.journal = self.journal, None
            journal.close()

    # -- pieces of the decision ------------------------------------------------------------
    def _profile(
        self, conn: Connection, pid: int | None
    ) -> tuple[str | None, dict[str, Any], dict[str, str]]:
        """The customer id, traits and ``banner`` consent (topic → status) of profile ``pid``."""
        customer_id: str | None = None
        found: dict[str, Any] = {}
        consent: dict[str, str] = {}
        if pid is None:
            return customer_id, found, consent
        for kind, name, value in conn.exec_driver_sql(self._sql_profile, (pid, pid, pid)):
            if kind == "t":
                found[name] = json.loads(value)
            elif kind == "c":
                consent[name] = value
            else:
                customer_id = name
        return customer_id, found, consent

    def _queued(self, conn: Connection, ids: set[str], slot: str, now: dt.datetime) -> list[Any]:
        o = campaign_outbox.c
        rows = conn.execute(
            sa.select(o.send_id, o.campaign, o.step, o.variant, o.topic, o.payload)
            .where(
                o.customer_id.in_(sorted(ids)),
                o.channel == CHANNEL,
                o.status.in_(("pending", "retry", "sending", "sent")),
                o.created_at >= now - BANNER_TTL,
                ~o.send_id.in_(
                    sa.select(decide_exposures.c.send_id).where(
                        decide_exposures.c.customer_id.in_(sorted(ids)),
                        decide_exposures.c.send_id.is_not(None),
                    )
                ),
            )
            .order_by(o.created_at, o.send_id)
        ).all()
        out = []
        for r in rows:
            if r.send_id in self._served:
                continue
            banner = json.loads(r.payload).get("renderings", {}).get("banner") or {}
            if (banner.get("slot") or "default") == slot:
                out.append(r)
        return out

    def _consented(self, consent: Mapping[str, str], topic: str) -> bool:
        """Granted for the topic (or ``*``); with no record, allowed while ``banner`` is an
        opt-out channel (``PolicySettings.opt_out_channels``, the default)."""
        status = consent.get(topic, consent.get(ANY_TOPIC))
        return status == "granted" or (status is None and CHANNEL in self.settings.opt_out_channels)

    @staticmethod
    def _eligible(
        offer: Offer,
        phase: Any,
        persona: str,
        traits_: Mapping[str, Any],
        context: Mapping[str, Any],
    ) -> bool:
        e = offer.eligible
        if e.phases and phase not in e.phases:
            return False
        if e.personas and persona not in e.personas:
            return False
        return all(evaluate(c, traits_, context) for c in e.where)

    def _caps(self) -> Mapping[Period, int]:
        caps = self.settings.caps
        return caps.get(CHANNEL) or caps.get(ANY_CHANNEL) or {}

    def _within_caps(self, key: str, offers: list[Offer], tz: Any, now: dt.datetime) -> list[Offer]:
        with self._lock:
            shown = list(self._shown.get(key, ()))
        if not shown:
            return offers
        starts: dict[Period, dt.datetime] = {
            "day": period_start(now, tz, "day"),
            "week": period_start(now, tz, "week"),
        }
        for period, limit in self._caps().items():
            if sum(1 for t, _ in shown if t >= starts[period]) >= limit:
                return []
        out = []
        for o in offers:
            limits: list[tuple[Period, int | None]] = (
                [("day", o.cap.day), ("week", o.cap.week)] if o.cap is not None else []
            )
            if any(
                limit is not None
                and sum(1 for t, oid in shown if oid == o.id and t >= starts[period]) >= limit
                for period, limit in limits
            ):
                continue
            out.append(o)
        return out

    def _remember(self, key: str, now: dt.datetime, offer_id: str) -> None:
        """Count an exposure for caps (the caller holds the lock)."""
        cutoff = now - _CAP_MEMORY
        kept = [e for e in self._shown.get(key, ()) if e[0] >= cutoff]
        kept.append((now, offer_id))
        self._shown[key] = kept
        if len(self._served) > 100_000:
            self._served.clear()

    def warm(self) -> None:
        """Load what the first decisions would otherwise wait for: offers and their templates,
        persona assignments, the exposures for caps and the sampling counts."""
        try:
            catalog = self.catalog()
        except DecideError:
            catalog = None  # the error is logged; decisions answer 503 until the file is fixed
        if catalog is not None:
            for o in catalog.offers:
                c = o.content
                for text, html in (
                    (c.headline, True),
                    (c.body, True),
                    (c.cta, True),
                    (c.url, False),
                ):
                    with contextlib.suppress(ContentError):
                        self._template(text, html)
        if self.personas is not None:
            self.personas.refresh(force=True)
        self._seed_caps()

    def _seed_caps(self) -> None:
        """Load the exposures of the last eight days from the database (once per process)."""
        with self._lock:
            if self._seeded:
                return
            since = self.clock.now() - _CAP_MEMORY
            d = decide_exposures.c
            shown: dict[str, list[tuple[dt.datetime, str]]] = {}
            with self.db.connect() as conn:
                for cid, at, offer, send in conn.execute(
                    sa.select(d.customer_id, d.decided_at, d.offer, d.send_id)
                    .where(d.shown.is_(True), d.decided_at >= since)
                    .order_by(d.decided_at)
                ):
                    shown.setdefault(cid, []).append((at, offer or f"send:{send}"))
            self._shown = shown
            self._seeded = True
        self.load_counts()

    def _template(self, text: str, html: bool) -> jinja2.Template:
        found = self._templates.get((html, text))
        if found is None:
            try:
                found = (_HTML if html else _TEXT).from_string(text)
            except jinja2.TemplateError as exc:
                raise ContentError(f"template {text[:60]!r}: {exc}") from exc
            self._templates[(html, text)] = found
        return found

    def _text(self, text: str, variables: Mapping[str, Any], *, html: bool) -> str:
        try:
            return self._template(text, html).render(**variables)
        except jinja2.TemplateError as exc:
            raise ContentError(f"template {text[:60]!r}: {exc}") from exc

    def _render(self, offer: Offer, variables: Mapping[str, Any], decision_id: str) -> ShownOffer:
        c = offer.content
        url = self._text(c.url, variables, html=False)
        return ShownOffer(
            offer.id,
            self._text(c.headline, variables, html=True),
            self._text(c.body, variables, html=True),
            self._text(c.cta, variables, html=True),
            self.click_url(decision_id, url),
            self._text(c.image, variables, html=False) if c.image else None,
        )

    def click_url(self, decision_id: str, url: str) -> str:
        """The tracked click URL of a decision: ``/t/d/{decision_id}?u=<url>&s=<signature>``."""
        sig = self.tracking.sign(decision_id, url)
        base = self.tracking.base_url.rstrip("/")
        return f"{base}/t/d/{decision_id}?u={quote(url, safe='')}&s={sig}"

    # -- logging ---------------------------------------------------------------------------
    def _record(
        self,
        d: Decision,
        user_id: str | None,
        anonymous_id: str | None,
        source: str,
        context: Mapping[str, Any],
        now: dt.datetime,
        queued_row: Any,
    ) -> _Record:
        shown = d.offer is not None
        row = {
            "decision_id": d.decision_id,
            "customer_id": d.customer_id,
            "anonymous_id": anonymous_id,
            "source": source,
            "slot": d.slot,
            "offer": d.offer_id,
            "send_id": d.send_id,
            "persona": d.persona,
            "group_name": d.group,
            "reason": d.reason,
            "shown": shown,
            "decided_at": now.isoformat(),
            "clicked_at": None,
            "converted_at": None,
            "conversion_id": None,
        }
        props: dict[str, Any] = {
            "decision_id": d.decision_id,
            "slot": d.slot,
            "offer_id": d.offer_id,
            "persona": d.persona,
            "group": d.group,
            "reason": d.reason,
        }
        campaign: dict[str, Any] = {"medium": CHANNEL}
        if queued_row is not None:
            props |= {
                "send_id": queued_row.send_id,
                "campaign_id": queued_row.campaign,
                "step": queued_row.step,
                "variant": queued_row.variant,
            }
            campaign["name"] = queued_row.campaign
        event = EVENTS["campaign" if queued_row is not None else "offer" if shown else "none"]
        message = self._message(event, d.decision_id, user_id, anonymous_id, props, campaign, now)
        extra = {k: v for k, v in context.items() if k != "campaign"}
        message["context"] = {**extra, "campaign": campaign}
        stats = [d.offer_id, d.persona] if d.reason == "sampled" and d.offer_id else None
        return _Record(
            d.decision_id,
            now.isoformat(),
            [row[c.name] for c in decide_exposures.columns],
            list(self._inbox_row(source, message)),
            stats,
            d.send_id,
        )

    @staticmethod
    def _message(
        event: str,
        message_id: str,
        user_id: str | None,
        anonymous_id: str | None,
        props: Mapping[str, Any],
        campaign: Mapping[str, Any],
        now: dt.datetime,
    ) -> dict[str, Any]:
        return {
            "type": "track",
            "event": event,
            "messageId": message_id,
            "userId": user_id,
            "anonymousId": anonymous_id,
            "timestamp": _iso(now),
            "receivedAt": _iso(now),
            "properties": dict(props),
            "context": {"campaign": dict(campaign)},
        }

    @staticmethod
    def _inbox_row(source: str, message: Mapping[str, Any]) -> tuple[str, str, int, str]:
        payload = json.dumps(message, separators=(",", ":"), default=str)
        return (source, message["messageId"], time.time_ns() // 1000, payload)

    def _write(self, conn: Connection, records: list[_Record]) -> list[None]:
        """One transaction for every decision queued meanwhile (group commit)."""
        self._apply_in(conn, records)
        return [None] * len(records)

    def _apply(self, records: Sequence[_Record | Mapping[str, Any]]) -> None:
        """Write journaled decisions to the database (idempotent)."""
        found = [_Record.of(r) for r in records]
        for i in range(0, len(found), 2_000):
            part = found[i : i + 2_000]
            self.db.write(lambda conn, part=part: self._apply_in(conn, part))  # type: ignore[misc]

    def _apply_in(self, conn: Connection, records: Sequence[_Record]) -> None:
        """The decisions' rows, inbox events, exposure counts and served campaign banners, in
        the caller's transaction; a decision already stored is skipped, so a journal applied
        twice (a crash between the commit and the deletion) changes nothing."""
        ids = [r.decision_id for r in records]
        known: set[str] = set()
        for i in range(0, len(ids), 500):
            known.update(
                conn.execute(
                    sa.select(decide_exposures.c.decision_id).where(
                        decide_exposures.c.decision_id.in_(ids[i : i + 500])
                    )
                ).scalars()
            )
        new = [r for r in records if r.decision_id not in known]
        if not new:
            return
        at = self._time_index
        rows = []
        for r in new:
            row = list(r.exposure)
            when = dt.datetime.fromisoformat(row[at])
            row[at] = self._bind_time(when) if self._bind_time else when
            rows.append(tuple(row))
        conn.exec_driver_sql(self._sql_exposure, rows)
        conn.exec_driver_sql(self._sql_inbox, [tuple(r.inbox) for r in new])
        self._bump(
            conn, Counter((r.stats[0], r.stats[1]) for r in new if r.stats is not None), "exposures"
        )
        for r in new:
            if r.send_id is not None:
                conn.execute(
                    campaign_outbox.update()
                    .where(
                        campaign_outbox.c.send_id == r.send_id,
                        campaign_outbox.c.status.in_(("pending", "retry")),
                    )
                    .values(
                        status="sent",
                        sent_at=dt.datetime.fromisoformat(r.decided_at),
                        provider_id=f"decision:{r.decision_id}",
                        reason=None,
                    )
                )

    def _bump(self, conn: Connection, bumps: Mapping[tuple[str, str], int], column: str) -> None:
        """Add to the ``column`` count of each (offer, persona), creating the row."""
        if bumps:
            conn.exec_driver_sql(
                self._sql_bump[column], [(o, p, n) for (o, p), n in sorted(bumps.items())]
            )

    # -- clicks ----------------------------------------------------------------------------
    def click(self, decision_id: str, url: str, signature: str) -> str:
        """Record the click of a decision's link (``Offer Clicked``, once per decision; with
        ``conversion.on_click`` also a conversion); returns the URL to redirect to."""
        if not self.tracking.verify(signature, decision_id, url):
            raise TrackingLinkError(
                "bad_signature",
                "the click link's signature does not match; links are signed with the "
                "project's tracking secret (tracking_secret_file)",
                {"decision_id": decision_id},
            )
        with self.db.connect() as conn:
            row = conn.execute(
                sa.select(decide_exposures).where(decide_exposures.c.decision_id == decision_id)
            ).first()
        if row is None and self.flush():  # a click faster than the journal's mover
            with self.db.connect() as conn:
                row = conn.execute(
                    sa.select(decide_exposures).where(decide_exposures.c.decision_id == decision_id)
                ).first()
        if row is None:
            raise TrackingLinkError(
                "unknown_decision", f"no decision {decision_id!r}", {"decision_id": decision_id}
            )
        now = self.clock.now()
        offer = self._catalog.get(row.offer) if row.offer and self._catalog else None
        on_click = offer is not None and offer.conversion.on_click
        props = {
            "decision_id": decision_id,
            "slot": row.slot,
            "offer_id": row.offer,
            "persona": row.persona,
            "send_id": row.send_id,
            "link_url": url,
        }
        campaign: dict[str, Any] = {"medium": CHANNEL}
        if row.send_id:
            outbox_campaign = None
            with self.db.connect() as conn:
                outbox_campaign = conn.execute(
                    sa.select(campaign_outbox.c.campaign).where(
                        campaign_outbox.c.send_id == row.send_id
                    )
                ).scalar()
            if outbox_campaign:
                campaign["name"] = outbox_campaign
                props["campaign_id"] = outbox_campaign
        user_id = (
            None if row.anonymous_id and row.customer_id == row.anonymous_id else row.customer_id
        )
        message = self._message(
            CLICK_EVENT, f"{decision_id}-click", user_id, row.anonymous_id, props, campaign, now
        )

        def run(conn: Connection) -> bool:
            d = decide_exposures.c
            first = conn.execute(
                decide_exposures.update()
                .where(d.decision_id == decision_id, d.clicked_at.is_(None))
                .values(clicked_at=now)
            ).rowcount
            if not first:
                return False
            conn.exec_driver_sql(self._sql_inbox, [self._inbox_row(row.source, message)])
            if row.offer and row.reason == "sampled":
                self._bump(conn, {(row.offer, row.persona): 1}, "clicks")
                if (
                    on_click
                    and conn.execute(
                        decide_exposures.update()
                        .where(d.decision_id == decision_id, d.converted_at.is_(None))
                        .values(converted_at=now, conversion_id="click")
                    ).rowcount
                ):
                    self._bump(conn, {(row.offer, row.persona): 1}, "conversions")
                    return True
            return False

        if self.db.write(run):
            self.sampler.add(row.offer, row.persona, conversions=1)
        return url

    # -- conversions and counts ------------------------------------------------------------
    def load_counts(self) -> dict[tuple[str, str], Counts]:
        """Replace the sampler's counts with the database's."""
        with self.db.connect() as conn:
            found = {
                (o, p): Counts(int(e), int(c))
                for o, p, e, c in conn.execute(
                    sa.select(
                        offer_stats.c.offer,
                        offer_stats.c.persona,
                        offer_stats.c.exposures,
                        offer_stats.c.conversions,
                    )
                )
            }
        self.sampler.replace(found)
        return found

    def attribute(self, events: Sequence[Mapping[str, Any]]) -> int:
        """Credit conversion events (``event_id``, ``customer_id``, ``anonymous_id``, ``event``,
        ``ts``) to the last exposure before them, per customer, whose offer counts that event
        within its window; each exposure converts once and each event credits one exposure.
        Idempotent. Returns the conversions newly recorded."""
        catalog = self._catalog
        if catalog is None or not events:
            return 0
        by_event: dict[str, list[Offer]] = {}
        for o in catalog.offers:
            by_event.setdefault(o.conversion.event, []).append(o)
        relevant = [e for e in events if e.get("event") in by_event]
        if not relevant:
            return 0
        window = max(o.conversion.window for o in catalog.offers)
        first = min(e["ts"] for e in relevant)
        d = decide_exposures.c
        with self.db.connect() as conn:
            rows = conn.execute(
                sa.select(
                    d.decision_id,
                    d.customer_id,
                    d.anonymous_id,
                    d.offer,
                    d.persona,
                    d.decided_at,
                    d.converted_at,
                    d.conversion_id,
                ).where(
                    d.shown.is_(True),
                    d.offer.is_not(None),
                    d.reason == "sampled",
                    d.decided_at >= first - window,
                )
            ).all()
        used = {r.conversion_id for r in rows if r.conversion_id}
        open_rows: dict[str, list[Any]] = {}
        for r in rows:
            if r.converted_at is None:
                open_rows.setdefault(r.customer_id, []).append(r)
                if r.anonymous_id and r.anonymous_id != r.customer_id:
                    open_rows.setdefault(r.anonymous_id, []).append(r)
        credits: list[tuple[Any, Any]] = []
        taken: set[str] = set()
        for ev in sorted(relevant, key=lambda e: (e["ts"], str(e["event_id"]))):
            if ev["event_id"] in used:
                continue
            offers = {o.id: o for o in by_event[ev["event"]]}
            candidates = [
                r
                for who in (ev.get("customer_id"), ev.get("anonymous_id"))
                if who
                for r in open_rows.get(who, ())
                if r.decision_id not in taken
                and r.offer in offers
                and r.decided_at <= ev["ts"] <= r.decided_at + offers[r.offer].conversion.window
            ]
            if candidates:
                best = max(candidates, key=lambda r: (r.decided_at, r.decision_id))
                taken.add(best.decision_id)
                credits.append((best, ev))
        if not credits:
            return 0

        def run(conn: Connection) -> list[tuple[str, str]]:
            done = []
            for r, ev in credits:
                if conn.execute(
                    decide_exposures.update()
                    .where(d.decision_id == r.decision_id, d.converted_at.is_(None))
                    .values(converted_at=ev["ts"], conversion_id=str(ev["event_id"]))
                ).rowcount:
                    done.append((r.offer, r.persona))
            self._bump(conn, Counter(done), "conversions")
            return done

        done = self.db.write(run)
        for offer, persona in done:
            self.sampler.add(offer, persona, conversions=1)
        return len(done)

    def refresh(self, store: DeltaEventStore | None = None) -> RefreshResult:
        """Attribute the conversion events of the lake (those within the longest window),
        then take the counts of the database; the server runs it every ``interval``."""
        result = RefreshResult()
        self.flush()
        catalog = self._catalog
        if store is not None and catalog is not None and catalog.offers and store.exists():
            import pyarrow.compute as pc

            names = sorted({o.conversion.event for o in catalog.offers})
            window = max(o.conversion.window for o in catalog.offers)
            since = self.clock.now() - window - _CAP_MEMORY
            table = store.dataset().to_table(
                columns=["event_id", "customer_id", "anonymous_id", "event", "ts"],
                filter=(pc.field("event_date") >= since.date())  # prunes partitions
                & pc.field("event").isin(names)
                & (pc.field("ts") >= since),
            )
            events = table.to_pylist()
            result.events_scanned = len(events)
            result.conversions = self.attribute(events)
        result.counts = self.load_counts()
        result.offers = len(catalog.offers) if catalog is not None else 0
        return result


class Refresher:
    """Runs ``DecideService.refresh`` every ``interval`` seconds in a daemon thread (the
    server starts it with its lifespan)."""

    def __init__(
        self, service: DecideService, store: DeltaEventStore | None, interval: float
    ) -> None:
        self.service, self.store, self.interval = service, store, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="journeymap-decide", daemon=True)
        self.last_error: str | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.service.refresh(self.store)
                self.last_error = None
            except Exception as exc:  # keep refreshing; the error is in the log
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("decide: refresh failed; retrying in %.0f s", self.interval)
            self._stop.wait(self.interval)


def erase_decisions(conn: Connection, ids: Sequence[str]) -> dict[str, int]:
    """GDPR erasure of a customer's decisions (by customer, user or anonymous id) in the
    caller's transaction. The ``offer_stats`` counts are aggregates and stay."""
    found = list(ids)
    d = decide_exposures.c
    res = conn.execute(
        decide_exposures.delete().where(sa.or_(d.customer_id.in_(found), d.anonymous_id.in_(found)))
    )
    return {decide_exposures.name: int(res.rowcount or 0)}
