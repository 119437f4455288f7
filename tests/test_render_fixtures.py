"""A deterministic view model of the demo shop, used by the render tests, golden images and
bench/bench_render.py.

The numbers are hand-set to look like a 20,000-customer demo run (the simulator's personas,
its three injected breaks, survey-backed feelings in four of six phases) so that every lane
and figure is exercised before the analyses that produce them land. Everything goes through
the real builders in ``journeymap.render.build`` with fabricated analysis results.
"""

from __future__ import annotations

import datetime as dt
import math
import random
from functools import lru_cache
from pathlib import Path

from journeymap.analytics.funnels import FunnelResult, FunnelStep, ReachResult, TouchpointReach
from journeymap.model.spec import JourneySpec, load_spec
from journeymap.render.build import (
    ActiveCampaign,
    DetectedBreak,
    PathTransition,
    Period,
    PersonaProfile,
    PhaseExperience,
    build_attribution,
    build_break,
    build_funnel,
    build_graph,
    build_journey_map,
    build_personas,
    build_report,
    build_retention,
    build_sankey,
)
from journeymap.render.i18n import Lang
from journeymap.render.views import (
    Footer,
    JourneyMapData,
    KpiCard,
    ReportData,
    SankeyData,
)

DEMO_SPEC = Path(__file__).parents[1] / "src" / "journeymap" / "simulate" / "demo_journey.yaml"
PERIOD = Period(
    dt.date(2026, 4, 1),
    dt.date(2026, 6, 30),
    dt.date(2026, 1, 1),
    dt.date(2026, 3, 31),
    label="",
)
PHASES = ("awareness", "consideration", "preference", "purchase", "after_sale", "loyalty")
CUSTOMERS = (18_420, 12_960, 6_870, 3_960, 2_310, 980)
PREVIOUS = (17_650, 12_240, 6_420, 3_880, 2_650, 1_020)
ENTERED = 20_000


@lru_cache(maxsize=1)
def spec() -> JourneySpec:
    return load_spec(DEMO_SPEC)


def _funnel(counts: tuple[int, ...], entered: int, labels: tuple[str, ...]) -> FunnelResult:
    steps = []
    for k, (phase, n) in enumerate(zip(PHASES, counts, strict=True)):
        prev = counts[k - 1] if k else None
        both = round(n * 0.94) if k else n
        steps.append(
            FunnelStep(
                index=k + 1,
                step=phase,
                label=labels[k],
                customers=n,
                from_previous=both,
                skipped_previous=n - both,
                conversion_from_previous=both / prev if prev else None,
                conversion_from_start=n / entered,
                dropped=(prev - both) if prev else 0,
                median_seconds_from_previous=3600.0 * (k + 1) if k else None,
                median_seconds_from_start=7200.0 * k,
            )
        )
    return FunnelResult("phase", steps, entered, True, None)


def funnels(lang: Lang = "en") -> tuple[FunnelResult, FunnelResult]:
    s = spec()
    labels = tuple(p.label_in(lang) for p in s.phases)
    return _funnel(CUSTOMERS, ENTERED, labels), _funnel(PREVIOUS, 19_100, labels)


def reach(lang: Lang = "en") -> ReachResult:
    s = spec()
    rng = random.Random(11)
    by_phase = dict(zip(PHASES, CUSTOMERS, strict=True))
    out = []
    for tp in s.touchpoints:
        base = by_phase[tp.phase]
        customers = int(base * rng.uniform(0.04, 0.75))
        out.append(
            TouchpointReach(
                touchpoint=tp.id,
                label=tp.label_in(lang),
                phase=tp.phase,
                channel=tp.channel,
                customers=customers,
                events=customers * rng.randint(1, 4),
                share_of_customers=customers / ENTERED,
                converted_customers=int(customers * 0.11),
                conversion_rate=0.11,
            )
        )
    return ReachResult(ENTERED, out)


def experience() -> list[PhaseExperience]:
    # surveys cover four phases; preference and loyalty fall back to the spec's expectation
    return [
        PhaseExperience("awareness", 0.9, 412, previous_score=0.7),
        PhaseExperience("consideration", 0.2, 388, previous_score=0.4),
        PhaseExperience("preference", 0.4, 12),  # too few answers: drawn from the spec
        PhaseExperience("purchase", -1.3, 845, previous_score=-0.5),
        PhaseExperience("after_sale", 0.5, 1204, previous_score=0.3),
    ]


