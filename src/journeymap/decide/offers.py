"""Offers: the banners and in-app messages the decide API chooses among (``offers.yaml``).

::

    slots: [home_hero, cart_sidebar, in_app_modal]    # optional: slots without offers yet
    offers:
      - id: spring_sale
        slots: [home_hero, cart_sidebar]
        topic: marketing                              # consent topic (channel ``banner``)
        content:
          headline: "{{ profile.first_name }}, 20 % off the spring collection"
          body: "Only until Sunday."
          cta: Shop now
          url: https://shop.example/spring?c={{ customer_id }}
          image: https://shop.example/img/spring.jpg   # optional
        eligible:
          phases: [consideration, preference]         # the profile trait ``phase``
          personas: [bargain_hunters]                 # the customer's persona
          where:                                      # conditions on traits / request context
            - {field: profile.orders, op: gte, value: 1}
            - {field: event.locale, op: eq, value: de}
        start: 2026-03-01                             # a date (local, the project time zone)
        end: 2026-03-31                               # or an ISO time; the end day is included
        conversion: {event: Order Completed, window: 7d, on_click: false}
        holdout: 0.1                                  # share measured but never shown this offer
        cap: {day: 1, week: 3}                        # exposures of this offer per customer

Content is Jinja2, rendered in the sandbox of ``orchestration.content`` with ``profile``
(traits), ``customer_id``, ``persona`` and ``context`` (the request's); ``headline``, ``body`` and
``cta`` are HTML-escaped, URLs are not. ``where`` conditions are the campaign ``Condition``:
``profile.<trait>``, or ``event.<key>`` for the request's ``context`` (``page``, ``locale`` …).

``parse_offers`` reports every problem at once with file, line, field and allowed values,
through the same machinery as the journey spec and campaigns (``model.spec.read_located``).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Final
from zoneinfo import ZoneInfo

import jinja2
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from journeymap.errors import SpecError, SpecProblem
from journeymap.model.campaigns import Condition, Duration
from journeymap.model.spec import _as_list, _field_path, _pydantic_message, read_located

_ID = r"^[a-z][a-z0-9_]*$"
DEFAULT_CONVERSION_EVENT: Final = "Order Completed"
CONTENT_FIELDS: Final = ("headline", "body", "cta", "url", "image")
_SLOT = re.compile(_ID)
_PARSER = jinja2.Environment(autoescape=False)
IdList = Annotated[list[Annotated[str, Field(pattern=_ID)]], BeforeValidator(_as_list)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class OfferContent(_Strict):
    headline: str
    body: str = ""
    cta: str
    url: str
    image: str | None = None


class Eligibility(_Strict):
    """Who may see the offer: every given rule must hold (an empty rule holds)."""

    phases: IdList = Field(default_factory=list)
    personas: list[str] = Field(default_factory=list)
    where: list[Condition] = Field(default_factory=list)


class Conversion(_Strict):
    """What counts as a conversion after an exposure: ``event`` within ``window``; with
    ``on_click`` the tracked click itself counts at once (offers whose goal is the visit)."""

    event: str = DEFAULT_CONVERSION_EVENT
    window: Duration = dt.timedelta(days=7)
    on_click: bool = False


class OfferCap(_Strict):
    day: int | None = Field(default=None, ge=1)
    week: int | None = Field(default=None, ge=1)


class Offer(_Strict):
    id: str = Field(pattern=_ID)
    name: str = ""
    slots: IdList = Field(min_length=1)
    topic: str = "marketing"
    content: OfferContent
    eligible: Eligibility = Field(default_factory=Eligibility)
    start: dt.datetime | dt.date | None = None
    end: dt.datetime | dt.date | None = None
    conversion: Conversion = Field(default_factory=Conversion)
    holdout: float = Field(default=0.0, ge=0, le=0.5)
    cap: OfferCap | None = None

    def active(self, now: dt.datetime, tz: ZoneInfo) -> bool:
        """Whether ``now`` is within the offer's dates (dates are days in ``tz``, the end day
        included; times without an offset are in ``tz`` too)."""
        start, end = _bound(self.start, tz, 0), _bound(self.end, tz, 1)
        return (start is None or now >= start) and (end is None or now < end)


def _bound(value: dt.datetime | dt.date | None, tz: ZoneInfo, days: int) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=tz)
    day = value + dt.timedelta(days=days)
    return dt.datetime.combine(day, dt.time(0), tzinfo=tz)


class OfferCatalog(_Strict):
    """The offers file: ``offers`` and the ``slots`` known without an offer."""

    version: int = 1
    slots: IdList = Field(default_factory=list)
    offers: list[Offer] = Field(default_factory=list)

    def known_slots(self) -> list[str]:
        found = dict.fromkeys(self.slots)
        for o in self.offers:
            found.update(dict.fromkeys(o.slots))
        return list(found)

    def for_slot(self, slot: str) -> list[Offer]:
        return [o for o in self.offers if slot in o.slots]

    def get(self, offer_id: str) -> Offer | None:
        return next((o for o in self.offers if o.id == offer_id), None)


class OfferError(SpecError):
    """The offers file is invalid; ``problems`` lists each with file, line and field."""

    def __init__(self, problems: Sequence[SpecProblem]) -> None:
        super().__init__(problems)
        n = len(self.problems)
        head = f"the offers file has {n} problem{'s' if n != 1 else ''}:"
        self.args = ("\n".join([head, *(f"  {p}" for p in self.problems)]),)


Loc = tuple[str | int, ...]


def _check(data: Mapping[str, Any], phases: Sequence[str] | None) -> list[tuple[Loc, str]]:
    problems: list[tuple[Loc, str]] = []
    offers = data.get("offers")
    offers = offers if isinstance(offers, list) else []
    seen: dict[Any, int] = {}
    for i, o in enumerate(offers):
        if not isinstance(o, dict):
            continue
        if "id" in o:
            if o["id"] in seen:
                problems.append(
                    (
                        ("offers", i, "id"),
                        f"duplicate offer id {o['id']!r} (also offers[{seen[o['id']]}])",
                    )
                )
            seen.setdefault(o["id"], i)
        content = o.get("content")
        if isinstance(content, dict):
            for key in CONTENT_FIELDS:
                text = content.get(key)
                if isinstance(text, str):
                    try:
                        _PARSER.parse(text)
                    except jinja2.TemplateSyntaxError as exc:
                        problems.append(
                            (
                                ("offers", i, "content", key),
                                f"template error: {exc.message} (template line {exc.lineno})",
                            )
                        )
        start, end = o.get("start"), o.get("end")
        if isinstance(start, dt.date) and isinstance(end, dt.date):
            a = start if isinstance(start, dt.datetime) else dt.datetime.combine(start, dt.time())
            b = end if isinstance(end, dt.datetime) else dt.datetime.combine(end, dt.time(23, 59))
            if (a.tzinfo is None) == (b.tzinfo is None) and b < a:
                problems.append(
                    (("offers", i, "end"), f"the end {end} is before the start {start}")
                )
        eligible = o.get("eligible")
        if phases is not None and isinstance(eligible, dict):
            listed = eligible.get("phases")
            listed = [listed] if isinstance(listed, str) else listed
            for j, p in enumerate(listed if isinstance(listed, list) else []):
                if isinstance(p, str) and p not in phases:
                    loc: Loc = ("offers", i, "eligible", "phases")
                    if isinstance(eligible.get("phases"), list):
                        loc = (*loc, j)
                    problems.append((loc, f"unknown phase {p!r}; allowed: {', '.join(phases)}"))
    return problems


def _message(err: Mapping[str, Any], loc: Sequence[str | int]) -> str:
    if loc and loc[-1] == "field" and "event.<property>" in str(err.get("msg", "")):
        return (
            f"{err.get('input')!r} must name profile.<trait> or event.<key> (the request's "
            "context: page, locale …), e.g. profile.orders"
        )
    return _pydantic_message(err, loc)


def parse_offers(
    text: str, file: str = "<offers>", *, phases: Sequence[str] | None = None
) -> OfferCatalog:
    """Parse and validate offers YAML; raise ``OfferError`` listing every problem.

    ``phases``: the journey's phase ids, when known, to check ``eligible.phases`` against.
    """
    data, located, problems = read_located(
        text,
        file,
        error=OfferError,
        not_mapping="the offers file is a YAML mapping with a list of offers, e.g. offers: [...]",
    )
    catalog: OfferCatalog | None = None
    try:
        catalog = OfferCatalog.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            loc = [p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
            # date | datetime unions: one message, not one per member
            if loc[-1:] in (["datetime"], ["date"]):
                if loc[-1] == "date":
                    continue
                loc = loc[:-1]
                msg = (
                    f"{err.get('input')!r} is not a date or time; use 2026-03-01 or "
                    "2026-03-01T08:00"
                )
            else:
                msg = _message(err, loc)
            problems.append(SpecProblem(file, located.line(loc), _field_path(loc), msg))
    for ref_loc, msg in _check(data, phases):
        problems.append(SpecProblem(file, located.line(ref_loc), _field_path(ref_loc), msg))
    if problems or catalog is None:
        problems.sort(key=lambda p: p.line or 0)
        raise OfferError(problems)
    return catalog


def load_offers(path: str | Path, *, phases: Sequence[str] | None = None) -> OfferCatalog:
    """The offers file at ``path``; a missing file is an empty catalogue (no offers yet)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        return OfferCatalog()
    except UnicodeDecodeError as exc:
        raise OfferError(
            [SpecProblem(str(p), None, "", f"not UTF-8 text ({exc.reason} at byte {exc.start})")]
        ) from None
    return parse_offers(text, str(p), phases=phases)
