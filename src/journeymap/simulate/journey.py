"""The hot path of the simulator: one customer's journey, event by event.

``JourneyGenerator`` plays the customers of one chunk. It draws from buffered streams of
uniforms and normals of one NumPy ``Generator`` (seeded from the run seed and the chunk index,
so chunks are independent and reproducible), keeps a customer's events as tuples, sorts them by
``(ts, emission order)`` and numbers them, so that ordering by ``(ts, event_id)`` always gives
the logical order even where timestamps tie.

Times are integer microseconds since the epoch (UTC). A session's clicks are at most 25 minutes
apart and sessions at least an hour apart, so a 30-minute inactivity rule recovers them.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Callable, Iterator, Sequence
from itertools import accumulate
from typing import Final

import numpy as np

from journeymap.simulate.breaks import (
    BREAK_BITS,
    BREAKS_BY_ID,
    TIKTOK_BREAK,
    BreakTally,
)
from journeymap.simulate.contacts import hotline_call, mailings, store_visit
from journeymap.simulate.personas import (
    CATEGORIES,
    CLOTHING_SIZES,
    COLOURS,
    DAY,
    DEVICES,
    ENTRY_CHANNELS,
    HOUR,
    MIN,
    MS_SESSION_SHARE,
    PERSONAS,
    PRICE_RANGES,
    SEARCH_QUERIES,
    SHOE_SIZES,
    Catalogue,
    PersonaParams,
    S,
)
from journeymap.simulate.purchase import checkout

_STREAM_BLOCK: Final = 1 << 16
_MAX_CLICK_GAP: Final = 25 * MIN

#: One event before numbering: ts, seq, event, channel, campaign, device, anonymous_id,
#: order_id, product_id, category, score, revenue (cents), properties (JSON text).
Row = tuple[
    int,
    int,
    str,
    str,
    str | None,
    str | None,
    str | None,
    str | None,
    str | None,
    str | None,
    int | None,
    int | None,
    str,
]
#: A line of a cart: product_id, category, price (cents), size, colour.
Item = tuple[str, str, int, str, str]

#: P(order | a session from an ad did not bounce), by intent (browse, tentative, planned)
_P_ORDER_AFTER_LANDING: Final = (0.0, 0.30, 0.80)
_TIKTOK: Final = BREAKS_BY_ID[TIKTOK_BREAK]
#: share of customers whose active hours ignore their persona (realistic overlap)
_OFF_PERSONA_HOURS: Final = 0.12


def _stream(draw: Callable[[int], np.ndarray]) -> Callable[[], float]:
    def gen() -> Iterator[float]:
        while True:
            yield from draw(_STREAM_BLOCK).tolist()

    return gen().__next__


def _cum(weights: Sequence[float]) -> list[float]:
    return list(accumulate(weights))


class ChunkStats:
    """What a chunk produced besides the rows: totals, per persona and per break."""

    def __init__(self) -> None:
        self.orders = 0
        self.revenue_cents = 0
        self.buyers = 0
        self.persona_customers = [0] * len(PERSONAS)
        self.persona_buyers = [0] * len(PERSONAS)
        self.persona_orders = [0] * len(PERSONAS)
        self.persona_revenue = [0] * len(PERSONAS)
        self.breaks = {b: BreakTally() for b in BREAKS_BY_ID}


class JourneyGenerator:
    """Generates the events of customers ``first .. first+n-1`` of one chunk."""

    def __init__(
        self,
        *,
        seed: int,
        chunk: int,
        start_us: int,
        days: int,
        weekday0: int,
        utc_offsets: Sequence[int],
        catalogue: Catalogue,
        windows: dict[str, tuple[int, int]],
        customers_total: int,
    ) -> None:
        rng = np.random.default_rng([seed, chunk + 1])
        self.u = _stream(rng.random)
        self.nrm = _stream(rng.standard_normal)
        self.seed = seed
        self.start_us = start_us
        self.end_us = start_us + days * DAY
        self.days = days
        self.weekday0 = weekday0
        self.offsets_us = [o * S for o in utc_offsets]
        self.catalogue = catalogue
        self.customers_total = customers_total
        self.win_us = {k: (start_us + a * DAY, start_us + b * DAY) for k, (a, b) in windows.items()}
        self.stats = ChunkStats()
        self.tally = self.stats.breaks
        self.persona_cum = _cum([p.share for p in PERSONAS])
        self.rows: list[Row] = []
        self.event_ids: list[str] = []
        self.customer_ids: list[str] = []
        self.personas: list[int] = []
        # the customer being generated
        self.ev: list[Row] = []
        self.p: PersonaParams = PERSONAS[0]
        self.cnum = 0
        self.anon: dict[str, str] = {}
        self.gone = False
        self.hour = 0.0
        self.dev_cum: list[float] = []
        self.main_device = "desktop"
        self.chan_w: list[float] = []
        self.cat_cum: list[float] = []
        self.views_extra = 0.0
        self.subscribed_at = -1
        self.will_signup = False
        self.push_optin = False
        self.p_open = 0.0
        self.orders_left = 0
        self.orders_done = 0
        self.revenue_done = 0
        self.loyalty_member = False
        self.viewed: list[tuple[str, str, int]] = []
        self.exposed_mask = 0
        self.affected_mask = 0
        # expected basket (cents) per persona, for the lost revenue of bounced ad sessions
        self.basket = [
            sum(w * sum(PRICE_RANGES[c]) / 2 for w, c in zip(q.categories, CATEGORIES, strict=True))
            / sum(q.categories)
            * sum(q.items)
            / 2
            for q in PERSONAS
        ]
        self.pi = 0

    # ------------------------------------------------------------------ drawing helpers

    def pick(self, cum: Sequence[float]) -> int:
        return bisect_right(cum, self.u() * cum[-1])

    def expo(self, mean: float) -> float:
        return -math.log(1.0 - self.u()) * mean

    def poisson(self, mean: float) -> int:
        # Knuth; means here are small
        limit = math.exp(-mean)
        k = 0
        prod = self.u()
        while prod > limit:
            k += 1
            prod *= self.u()
        return k

    def between(self, lo: int, hi: int) -> int:
        """A whole number in ``[lo, hi]``."""
        return lo + int(self.u() * (hi - lo + 1))

    def score(self, mean: float, sd: float, lo: int, hi: int) -> int:
        return max(lo, min(hi, round(mean + sd * self.nrm())))

    def gap(self, mean_s: float, ms: bool) -> int:
        """Microseconds to the next click (at least 1 s or 1 ms: ties are only made on purpose)."""
        g = -math.log(1.0 - self.u()) * mean_s
        us = (int(g * 1000) + 1) * 1000 if ms else (int(g) + 1) * S
        return us if us < _MAX_CLICK_GAP else _MAX_CLICK_GAP

    def local_time(self, day: int, hour: float) -> int:
        """UTC µs of ``hour`` (local, Europe/Berlin) on day ``day`` of the period, to the second."""
        off = self.offsets_us[day if day < len(self.offsets_us) else -1]
        return self.start_us + day * DAY + int(hour * 3600) * S - off

    def local_day(self, t: int) -> int:
        """The day of the period (Europe/Berlin calendar) that UTC µs ``t`` falls on."""
        day = (t - self.start_us) // DAY
        off = self.offsets_us[day if 0 <= day < len(self.offsets_us) else -1]
        return (t + off - self.start_us) // DAY

    def in_window(self, name: str, t: int) -> bool:
        a, b = self.win_us[name]
        return a <= t < b

    # ------------------------------------------------------------------ emitting

    def emit(
        self,
        t: int,
        event: str,
        channel: str,
        device: str | None,
        props: str = "{}",
        campaign: str | None = None,
        product_id: str | None = None,
        category: str | None = None,
        order_id: str | None = None,
        score: int | None = None,
        revenue: int | None = None,
    ) -> None:
        if t < self.start_us or t >= self.end_us:
            return
        ev = self.ev
        ev.append(
            (
                t,
                len(ev),
                event,
                channel,
                campaign,
                device,
                self.anon[device] if device is not None else None,
                order_id,
                product_id,
                category,
                score,
                revenue,
                props,
            )
        )

    # ------------------------------------------------------------------ a customer

    def customer(self, cnum: int) -> None:
        """Generate every event of customer number ``cnum`` (1-based)."""
        u = self.u
        nrm = self.nrm
        pi = self.pick(self.persona_cum)
        p = PERSONAS[pi]
        self.p = p
        self.pi = pi
        self.exposed_mask = 0
        self.affected_mask = 0
        self.cnum = cnum
        self.ev = []
        self.gone = False
        self.anon = {d: f"{int(u() * 9007199254740992):014x}" for d in DEVICES}
        # individual traits around the persona
        self.hour = p.hour_mean + 1.4 * nrm() if u() >= _OFF_PERSONA_HOURS else 9.0 + 14.0 * u()
        self.dev_cum = _cum([w * math.exp(0.6 * nrm()) for w in p.devices])
        self.main_device = DEVICES[self.pick(self.dev_cum)]
        self.chan_w = [w * math.exp(0.45 * nrm()) for w in p.channels]
        self.cat_cum = _cum([w * math.exp(0.5 * nrm()) for w in p.categories])
        self.views_extra = p.views_extra * math.exp(0.3 * nrm())
        self.subscribed_at = self.start_us if u() < p.p_subscribed else -1
        self.will_signup = u() < p.p_signup
        self.push_optin = u() < p.p_push_optin
        self.p_open = min(0.95, p.p_open * math.exp(0.4 * nrm()))
        buyer = u() < p.p_buyer
        self.orders_left = self.between(*p.orders) if buyer else 0
        self.orders_done = 0
        self.revenue_done = 0
        self.loyalty_member = False
        self.viewed = []

        # the session schedule: acquisition day, then Exp gaps
        # existing customers show up in the first three weeks, new ones any day
        t_day = u() * min(self.days, 21) if u() < p.existing else u() * self.days
        n_sessions = 1 + self.poisson(p.sessions_extra * math.exp(0.35 * nrm()))
        first_us = -1
        prev_end = self.start_us - DAY
        for i in range(n_sessions):
            if i:
                t_day += self.expo(p.gap_days)
            day = int(t_day)
            if day >= self.days:
                break
            if u() < p.hour_uniform:
                hour = 8.0 + 15.0 * u()
            else:
                hour = (self.hour + p.hour_sd * nrm()) % 24.0
            t = self.local_time(day, hour)
            if t < prev_end + HOUR:
                t = prev_end + HOUR + self.between(0, 7200) * S
            while t < self.start_us:
                t += DAY
            if t >= self.end_us - 2 * HOUR:
                if i:
                    break
                # every customer of the run shows up at least once
                t = self.end_us - 2 * HOUR - self.between(0, 36_000) * S
            if first_us < 0:
                first_us = t
            prev_end = self.session(t, i, first_us)
            if self.gone:
                break
        mailings(self)
        self.finish(pi)

    def finish(self, pi: int) -> None:
        ev = self.ev
        ev.sort()
        cid = f"c{self.cnum:07d}"
        prefix = f"sim-{self.seed}-{self.cnum:07d}-"
        self.rows.extend(ev)
        self.event_ids.extend([f"{prefix}{k:04d}" for k in range(len(ev))])
        self.customer_ids.extend([cid] * len(ev))
        self.personas.append(pi)
        st = self.stats
        if self.exposed_mask:
            for name, bit in BREAK_BITS.items():
                if self.exposed_mask & bit:
                    st.breaks[name].exposed_customers += 1
                if self.affected_mask & bit:
                    st.breaks[name].affected_customers += 1
        st.persona_customers[pi] += 1
        if self.orders_done:
            st.buyers += 1
            st.persona_buyers[pi] += 1
            st.persona_orders[pi] += self.orders_done
            st.persona_revenue[pi] += self.revenue_done
            st.orders += self.orders_done
            st.revenue_cents += self.revenue_done

    # ------------------------------------------------------------------ sessions

    def entry_channel(self, t: int) -> str:
        """The channel a session starts from; newsletter and push need an opt-in (and push a
        weekend), otherwise the customer's mix is drawn again."""
        cum = _cum(self.chan_w)
        for _ in range(3):
            ch = ENTRY_CHANNELS[self.pick(cum)]
            if ch == "newsletter":
                if 0 <= self.subscribed_at <= t:
                    return ch
            elif ch == "push":
                if self.push_optin and (self.weekday0 + self.local_day(t)) % 7 >= 5:
                    return ch
            else:
                return ch
        return "direct"

    def session(self, t: int, index: int, first_us: int) -> int:
        """One visit starting at ``t``; returns the time of its last event."""
        p = self.p
        u = self.u
        first = index == 0
        channel = self.entry_channel(t)
        if u() < p.p_social_mention:
            self.emit(
                t - self.between(35, 180) * MIN,
                "social_mention",
                "social",
                "mobile",
                '{"platform":"instagram"}',
            )
        if channel == "store":
            return store_visit(self, t)
        # the session's purpose
        eligible = (
            self.orders_left > 0
            and index >= p.min_sessions_before_buy
            and t - first_us >= p.min_days_before_buy * DAY
        )
        if eligible and u() < p.p_purchase_session:
            intent = 2
        elif u() < p.p_tentative_checkout:
            intent = 1
        else:
            intent = 0
        dev = DEVICES[self.pick(self.dev_cum)]
        ms = u() < MS_SESSION_SHARE
        if ms:
            t += self.between(0, 999) * 1000
        end = self.web_session(t, channel, dev, ms, intent, first)
        if u() < p.p_hotline * 0.35:
            hotline_call(self, end + self.between(1, 48) * HOUR)
        return end

    def social_campaign(self, t: int) -> tuple[str, str]:
        if self.in_window("tiktok_flash", t) and self.u() < (
            0.65 if self.p.name == "impulsive_mobile" else 0.35
        ):
            return "tiktok_flash", "tiktok"
        if self.in_window("insta_summer", t) and self.u() < 0.6:
            return "insta_summer", "instagram"
        return "insta_trends", "instagram"

    def web_session(
        self, t: int, channel: str, dev: str, ms: bool, intent: int, first: bool
    ) -> int:
        p = self.p
        u = self.u
        click = p.click_seconds
        emit = self.emit
        landing = "landing"
        campaign: str | None = None
        if channel in ("search_ads", "social_ads"):
            if channel == "search_ads":
                campaign, platform = "brand_search", "google"
            else:
                campaign, platform = self.social_campaign(t)
            emit(t, "ad_click", channel, dev, f'{{"platform":"{platform}"}}', campaign)
            tiktok = campaign == "tiktok_flash"
            tally = self.tally[TIKTOK_BREAK]
            r = u()
            bounce = r < (_TIKTOK.injected_rate if tiktok else _TIKTOK.baseline_rate)
            if tiktok:
                tally.exposed_sessions += 1
                self.exposed_mask |= BREAK_BITS[TIKTOK_BREAK]
                if bounce:
                    tally.exited_sessions += 1
                    self.affected_mask |= BREAK_BITS[TIKTOK_BREAK]
                    if r >= _TIKTOK.baseline_rate:
                        tally.extra_exits += 1
                        lost = _P_ORDER_AFTER_LANDING[intent]
                        tally.lost_orders += lost
                        tally.lost_revenue_cents += lost * self.basket[self.pi]
                        if u() < _TIKTOK.churn_after:
                            self.gone = True
            else:
                tally.baseline_sessions += 1
                tally.baseline_exits += bounce
            if bounce:
                if u() < 0.5:
                    t += self.gap(6, ms)
                    emit(t, "page_view", "web", dev, '{"page":"landing"}', campaign)
                if first and u() < 0.6:
                    self.gone = True
                return t
            t += self.gap(5, ms)
            emit(t, "page_view", "web", dev, '{"page":"landing"}', campaign)
        else:
            if channel == "search":
                engine = "google" if u() < 0.88 else "bing"
                emit(t, "search_visit", "search", dev, f'{{"engine":"{engine}"}}')
                landing = "category"
            elif channel == "reviews":
                site = "trustpilot" if u() < 0.7 else "idealo"
                emit(t, "review_site_visit", "reviews", dev, f'{{"site":"{site}"}}')
                t += self.between(2, 12) * MIN
                emit(t, "search_visit", "search", dev, '{"engine":"google"}')
                landing = "category"
            elif channel == "referral":
                ref = 1 + int(u() * self.customers_total)
                emit(t, "referral_visit", "referral", dev, f'{{"referrer_id":"c{ref:07d}"}}')
                landing = "home"
            elif channel == "newsletter":
                campaign = (
                    "spring_sale" if self.in_window("spring_sale", t) else "weekly_newsletter"
                )
                emit(
                    t - self.between(20, 600) * S,
                    "newsletter_open",
                    "newsletter",
                    None,
                    "{}",
                    campaign,
                )
                emit(t, "newsletter_click", "newsletter", dev, '{"link":"hero"}', campaign)
            elif channel == "push":
                campaign = "push_weekend"
                emit(t, "push_click", "push", dev, "{}", campaign)
            else:  # direct
                emit(t, "page_view", "direct", dev, '{"page":"home"}')
                landing = ""
            if intent < 2 and u() < 0.2:  # a natural bounce
                if landing:
                    t += self.gap(8, ms)
                    emit(t, "page_view", "web", dev, f'{{"page":"{landing}"}}', campaign)
                return t
            if landing:
                t += self.gap(6, ms)
                if landing == "category":
                    cat = CATEGORIES[self.pick(self.cat_cum)]
                    emit(t, "page_view", "web", dev, '{"page":"category"}', category=cat)
                else:
                    emit(t, "page_view", "web", dev, f'{{"page":"{landing}"}}', campaign)
        t = self.browse(t, dev, ms, click)
        if self.will_signup and self.subscribed_at < 0 and u() < 0.5:
            t += self.gap(click, ms)
            emit(t, "newsletter_signup", "newsletter", dev, '{"form":"footer"}')
            self.subscribed_at = t
        if intent == 0:
            if u() < p.p_cart_abandon:
                t += self.gap(click, ms)
                self.add_to_cart(t, dev, self.product_for_cart())
            return t
        items: list[Item] = []
        for _ in range(self.between(*p.items) if intent == 2 else 1):
            t += self.gap(click, ms)
            item = self.product_for_cart()
            if any(i[0] == item[0] for i in items):
                item = self.product_for_cart(fresh=True)
            self.add_to_cart(t, dev, item)
            items.append(item)
        return checkout(self, t, dev, ms, items, intent)

    def browse(self, t: int, dev: str, ms: bool, click: float) -> int:
        p = self.p
        u = self.u
        emit = self.emit
        products = self.catalogue.products
        for _ in range(1 + self.poisson(self.views_extra)):
            cat = CATEGORIES[self.pick(self.cat_cum)]
            r = u()
            if r < p.p_category_page:
                t += self.gap(click, ms)
                if u() < p.p_price_sort:
                    emit(
                        t,
                        "page_view",
                        "web",
                        dev,
                        '{"page":"category","sort":"price_asc"}',
                        category=cat,
                    )
                else:
                    emit(t, "page_view", "web", dev, '{"page":"category"}', category=cat)
            elif r < p.p_category_page + p.p_search:
                t += self.gap(click, ms)
                qs = SEARCH_QUERIES[cat]
                q = qs[int(u() * len(qs))]
                n = self.between(0, 60)
                emit(t, "site_search", "web", dev, f'{{"query":"{q}","results":{n}}}', category=cat)
            plist = products[cat]
            pid, price = plist[int(len(plist) * u() * u())]
            t += self.gap(click, ms)
            emit(
                t,
                "product_view",
                "web",
                dev,
                f'{{"price":{price / 100:.2f}}}',
                product_id=pid,
                category=cat,
            )
            self.viewed.append((pid, cat, price))
            if u() < p.p_review_read:
                t += self.gap(click * 1.5, ms)
                emit(
                    t,
                    "review_read",
                    "web",
                    dev,
                    f'{{"reviews":{self.between(1, 80)}}}',
                    product_id=pid,
                    category=cat,
                )
            if cat != "accessories" and u() < p.p_size_guide:
                t += self.gap(click, ms)
                emit(t, "size_guide_view", "web", dev, "{}", product_id=pid, category=cat)
            if u() < p.p_wishlist:
                t += self.gap(click * 0.5, ms)
                emit(
                    t,
                    "add_to_wishlist",
                    "web",
                    dev,
                    f'{{"price":{price / 100:.2f}}}',
                    product_id=pid,
                    category=cat,
                )
        return t

    def product_for_cart(self, fresh: bool = False) -> Item:
        """A product to put in the cart: mostly one just viewed (``fresh``: any product)."""
        u = self.u
        if self.viewed and not fresh and u() < 0.85:
            pid, cat, price = self.viewed[-1 - int(u() * min(4, len(self.viewed)))]
        else:
            cat = CATEGORIES[self.pick(self.cat_cum)]
            plist = self.catalogue.products[cat]
            pid, price = plist[int(len(plist) * u() * u())]
        if cat == "shoes":
            size = SHOE_SIZES[int(u() * len(SHOE_SIZES))]
        elif cat == "accessories":
            size = "one_size"
        else:
            size = CLOTHING_SIZES[int(u() * len(CLOTHING_SIZES))]
        return (pid, cat, price, size, COLOURS[int(u() * len(COLOURS))])

    def add_to_cart(self, t: int, dev: str, item: Item) -> None:
        pid, cat, price, size, colour = item
        self.emit(
            t,
            "add_to_cart",
            "web",
            dev,
            f'{{"price":{price / 100:.2f},"size":"{size}","colour":"{colour}","quantity":1}}',
            product_id=pid,
            category=cat,
        )