def breaks(lang: Lang = "en") -> list[DetectedBreak]:
    de = lang == "de"
    start = PERIOD.start
    days = [start + dt.timedelta(days=7 * k) for k in range(13)]

    def series(base: float, peak: float, k0: int, k1: int) -> tuple[tuple[dt.date, float], ...]:
        return tuple(
            (d, round(peak if k0 <= k < k1 else base + 0.01 * math.sin(k), 4))
            for k, d in enumerate(days)
        )

    return [
        DetectedBreak(
            id="mobile_size_select",
            phase="purchase",
            touchpoint="checkout_size_select",
            label="Größenauswahl am Handy" if de else "Size selection on mobile",
            rate=0.41,
            baseline_rate=0.14,
            affected_customers=1_184,
            lost_revenue=61_300.0,
            p_value=1e-9,
            series=series(0.14, 0.41, 4, 8),
            window=(days[4], days[8]),
        ),
        DetectedBreak(
            id="mobile_payment_interrupted",
            phase="purchase",
            touchpoint="payment",
            label="Mobile Wallet bricht ab" if de else "Mobile wallet payment interrupted",
            rate=0.27,
            baseline_rate=0.09,
            affected_customers=402,
            lost_revenue=28_950.0,
            p_value=2e-6,
            series=series(0.09, 0.27, 8, 11),
            window=(days[8], days[11]),
        ),
        DetectedBreak(
            id="tiktok_flash_bounce",
            phase="awareness",
            touchpoint="tiktok_flash_ad",
            label="TikTok-Flash-Anzeige: Absprung" if de else "TikTok flash ad bounces",
            rate=0.78,
            baseline_rate=0.42,
            affected_customers=2_935,
            lost_revenue=None,
            p_value=0.004,
            series=series(0.42, 0.78, 2, 5),
            window=(days[2], days[5]),
        ),
    ]


def campaigns(lang: Lang = "en") -> list[ActiveCampaign]:
    de = lang == "de"
    return [
        ActiveCampaign("preference", "Warenkorb-Erinnerung" if de else "Cart reminder", 3_410, 286),
        ActiveCampaign("after_sale", "Bewertungsanfrage" if de else "Review request", 1_980, None),
    ]


def profiles() -> list[PersonaProfile]:
    return [
        PersonaProfile(
            "deal_hunter",
            5_620,
            0.281,
            0.094,
            ("newsletter", "search_ads"),
            "19–22",
            ("newsletter", "product_page", "cart", "order"),
            {"awareness": 0.9, "consideration": 0.4, "purchase": -0.6, "after_sale": 0.2},
        ),
        PersonaProfile(
            "researcher",
            4_310,
            0.216,
            0.131,
            ("search", "reviews"),
            "10–14",
            ("organic_search", "product_reviews", "size_guide", "order"),
            {"awareness": 0.4, "consideration": 0.8, "purchase": -0.2, "after_sale": 0.6},
        ),
        PersonaProfile(
            "loyal_repeat",
            3_980,
            0.199,
            0.284,
            ("newsletter", "push", "direct"),
            "07–09",
            ("newsletter", "cart", "order", "loyalty_program"),
            {"awareness": 1.1, "consideration": 0.9, "purchase": 0.5, "after_sale": 1.2},
        ),
        PersonaProfile(
            "impulsive_mobile",
            6_090,
            0.304,
            0.061,
            ("social_ads",),
            "22–01",
            ("social_ad", "product_page", "checkout"),
            {"awareness": 1.3, "consideration": 0.2, "purchase": -1.6, "after_sale": -0.2},
        ),
    ]


def kpis(lang: Lang = "en") -> dict[str, KpiCard]:
    de = lang == "de"
    return {
        "purchase": KpiCard(
            "Bestellrate" if de else "Order rate", 0.1155, "percent", "data", previous=0.1387
        ),
        "after_sale": KpiCard("CSAT", 3.7, "score5", "data", previous=3.6, note="n=1,204"),
        "loyalty": KpiCard("NPS", 31, "nps", "data", previous=27, note="n=1,650"),
    }


def journey_map(lang: Lang = "en", persona: str | None = None) -> JourneyMapData:
    s = spec()
    current, previous = funnels(lang)
    profile = next((p for p in profiles() if p.id == persona), None)
    if profile is not None:  # the persona's own funnel: its share of the customers
        labels = tuple(p.label_in(lang) for p in s.phases)
        rate = profile.conversion_rate or 0.1
        counts = tuple(
            round(n * profile.share * (1 + (rate - 0.115) * k)) for k, n in enumerate(CUSTOMERS)
        )
        current = _funnel(counts, round(ENTERED * profile.share), labels)
        previous = _funnel(
            tuple(round(n * profile.share) for n in PREVIOUS), round(19_100 * profile.share), labels
        )
    return build_journey_map(
        s,
        current,
        reach(lang),
        lang=lang,
        previous=previous,
        period=PERIOD,
        spec_file=DEMO_SPEC,
        persona=persona,
        persona_profile=profile,
        experience=experience(),
        breaks=breaks(lang),
        campaigns=campaigns(lang),
        kpis=kpis(lang),
        moments_of_truth=("purchase",),
        survey_n=2_861,
    )


