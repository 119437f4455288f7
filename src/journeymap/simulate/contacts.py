"""Touchpoints outside the web sessions: newsletter mailings, store visits, hotline calls and
survey answers.

Functions of a ``JourneyGenerator`` (see ``journey.py``), like those in ``purchase.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from journeymap.simulate.personas import (
    CES_CHECKOUT,
    CES_CHECKOUT_BROKEN,
    CSAT,
    DAY,
    HOTLINE_TOPICS,
    HOUR,
    STORES,
    S,
)

if TYPE_CHECKING:
    from journeymap.simulate.journey import JourneyGenerator

#: cumulative topic weights (sizing, delivery, payment, returns) of hotline calls
_TOPICS_RESEARCHER: Final = (0.6, 0.75, 0.85, 1.0)
_TOPICS_OTHERS: Final = (0.25, 0.6, 0.8, 1.0)


def mailings(g: JourneyGenerator) -> None:
    """Newsletter opens of a subscriber: weekly on Thursdays 10:00, three spring sale mailings."""
    if g.subscribed_at < 0:
        return
    first_thu = (3 - g.weekday0) % 7
    spring = g.win_us["spring_sale"]
    spring_start = (spring[0] - g.start_us) // DAY
    for day in range(first_thu, g.days, 7):
        _mail(g, day, 10.0, "weekly_newsletter")
    for day in (spring_start, spring_start + 9, spring_start + 18):
        if day < g.days:
            _mail(g, day, 9.0, "spring_sale")


def _mail(g: JourneyGenerator, day: int, hour: float, campaign: str) -> None:
    sent = g.local_time(day, hour)
    if sent < g.subscribed_at or g.u() >= g.p_open:
        return
    t = sent + int(g.expo(5.0 * 3600)) * S
    g.emit(t, "newsletter_open", "newsletter", None, "{}", campaign)


def store_visit(g: JourneyGenerator, t: int) -> int:
    """A visit to a store (no device); returns its time."""
    store = STORES[int(g.u() * len(STORES))]
    g.emit(t, "store_visit", "store", None, f'{{"store_id":"{store}"}}')
    if g.u() < 0.15:
        survey(g, t + g.between(2, 30) * HOUR, "csat", "store", None, False)
    return t


def hotline_call(g: JourneyGenerator, t: int) -> None:
    """A question to the hotline before buying (researchers mostly ask about sizing)."""
    cum = _TOPICS_RESEARCHER if g.p.name == "researcher" else _TOPICS_OTHERS
    topic = HOTLINE_TOPICS[g.pick(cum)]
    dur = int(g.expo(240)) + 30
    g.emit(t, "hotline_call", "hotline", None, f'{{"topic":"{topic}","duration_s":{dur}}}')
    if g.u() < 0.3:
        survey(g, t + g.between(1, 4) * HOUR, "csat", "hotline", None, False)


def survey(
    g: JourneyGenerator, t: int, kind: str, touchpoint: str, order_id: str | None, bad: bool
) -> None:
    """A survey answer about ``touchpoint`` (``bad``: the customer met a problem there)."""
    if kind == "ces":
        mean, sd = CES_CHECKOUT_BROKEN if bad else CES_CHECKOUT
        score = g.score(mean, sd, 1, 7)
    elif kind == "csat":
        mean, sd = CSAT[touchpoint]
        score = g.score(mean - (0.9 if bad else 0.0), sd, 1, 5)
    else:
        score = g.score(g.p.nps_mean, 1.8, 0, 10)
    g.emit(
        t,
        "survey_response",
        "email",
        None,
        f'{{"survey":"{kind}","touchpoint":"{touchpoint}"}}',
        order_id=order_id,
        score=score,
    )
