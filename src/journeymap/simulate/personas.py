"""The shop the simulator plays: personas, catalogue, campaigns and their time windows.

Everything here is data. The four latent personas differ in the features a clustering sees
(entry channel mix, device share, active hours in Europe/Berlin, order frequency, discount use,
category interests); each customer draws individual noise around its persona (see
``journey.py``), so the groups overlap realistically but stay recoverable.

Time windows (campaigns, injected breaks) are given as day offsets within the default period
(181 days from 1 January 2026) and scaled to the simulated period, so every window falls inside
whatever ``start`` and ``days`` a caller picks; with the defaults they land on the calendar dates
named in the comments.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Final, Literal

import numpy as np

PersonaName = Literal["deal_hunter", "researcher", "loyal_repeat", "impulsive_mobile"]
Device = Literal["mobile", "desktop", "tablet"]

#: Entry channels a session can start from (the first event of a web session says which).
ENTRY_CHANNELS: Final = (
    "search_ads",
    "social_ads",
    "search",
    "referral",
    "reviews",
    "direct",
    "newsletter",
    "push",
    "store",
)
DEVICES: Final[tuple[Device, ...]] = ("mobile", "desktop", "tablet")
CATEGORIES: Final = (
    "accessories",
    "sale",
    "jackets",
    "shoes",
    "dresses",
    "shirts",
    "knitwear",
    "jeans",
    "sportswear",
    "trends",
)
#: Price range in cents of a category's products (list prices, EUR).
PRICE_RANGES: Final[dict[str, tuple[int, int]]] = {
    "accessories": (1_500, 6_000),
    "sale": (1_000, 5_000),
    "jackets": (12_000, 35_000),
    "shoes": (7_000, 22_000),
    "dresses": (4_000, 15_000),
    "shirts": (2_500, 8_000),
    "knitwear": (4_500, 13_000),
    "jeans": (5_000, 13_000),
    "sportswear": (2_500, 11_000),
    "trends": (2_000, 9_000),
}
PRODUCTS_PER_CATEGORY: Final = 40
SEARCH_QUERIES: Final[dict[str, tuple[str, ...]]] = {
    "accessories": ("belt", "scarf", "leather bag", "sunglasses", "cap"),
    "sale": ("sale", "outlet", "discount", "last sizes"),
    "jackets": ("rain jacket", "down jacket", "parka", "waterproof jacket", "leather jacket"),
    "shoes": ("sneakers", "boots", "running shoes", "loafers", "waterproof boots"),
    "dresses": ("summer dress", "maxi dress", "midi dress", "linen dress"),
    "shirts": ("white shirt", "linen shirt", "oversize shirt", "polo"),
    "knitwear": ("cardigan", "cashmere", "wool sweater", "turtleneck"),
    "jeans": ("straight jeans", "wide leg jeans", "black jeans", "mom jeans"),
    "sportswear": ("leggings", "hoodie", "track pants", "sports bra"),
    "trends": ("oversize", "cargo pants", "crop top", "y2k", "tiktok trend"),
}
CLOTHING_SIZES: Final = ("XS", "S", "M", "M", "L", "L", "XL", "XXL")
SHOE_SIZES: Final = ("37", "38", "39", "40", "41", "42", "43", "44", "45")
COLOURS: Final = ("black", "white", "navy", "beige", "grey", "olive", "red", "blue")
PAYMENT_METHODS: Final = ("card", "paypal", "mobile_wallet", "invoice")
PAYMENT_FAILURE_REASONS: Final = ("card_declined", "timeout", "3ds_failed", "insufficient_funds")
HOTLINE_TOPICS: Final = ("sizing", "delivery", "payment", "returns")
RETURN_REASONS: Final = ("size", "fit", "quality", "changed_mind", "colour")
STORES: Final = ("berlin-mitte", "hamburg-altona", "munich-center")
#: Time units: events carry integer microseconds since the epoch (UTC).
S: Final = 1_000_000
MIN: Final = 60 * S
HOUR: Final = 3600 * S
DAY: Final = 86400 * S
#: Share of web sessions tracked by the app SDK, whose timestamps carry milliseconds.
MS_SESSION_SHARE: Final = 0.25


@dataclass(frozen=True, slots=True)
class PersonaParams:
    """Behaviour of one latent persona; ``journey.py`` draws each customer around it."""

    name: PersonaName
    share: float
    description: str
    #: weights over ``ENTRY_CHANNELS``
    channels: tuple[float, ...]
    #: weights over ``DEVICES``
    devices: tuple[float, ...]
    #: mean local hour of activity, its spread, and the share of sessions at any hour 8–23
    hour_mean: float
    hour_sd: float
    hour_uniform: float
    #: weights over ``CATEGORIES``
    categories: tuple[float, ...]
    #: sessions per customer: 1 + Poisson(sessions_extra); days between sessions: Exp(mean)
    sessions_extra: float
    gap_days: float
    #: active from the start of the period (existing customers) instead of acquired during it
    existing: float
    #: product views per browsing session: 1 + Poisson(views_extra); seconds between clicks
    views_extra: float
    click_seconds: float
    p_category_page: float
    p_price_sort: float
    p_search: float
    p_review_read: float
    p_size_guide: float
    p_wishlist: float
    #: share of customers who intend to buy in the period, and their planned orders (min, max)
    p_buyer: float
    orders: tuple[int, int]
    #: probability that an eligible session of a buyer is a purchase session
    p_purchase_session: float
    #: a purchase needs at least this many earlier sessions and days since the first one
    min_sessions_before_buy: int
    min_days_before_buy: float
    #: non-purchase sessions: add to cart and leave / start a checkout and probably leave
    p_cart_abandon: float
    p_tentative_checkout: float
    #: items per order (min, max), share of orders with a discount code
    items: tuple[int, int]
    p_discount: float
    #: payment method weights (``PAYMENT_METHODS``) on mobile and on other devices
    pay_mobile: tuple[float, ...]
    pay_other: tuple[float, ...]
    #: newsletter: subscribed at the start / signs up in a session; opens per mailing
    p_subscribed: float
    p_signup: float
    p_open: float
    p_push_optin: float
    p_hotline: float
    p_social_mention: float
    #: after-sale behaviour per order
    p_return: float
    p_review: float
    p_loyalty_signup: float
    p_referral_sent: float
    #: mean NPS answer (0–10)
    nps_mean: float


PERSONAS: Final[tuple[PersonaParams, ...]] = (
    PersonaParams(
        name="deal_hunter",
        share=0.30,
        description=(
            "Comes from the newsletter and search ads, sorts by price, uses discount codes on "
            "most orders; evenings, desktop and mobile; accessories and sale items, cheap "
            "baskets."
        ),
        #          s_ads soc_ads search ref  reviews direct news push store
        channels=(0.26, 0.04, 0.16, 0.04, 0.02, 0.10, 0.36, 0.01, 0.01),
        devices=(0.45, 0.50, 0.05),
        hour_mean=20.5,
        hour_sd=1.4,
        hour_uniform=0.22,
        #           acc  sale jack shoe dres shir knit jean sport trend
        categories=(0.34, 0.34, 0.02, 0.04, 0.06, 0.06, 0.04, 0.05, 0.03, 0.02),
        sessions_extra=5.0,
        gap_days=8.0,
        existing=0.25,
        views_extra=3.0,
        click_seconds=30.0,
        p_category_page=0.45,
        p_price_sort=0.85,
        p_search=0.35,
        p_review_read=0.05,
        p_size_guide=0.04,
        p_wishlist=0.15,
        p_buyer=0.36,
        orders=(1, 3),
        p_purchase_session=0.35,
        min_sessions_before_buy=1,
        min_days_before_buy=0.0,
        p_cart_abandon=0.18,
        p_tentative_checkout=0.04,
        items=(1, 2),
        p_discount=0.82,
        pay_mobile=(0.25, 0.45, 0.15, 0.15),
        pay_other=(0.30, 0.45, 0.00, 0.25),
        p_subscribed=0.35,
        p_signup=0.75,
        p_open=0.45,
        p_push_optin=0.05,
        p_hotline=0.04,
        p_social_mention=0.03,
        p_return=0.14,
        p_review=0.05,
        p_loyalty_signup=0.10,
        p_referral_sent=0.04,
        nps_mean=6.8,
    ),
    PersonaParams(
        name="researcher",
        share=0.25,
        description=(
            "Searches organically and reads review sites, views many products, reviews and size "
            "guides, calls the hotline; considers for weeks; desktop, daytime; jackets and "
            "shoes, few but big orders."
        ),
        channels=(0.06, 0.01, 0.44, 0.06, 0.26, 0.10, 0.03, 0.00, 0.04),
        devices=(0.12, 0.78, 0.10),
        hour_mean=13.0,
        hour_sd=2.2,
        hour_uniform=0.2,
        categories=(0.03, 0.02, 0.38, 0.33, 0.04, 0.05, 0.08, 0.04, 0.02, 0.01),
        sessions_extra=5.0,
        gap_days=5.0,
        existing=0.10,
        views_extra=4.0,
        click_seconds=55.0,
        p_category_page=0.30,
        p_price_sort=0.05,
        p_search=0.25,
        p_review_read=0.45,
        p_size_guide=0.30,
        p_wishlist=0.10,
        p_buyer=0.34,
        orders=(1, 2),
        p_purchase_session=0.45,
        min_sessions_before_buy=3,
        min_days_before_buy=12.0,
        p_cart_abandon=0.10,
        p_tentative_checkout=0.03,
        items=(1, 2),
        p_discount=0.08,
        pay_mobile=(0.35, 0.35, 0.15, 0.15),
        pay_other=(0.40, 0.30, 0.00, 0.30),
        p_subscribed=0.05,
        p_signup=0.12,
        p_open=0.15,
        p_push_optin=0.02,
        p_hotline=0.35,
        p_social_mention=0.02,
        p_return=0.08,
        p_review=0.15,
        p_loyalty_signup=0.08,
        p_referral_sent=0.03,
        nps_mean=7.6,
    ),
    PersonaParams(
        name="loyal_repeat",
        share=0.25,
        description=(
            "Existing customers who come direct, by newsletter or push; order again and again, "
            "open and click newsletters, join the loyalty programme, refer friends, write "
            "reviews; mornings, mixed devices."
        ),
        channels=(0.03, 0.01, 0.06, 0.02, 0.01, 0.38, 0.32, 0.12, 0.05),
        devices=(0.42, 0.38, 0.20),
        hour_mean=8.0,
        hour_sd=1.4,
        hour_uniform=0.22,
        categories=(0.08, 0.04, 0.08, 0.10, 0.18, 0.18, 0.14, 0.14, 0.03, 0.03),
        sessions_extra=8.0,
        gap_days=16.0,
        existing=0.90,
        views_extra=1.5,
        click_seconds=28.0,
        p_category_page=0.35,
        p_price_sort=0.08,
        p_search=0.12,
        p_review_read=0.08,
        p_size_guide=0.05,
        p_wishlist=0.12,
        p_buyer=0.33,
        orders=(2, 6),
        p_purchase_session=0.50,
        min_sessions_before_buy=0,
        min_days_before_buy=0.0,
        p_cart_abandon=0.08,
        p_tentative_checkout=0.03,
        items=(1, 2),
        p_discount=0.12,
        pay_mobile=(0.30, 0.35, 0.20, 0.15),
        pay_other=(0.35, 0.35, 0.00, 0.30),
        p_subscribed=0.80,
        p_signup=0.50,
        p_open=0.45,
        p_push_optin=0.55,
        p_hotline=0.06,
        p_social_mention=0.08,
        p_return=0.09,
        p_review=0.30,
        p_loyalty_signup=0.60,
        p_referral_sent=0.25,
        nps_mean=8.8,
    ),
    PersonaParams(
        name="impulsive_mobile",
        share=0.20,
        description=(
            "Arrives from Instagram and TikTok ads on the phone late at night, short sessions, "
            "adds to cart and checks out quickly, pays with a mobile wallet; sportswear and "
            "trends."
        ),
        channels=(0.02, 0.66, 0.06, 0.04, 0.00, 0.12, 0.02, 0.08, 0.00),
        devices=(1.0, 0.0, 0.0),
        hour_mean=23.3,
        hour_sd=1.3,
        hour_uniform=0.2,
        categories=(0.05, 0.03, 0.02, 0.06, 0.05, 0.03, 0.01, 0.05, 0.35, 0.35),
        sessions_extra=3.5,
        gap_days=6.0,
        existing=0.10,
        views_extra=1.0,
        click_seconds=14.0,
        p_category_page=0.15,
        p_price_sort=0.05,
        p_search=0.05,
        p_review_read=0.02,
        p_size_guide=0.03,
        p_wishlist=0.05,
        p_buyer=0.27,
        orders=(1, 2),
        p_purchase_session=0.60,
        min_sessions_before_buy=0,
        min_days_before_buy=0.0,
        p_cart_abandon=0.25,
        p_tentative_checkout=0.06,
        items=(1, 2),
        p_discount=0.10,
        pay_mobile=(0.12, 0.13, 0.72, 0.03),
        pay_other=(0.40, 0.40, 0.00, 0.20),
        p_subscribed=0.02,
        p_signup=0.08,
        p_open=0.10,
        p_push_optin=0.45,
        p_hotline=0.02,
        p_social_mention=0.35,
        p_return=0.22,
        p_review=0.04,
        p_loyalty_signup=0.05,
        p_referral_sent=0.06,
        nps_mean=6.4,
    ),
)
PERSONA_NAMES: Final[tuple[PersonaName, ...]] = tuple(p.name for p in PERSONAS)

#: Discount codes: deal hunters' everyday code, the spring sale code, others' codes.
DISCOUNTS: Final[dict[str, int]] = {
    "DEAL10": 10,
    "NEWS15": 15,
    "WELCOME10": 10,
    "SPRING20": 20,
    "LOYAL5": 5,
}

# Survey answers: (mean, spread) per rated touchpoint. CES 1–7 (7 = very easy),
# CSAT 1–5, NPS 0–10 (mean per persona, above).
CES_CHECKOUT: Final = (5.7, 1.0)
#: CES of a mobile checkout in a break window (size error seen / wallet payment interrupted)
CES_CHECKOUT_BROKEN: Final = (3.2, 1.2)
CSAT: Final[dict[str, tuple[float, float]]] = {
    "delivery": (3.5, 1.0),
    "hotline": (3.0, 1.1),
    "support": (3.2, 1.1),
    "store": (4.4, 0.7),
    "website": (4.1, 0.8),
}

# --- catalogue ----------------------------------------------------------------------------


class Catalogue:
    """Products per category (id, price in cents), the same for every chunk of a run."""

    def __init__(self, seed: int) -> None:
        rng = np.random.default_rng([seed, 0, 0])
        self.products: dict[str, list[tuple[str, int]]] = {}
        for cat in CATEGORIES:
            lo, hi = PRICE_RANGES[cat]
            prices = rng.integers(lo // 100, hi // 100, size=PRODUCTS_PER_CATEGORY) * 100 - 5
            self.products[cat] = [
                (f"{cat[:3]}-{i:03d}", int(p)) for i, p in enumerate(prices.tolist())
            ]


# --- time windows --------------------------------------------------------------------------

#: The period the day offsets below were chosen for.
REFERENCE_DAYS: Final = 181


@dataclass(frozen=True, slots=True)
class Window:
    """A half-open range of day offsets ``[start_day, end_day)`` inside the period."""

    start_day: int
    end_day: int


def scaled_window(start_day: int, end_day: int, days: int) -> Window:
    """The window ``[start_day, end_day)`` of the reference period scaled to ``days`` days."""
    s = min(days - 1, round(start_day * days / REFERENCE_DAYS))
    e = max(s + 1, min(days, round(end_day * days / REFERENCE_DAYS)))
    return Window(s, e)


@dataclass(frozen=True, slots=True)
class CampaignDef:
    """A marketing campaign: id, channel, platform and the days it runs."""

    id: str
    channel: str
    platform: str
    description: str
    #: day offsets in the reference period (end exclusive); ``None`` = the whole period
    window: tuple[int, int] | None
    weekends_only: bool = False


CAMPAIGNS: Final[tuple[CampaignDef, ...]] = (
    CampaignDef("brand_search", "search_ads", "google", "brand keywords, always on", None),
    CampaignDef("insta_trends", "social_ads", "instagram", "always-on trend ads", None),
    # 2026-05-15 .. 2026-06-30
    CampaignDef("insta_summer", "social_ads", "instagram", "summer collection", (134, 181)),
    # 2026-04-13 .. 2026-05-03: the landing page drives visitors away (break 2)
    CampaignDef("tiktok_flash", "social_ads", "tiktok", "flash sale on TikTok", (102, 123)),
    CampaignDef("weekly_newsletter", "newsletter", "email", "weekly newsletter (Thu)", None),
    # 2026-03-01 .. 2026-03-31
    CampaignDef("spring_sale", "newsletter", "email", "spring sale mailings, SPRING20", (59, 90)),
    CampaignDef("push_weekend", "push", "app", "weekend deals push", None, weekends_only=True),
)

#: Break windows in the reference period (end exclusive).
#: 2026-03-09 .. 2026-03-22: mobile size/colour selection fails in checkout
SIZE_BREAK_WINDOW: Final = (67, 81)
#: 2026-05-13 .. 2026-06-30: mobile wallet payments are interrupted
PAYMENT_BREAK_WINDOW: Final = (132, 181)


def utc_offsets_seconds(start: dt.date, days: int, tz: dt.tzinfo) -> list[int]:
    """UTC offset (seconds) of the shop's local time at noon of each day of the period."""
    out = []
    for d in range(days + 30):  # after-sale events may run past the end; they are dropped
        noon = dt.datetime.combine(start + dt.timedelta(days=d), dt.time(12), tzinfo=tz)
        off = noon.utcoffset()
        out.append(int(off.total_seconds()) if off is not None else 0)
    return out