def transitions() -> list[PathTransition]:
    """Paths over six steps through nine page types, with exits after every step."""
    rng = random.Random(5)
    pages = (
        "landing",
        "search",
        "product",
        "size_guide",
        "cart",
        "checkout",
        "payment",
        "order",
        "support",
    )
    ranks = {p: i for i, p in enumerate(pages)}
    first = {"landing": 4200, "search": 3100, "product": 2600, "support": 400}
    out = []
    current = dict(first)
    for step in range(1, 6):
        nxt: dict[str, int] = {}
        for node, n in sorted(current.items()):
            exit_share = 0.18 + 0.04 * step + (0.12 if node in ("payment", "size_guide") else 0)
            leave = int(n * exit_share)
            out.append(PathTransition(step, node, None, leave))
            rest = n - leave
            # mostly forward along the shop, sometimes back
            targets = [p for p in pages if ranks[p] > ranks[node]][:3] or ["support"]
            if node not in ("landing", "search"):
                targets.append("search")
            weights = [rng.uniform(0.5, 1.5) / (1 + k) for k in range(len(targets))]
            total = sum(weights)
            for tgt, w in zip(targets, weights, strict=True):
                cnt = int(rest * w / total)
                if cnt:
                    out.append(PathTransition(step, node, tgt, cnt))
                    nxt[tgt] = nxt.get(tgt, 0) + cnt
        current = nxt
    return out


def sankey(lang: Lang = "en") -> SankeyData:
    de = lang == "de"
    labels = {
        "landing": "Landingpage" if de else "Landing page",
        "search": "Suche" if de else "Search",
        "product": "Produktseite" if de else "Product page",
        "size_guide": "Größenberater" if de else "Size guide",
        "cart": "Warenkorb" if de else "Cart",
        "checkout": "Kasse" if de else "Checkout",
        "payment": "Zahlung" if de else "Payment",
        "order": "Bestellung" if de else "Order",
        "support": "Kundenservice" if de else "Support",
    }
    return build_sankey(transitions(), lang=lang, labels=labels, footer=_footer())


def _footer() -> Footer:
    return Footer(
        spec_file="demo_journey.yaml",
        period_start=PERIOD.start,
        period_end=PERIOD.end,
        customers=ENTERED,
    )


def report(lang: Lang = "en") -> ReportData:
    s = spec()
    current, previous = funnels(lang)
    maps = [journey_map(lang)] + [journey_map(lang, p.id) for p in s.personas]
    credits = {
        "First touch": {
            "social_ads": 640,
            "search_ads": 520,
            "search": 410,
            "newsletter": 150,
            "referral": 180,
            "direct": 100,
        },
        "Last touch": {
            "social_ads": 260,
            "search_ads": 390,
            "search": 300,
            "newsletter": 520,
            "referral": 120,
            "direct": 410,
        },
        "Markov": {
            "social_ads": 420,
            "search_ads": 470,
            "search": 380,
            "newsletter": 360,
            "referral": 160,
            "direct": 210,
        },
        "Shapley": {
            "social_ads": 455,
            "search_ads": 440,
            "search": 365,
            "newsletter": 330,
            "referral": 170,
            "direct": 240,
        },
    }
    cohorts = []
    rng = random.Random(3)
    for k in range(8):
        label = (PERIOD.start + dt.timedelta(weeks=k)).isoformat()
        size = 1_800 + rng.randint(-250, 250)
        row: list[float | None] = [1.0] + [
            round(0.42 * math.exp(-0.28 * j) * rng.uniform(0.9, 1.1), 4) for j in range(1, 8)
        ]
        row = [v if i < 8 - k else None for i, v in enumerate(row)]
        cohorts.append((label, size, row))
    edges: dict[tuple[str, str], int] = {}
    rng = random.Random(9)
    tps = [t.id for t in s.touchpoints]
    phase_of = {t.id: s.phase_ids().index(t.phase) for t in s.touchpoints}
    for a in tps:
        for b in tps:
            gap = phase_of[b] - phase_of[a]
            if a != b and 0 <= gap <= 1 and rng.random() < 0.35:
                edges[(a, b)] = rng.randint(40, 900)
    edges[("payment", "payment")] = 310
    return build_report(
        maps,
        sankey=sankey(lang),
        funnel=build_funnel(
            current, lang=lang, previous=previous, breaks=("purchase",), footer=_footer()
        ),
        attribution=build_attribution(credits, lang=lang, conversions=2_310, footer=_footer()),
        personas=build_personas(s, profiles(), lang),
        breaks=tuple(build_break(b, s, lang) for b in breaks(lang)),
        retention=build_retention(cohorts, lang=lang, footer=_footer()),
        graph=build_graph(s, edges, lang=lang, footer=_footer()),
    )


def test_fixture_is_deterministic() -> None:
    assert journey_map("de") == journey_map("de")
    assert sankey() == sankey()
