"""Checkout, order and after-sale events of a simulated customer (two of the breaks live here).

Functions of a ``JourneyGenerator`` rather than methods, to keep the modules small; they read
and update the generator's state of the customer being generated.
"""

from __future__ import annotations

from itertools import accumulate
from typing import TYPE_CHECKING, Final

from journeymap.simulate.breaks import BREAK_BITS, BREAKS_BY_ID, PAYMENT_BREAK, SIZE_BREAK
from journeymap.simulate.contacts import survey
from journeymap.simulate.personas import (
    DAY,
    DISCOUNTS,
    HOTLINE_TOPICS,
    HOUR,
    PAYMENT_FAILURE_REASONS,
    PAYMENT_METHODS,
    RETURN_REASONS,
    S,
)

if TYPE_CHECKING:
    from journeymap.simulate.journey import Item, JourneyGenerator


_SIZE = BREAKS_BY_ID[SIZE_BREAK]
_PAY = BREAKS_BY_ID[PAYMENT_BREAK]
# exits of the checkout steps: (tentative checkout, planned purchase)
_EXIT_START: Final = (0.45, 0.04)
_EXIT_ADDRESS: Final = (0.30, 0.05)
_PAY_FAIL: Final = 0.04
_PAY_RETRY: Final = 0.6
_PAY_INTERRUPT: Final = 0.035
#: P(order | the session went on after the size selection), tentative / planned
_P_ORDER_AFTER_SIZE: Final = (0.66, 0.90)
#: P(order | the payment was not interrupted)
_P_ORDER_AFTER_PAY: Final = 1.0 - _PAY_FAIL * (1.0 - _PAY_RETRY)


def checkout(
    g: JourneyGenerator, t: int, dev: str, ms: bool, items: list[Item], intent: int
) -> int:
    """The checkout of ``items``; returns the time of the session's last event."""
    u = g.u
    p = g.p
    emit = g.emit
    planned = 1 if intent == 2 else 0
    value = sum(i[2] for i in items)
    quick = p.name == "impulsive_mobile"
    # impulsive buyers jump straight from the cart into the checkout (same second: a tie)
    t += 0 if quick and not ms and u() < 0.35 else g.gap(10 if quick else 25, ms)
    emit(t, "checkout_start", "web", dev, f'{{"items":{len(items)},"value":{value / 100:.2f}}}')
    if u() < _EXIT_START[planned]:
        return t

    # break 1: size/colour selection fails on mobile in the window
    t += g.gap(20, ms)
    _, _, _, size, colour = items[0]
    tally = g.tally[SIZE_BREAK]
    r = u()
    broken = dev == "mobile" and g.in_window(SIZE_BREAK, t)
    if broken:
        emit(
            t,
            "checkout_size_select",
            "web",
            dev,
            f'{{"size":"{size}","colour":"{colour}","error":"size_unavailable"}}',
        )
        tally.exposed_sessions += 1
        g.exposed_mask |= BREAK_BITS[SIZE_BREAK]
        leave = r < _SIZE.injected_rate
        if leave:
            tally.exited_sessions += 1
            g.affected_mask |= BREAK_BITS[SIZE_BREAK]
            if r >= _SIZE.baseline_rate:
                lost = _P_ORDER_AFTER_SIZE[planned]
                tally.extra_exits += 1
                tally.lost_orders += lost
                tally.lost_revenue_cents += lost * value
                if u() < _SIZE.churn_after:
                    g.orders_left = 0
                    g.gone = u() < 0.5
    else:
        emit(t, "checkout_size_select", "web", dev, f'{{"size":"{size}","colour":"{colour}"}}')
        leave = r < _SIZE.baseline_rate
        tally.baseline_sessions += 1
        tally.baseline_exits += leave
    if leave:
        return t

    t += g.gap(40, ms)
    shipping = "express" if u() < 0.15 else "standard"
    emit(t, "checkout_address", "web", dev, f'{{"shipping":"{shipping}"}}')
    if u() < _EXIT_ADDRESS[planned]:
        return t

    # break 3: mobile wallet payments on mobile are interrupted after payment_start
    pay_cum = list(accumulate(p.pay_mobile if dev == "mobile" else p.pay_other))
    method = PAYMENT_METHODS[g.pick(pay_cum)]
    tally = g.tally[PAYMENT_BREAK]
    session_broken = dev == "mobile" and method == "mobile_wallet" and g.in_window(PAYMENT_BREAK, t)
    if session_broken:
        tally.exposed_sessions += 1
        g.exposed_mask |= BREAK_BITS[PAYMENT_BREAK]
    else:
        tally.baseline_sessions += 1
    ordered = False
    for attempt in range(2):
        t += g.gap(30, ms)
        emit(t, "payment_start", "web", dev, f'{{"payment_method":"{method}"}}')
        r = u()
        broken = dev == "mobile" and method == "mobile_wallet" and g.in_window(PAYMENT_BREAK, t)
        if broken and r < _PAY.injected_rate:
            if r >= _PAY_INTERRUPT:
                tally.extra_exits += 1
                tally.lost_orders += _P_ORDER_AFTER_PAY
                tally.lost_revenue_cents += _P_ORDER_AFTER_PAY * value
                if u() < _PAY.churn_after:
                    g.orders_left = 0
            break
        if not broken and r < _PAY_INTERRUPT:
            break
        if u() < _PAY_FAIL:
            t += g.gap(8, ms)
            reason = PAYMENT_FAILURE_REASONS[int(u() * len(PAYMENT_FAILURE_REASONS))]
            emit(
                t,
                "payment_failed",
                "web",
                dev,
                f'{{"payment_method":"{method}","reason":"{reason}"}}',
            )
            if attempt == 0 and u() < _PAY_RETRY:
                if u() < 0.5:
                    method = PAYMENT_METHODS[g.pick(pay_cum)]
                continue
            break
        ordered = True
        break
    if not ordered:
        if session_broken:
            tally.exited_sessions += 1
            g.affected_mask |= BREAK_BITS[PAYMENT_BREAK]
        else:
            tally.baseline_exits += 1
        return t

    # the order (payment confirmation and order often share the second)
    t += 0 if not ms and u() < 0.3 else g.gap(3, ms)
    g.orders_done += 1
    k = g.orders_done
    order_id = f"o{g.cnum:07d}-{k:02d}"
    code = _discount_code(g, t)
    pct = DISCOUNTS[code] if code else 0
    subtotal = (value * (100 - pct) + 50) // 100
    ship_cents = 0 if value >= 5000 else 495
    revenue = subtotal + ship_cents
    g.revenue_done += revenue
    if g.orders_left:
        g.orders_left -= 1
    products = ",".join(f'"{i[0]}"' for i in items)
    disc = f',"discount_code":"{code}"' if code else ""
    emit(
        t,
        "order_completed",
        "web",
        dev,
        f'{{"items":{len(items)},"products":[{products}],"payment_method":"{method}"'
        f',"shipping":{ship_cents / 100:.2f}{disc}}}',
        order_id=order_id,
        revenue=revenue,
    )
    if not g.loyalty_member and u() < p.p_loyalty_signup:
        t += g.gap(20, ms)
        emit(t, "loyalty_signup", "web", dev, '{"tier":"basic"}')
        g.loyalty_member = True
    bad_checkout = dev == "mobile" and (
        g.in_window(SIZE_BREAK, t) or (method == "mobile_wallet" and g.in_window(PAYMENT_BREAK, t))
    )
    after_sale(g, t, order_id, items, bad_checkout)
    return t


