"""The injected journey breaks and the tallies that become their ground truth.

Three breaks are injected; each is defined here once (rates, segment, window) and counted while
the journeys are generated, so ``truth.json`` reports both the configured rates and the rates
that actually occurred, per session, measured the way an analysis would measure them:

``mobile_size_select`` (step_exit)
    sessions reaching ``checkout_size_select``; exit = no ``checkout_address`` after it in the
    session. Exposed: device mobile, inside the window (every exposed session carries the
    property ``error="size_unavailable"``).
``tiktok_flash_bounce`` (campaign_bounce)
    sessions entered by ``ad_click``; exit (bounce) = the session has the ``ad_click`` and at most
    one ``page_view``. Exposed: campaign ``tiktok_flash``; baseline: every other campaign.
``mobile_payment_interrupted`` (process_abandon)
    sessions with a ``payment_start``; exit = no ``order_completed`` in the session. Exposed:
    device mobile paying with ``mobile_wallet`` inside the window.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from journeymap.simulate.personas import (
    PAYMENT_BREAK_WINDOW,
    SIZE_BREAK_WINDOW,
    scaled_window,
)

BreakKind = Literal["step_exit", "campaign_bounce", "process_abandon"]

SIZE_BREAK: Final = "mobile_size_select"
TIKTOK_BREAK: Final = "tiktok_flash_bounce"
PAYMENT_BREAK: Final = "mobile_payment_interrupted"


@dataclass(frozen=True, slots=True)
class BreakDef:
    """One injected break: where, for whom, when, and how strongly."""

    id: str
    kind: BreakKind
    touchpoint: str
    event: str
    campaign: str | None
    segment: dict[str, str]
    #: day offsets in the reference period (end exclusive); ``None``: the campaign's window
    window: tuple[int, int] | None
    baseline_rate: float
    injected_rate: float
    #: share of customers whose purchase plans end after the break made them leave
    churn_after: float
    description: str
    measure: str


BREAKS: Final[tuple[BreakDef, ...]] = (
    BreakDef(
        id=SIZE_BREAK,
        kind="step_exit",
        touchpoint="checkout_size_select",
        event="checkout_size_select",
        campaign=None,
        segment={"device": "mobile"},
        window=SIZE_BREAK_WINDOW,
        baseline_rate=0.08,
        injected_rate=0.70,
        churn_after=0.80,
        description=(
            "On mobile, size/colour selection in the checkout fails (property "
            'error="size_unavailable") and most customers leave the checkout there.'
        ),
        measure=(
            "sessions reaching checkout_size_select; exit = no checkout_address after it in the "
            "same session"
        ),
    ),
    BreakDef(
        id=TIKTOK_BREAK,
        kind="campaign_bounce",
        touchpoint="ad_click",
        event="ad_click",
        campaign="tiktok_flash",
        segment={"campaign": "tiktok_flash"},
        window=None,
        baseline_rate=0.30,
        injected_rate=0.85,
        churn_after=0.70,
        description=(
            "Visitors from the tiktok_flash campaign leave at once: the landing page drives "
            "them away."
        ),
        measure=(
            "sessions starting with ad_click; bounce = the session holds the ad_click and at "
            "most one page_view; baseline = ad_click sessions of every other campaign"
        ),
    ),
    BreakDef(
        id=PAYMENT_BREAK,
        kind="process_abandon",
        touchpoint="payment_start",
        event="payment_start",
        campaign=None,
        segment={"device": "mobile", "payment_method": "mobile_wallet"},
        window=PAYMENT_BREAK_WINDOW,
        baseline_rate=0.05,
        injected_rate=0.45,
        churn_after=0.60,
        description=(
            "Mobile wallet payments on mobile are interrupted after payment_start: no "
            "payment_failed, no order_completed."
        ),
        measure=(
            "sessions with a payment_start; exit = no order_completed in the same session; "
            "baseline = all other sessions with a payment_start"
        ),
    ),
)
BREAKS_BY_ID: Final = {b.id: b for b in BREAKS}
#: bit of each break in a customer's exposed / affected masks
BREAK_BITS: Final = {SIZE_BREAK: 1, TIKTOK_BREAK: 2, PAYMENT_BREAK: 4}


def break_window_days(
    b: BreakDef, days: int, campaign_window: tuple[int, int] | None
) -> tuple[int, int]:
    """The break's window as day offsets ``[start, end)`` of a period of ``days`` days."""
    ref = b.window if b.window is not None else campaign_window
    if ref is None:
        return (0, days)
    w = scaled_window(ref[0], ref[1], days)
    return (w.start_day, w.end_day)


class BreakTally:
    """Counts of one break, accumulated per chunk and merged; slots keep the hot path cheap."""

    __slots__ = (
        "affected_customers",
        "baseline_exits",
        "baseline_sessions",
        "exited_sessions",
        "exposed_customers",
        "exposed_sessions",
        "extra_exits",
        "lost_orders",
        "lost_revenue_cents",
    )

    def __init__(self) -> None:
        self.exposed_sessions = 0
        self.exited_sessions = 0
        self.baseline_sessions = 0
        self.baseline_exits = 0
        self.exposed_customers = 0
        self.affected_customers = 0
        #: sessions the break ended that would have gone on without it
        self.extra_exits = 0
        #: expected orders (and their revenue) those sessions would have produced
        self.lost_orders = 0.0
        self.lost_revenue_cents = 0.0

    def merge(self, other: BreakTally) -> None:
        """Add ``other``'s counts to this one."""
        for name in BreakTally.__slots__:
            setattr(self, name, getattr(self, name) + getattr(other, name))