def _discount_code(g: JourneyGenerator, t: int) -> str:
    p = g.p
    if g.u() >= p.p_discount:
        return ""
    if g.in_window("spring_sale", t) and g.subscribed_at >= 0:
        return "SPRING20"
    if p.name == "deal_hunter":
        return "NEWS15" if g.subscribed_at >= 0 and g.u() < 0.5 else "DEAL10"
    if p.name == "loyal_repeat":
        return "LOYAL5"
    return "WELCOME10" if g.orders_done == 1 else "NEWS15"


def after_sale(
    g: JourneyGenerator, t_order: int, order_id: str, items: list[Item], bad_checkout: bool
) -> None:
    """Shipping, delivery, surveys, support, returns, reviews and referrals of one order."""
    u = g.u
    p = g.p
    emit = g.emit
    day = (t_order - g.start_us) // DAY
    shipped = g.local_time(day + 1, 8.0 + 9.0 * u())
    emit(
        shipped,
        "order_shipped",
        "email",
        None,
        f'{{"tracking_number":"JM{g.cnum:08d}{g.orders_done:02d}DE","carrier":"DHL"}}',
        order_id=order_id,
    )
    transit = g.between(2, 4) + (1 if u() < 0.1 else 0)
    late = transit >= 4
    delivered = g.local_time(day + 1 + transit, 10.0 + 9.0 * u())
    emit(
        delivered,
        "delivery_confirmed",
        "email",
        None,
        f'{{"days_in_transit":{transit}}}',
        order_id=order_id,
    )
    if u() < 0.25:
        survey(g, t_order + g.between(1, 3) * HOUR, "ces", "checkout", order_id, bad_checkout)
    if u() < 0.25:
        survey(g, delivered + g.between(20, 72) * HOUR, "csat", "delivery", order_id, late)
    if u() < 0.15:
        survey(g, delivered + g.between(3, 6) * DAY, "nps", "website", order_id, False)
    if u() < (0.25 if late else 0.06):
        hotline = u() < 0.6
        if late:
            topic = "delivery"
            when = delivered - g.between(2, 20) * HOUR
        else:
            topic = HOTLINE_TOPICS[1 + int(u() * 3)]
            when = delivered + g.between(1, 6) * DAY
        emit(
            when,
            "support_ticket",
            "hotline" if hotline else "chat",
            None if hotline else g.main_device,
            f'{{"topic":"{topic}"}}',
            order_id=order_id,
        )
        if u() < 0.3:
            survey(g, when + g.between(2, 30) * HOUR, "csat", "support", order_id, False)
    returned = u() < p.p_return
    if returned:
        reason = RETURN_REASONS[int(u() * len(RETURN_REASONS))]
        emit(
            delivered + g.between(1, 10) * DAY + g.between(0, 36_000) * S,
            "return_requested",
            "web",
            g.main_device,
            f'{{"reason":"{reason}","items":1}}',
            order_id=order_id,
        )
    if u() < p.p_review:
        pid, cat = items[0][0], items[0][1]
        stars = g.score(3.0 if returned else 4.2, 0.9, 1, 5)
        emit(
            delivered + g.between(3, 14) * DAY + g.between(0, 36_000) * S,
            "review_written",
            "web",
            g.main_device,
            f'{{"stars":{stars}}}',
            product_id=pid,
            category=cat,
            order_id=order_id,
        )
    if u() < p.p_referral_sent:
        via = ("whatsapp", "email", "link")[int(u() * 3)]
        emit(
            delivered + g.between(2, 20) * DAY + g.between(0, 36_000) * S,
            "referral_sent",
            "web",
            g.main_device,
            f'{{"via":"{via}"}}',
        )
