"""The shop simulator: output format, determinism, realism and the injected ground truth.

Most tests share one run of 3,000 customers; the raw events are queried with DuckDB, the way
the analytics will see them (sessions = 30 minutes of inactivity, order by ``(ts, event_id)``).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from decimal import Decimal
from math import comb
from pathlib import Path
from typing import Any, NamedTuple

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from journeymap.errors import InputDataError
from journeymap.model.events import EVENT_SCHEMA
from journeymap.simulate import SimulationResult, Truth, load_truth, simulate_shop

CUSTOMERS = 3000
CHECKOUT_STEPS = (
    "checkout_start",
    "checkout_size_select",
    "checkout_address",
    "payment_start",
    "order_completed",
)
SESSIONS_SQL = """
create table s as
select *, sum(new) over (partition by customer_id order by ts, event_id
                         rows unbounded preceding) as sid
from (
  select *, case when ts - lag(ts) over (partition by customer_id order by ts, event_id)
                      <= interval 30 minute then 0 else 1 end as new
  from events
)
"""


class Shop(NamedTuple):
    result: SimulationResult
    table: pa.Table
    truth: Truth
    con: duckdb.DuckDBPyConnection


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    out = tmp_path_factory.mktemp("shop")
    result = simulate_shop(out, customers=CUSTOMERS, seed=11)
    table = pq.read_table(result.events_path)
    con = duckdb.connect()
    con.register("events", table)
    con.execute(SESSIONS_SQL)
    personas = load_truth(result.truth_path).customer_personas
    con.register(
        "cp",
        pa.table({"customer_id": list(personas), "persona": list(personas.values())}),
    )
    yield Shop(result, table, load_truth(result.truth_path), con)
    con.close()


def us(t: dt.datetime) -> int:
    """Microseconds since the epoch (DuckDB gives ``ts_us``; its timestamps need pytz)."""
    return (t - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(microseconds=1)


def assert_clearly_higher(broken: tuple[int, float], *others: tuple[int, float]) -> None:
    """The exit rate of the broken cell is far above every other cell's (z > 3) and >= 2x."""
    n1, r1 = broken
    for n0, r0 in others:
        pooled = (n1 * r1 + n0 * r0) / (n1 + n0)
        z = (r1 - r0) / (pooled * (1 - pooled) * (1 / n1 + 1 / n0)) ** 0.5
        assert z > 3, (broken, (n0, r0))
        assert r1 > 2 * r0


def rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[tuple[Any, ...]]:
    return con.execute(sql).fetchall()


def one(con: duckdb.DuckDBPyConnection, sql: str) -> Any:
    return rows(con, sql)[0][0]


# --------------------------------------------------------------------------- format


def test_writes_zstd_parts_with_exactly_the_event_schema(shop: Shop) -> None:
    parts = sorted(shop.result.events_path.glob("part-*.parquet"))
    assert [p.name for p in parts] == ["part-00000.parquet"]
    for part in parts:
        assert pq.read_schema(part).equals(EVENT_SCHEMA)
        meta = pq.ParquetFile(part).metadata
        assert meta.row_group(0).column(0).compression == "ZSTD"
    assert shop.table.schema.equals(EVENT_SCHEMA)
    assert shop.result.truth_path == shop.result.events_path.parent / "truth.json"


def test_result_counts_agree_with_the_files_and_the_truth(shop: Shop) -> None:
    res, table, truth = shop.result, shop.table, shop.truth
    orders = table.filter(pc.equal(table["event"], "order_completed"))
    assert res.customers == truth.customers == CUSTOMERS
    assert res.events == table.num_rows == truth.counts.events
    assert res.orders == orders.num_rows == truth.counts.orders > 0
    assert res.revenue == pc.sum(table["revenue"]).as_py() == truth.counts.revenue > 0
    assert sum(truth.counts.events_by_name.values()) == res.events
    assert sum(p.orders for p in truth.personas.values()) == res.orders
    assert sum(p.revenue for p in truth.personas.values()) == res.revenue
    assert res.seconds > 0
    # the shop's typical volume: 40-60 events per customer
    assert 40 <= res.events / res.customers <= 70


def test_every_event_name_of_the_vocabulary_occurs(shop: Shop) -> None:
    names = set(shop.truth.counts.events_by_name)
    assert names == {
        *("ad_click", "search_visit", "referral_visit", "review_site_visit", "store_visit"),
        *("social_mention", "page_view", "product_view", "site_search", "review_read"),
        *("newsletter_signup", "hotline_call", "add_to_wishlist", "add_to_cart"),
        *("size_guide_view", "checkout_start", "checkout_size_select", "checkout_address"),
        *("payment_start", "payment_failed", "order_completed", "order_shipped"),
        *("delivery_confirmed", "support_ticket", "return_requested", "survey_response"),
        *("review_written", "newsletter_open", "newsletter_click", "push_click"),
        *("referral_sent", "loyalty_signup"),
    }


def test_same_seed_gives_identical_data_and_another_seed_differs(tmp_path: Path) -> None:
    a = simulate_shop(tmp_path / "a", customers=300, seed=5)
    b = simulate_shop(tmp_path / "b", customers=300, seed=5)
    c = simulate_shop(tmp_path / "c", customers=300, seed=6)
    ta, tb, tc = (pq.read_table(r.events_path) for r in (a, b, c))
    assert ta.equals(tb)
    assert a.truth_path.read_bytes() == b.truth_path.read_bytes()
    assert not ta.equals(tc)
    assert (a.events, a.orders, a.revenue) != (c.events, c.orders, c.revenue)


def test_rerun_replaces_old_part_files(tmp_path: Path) -> None:
    stale = tmp_path / "events" / "part-00042.parquet"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"old")
    res = simulate_shop(tmp_path, customers=50, seed=1)
    assert not stale.exists()
    assert pq.read_table(res.events_path).num_rows == res.events


def test_event_ids_are_unique_and_sort_in_logical_order(shop: Shop) -> None:
    con = shop.con
    assert one(con, "select count(distinct event_id) from events") == shop.result.events
    assert one(con, "select count(*) from events where event_id not like 'sim-11-%'") == 0
    # the files hold each customer's events ordered by (ts, event_id)
    unordered = one(
        con,
        """select count(*) from (select ts, event_id, customer_id,
             lag(ts) over w as pts, lag(event_id) over w as pid
           from events window w as (partition by customer_id order by event_id))
           where ts < pts""",
    )
    assert unordered == 0


def test_timestamps_lie_in_the_period_mostly_whole_seconds_with_some_ties(shop: Shop) -> None:
    con, truth = shop.con, shop.truth
    lo, hi = rows(con, "select min(ts_us), max(ts_us) from events")[0]
    assert us(truth.period_start) <= lo < hi < us(truth.period_end)
    assert truth.period_start == dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    assert truth.period_end == dt.datetime(2026, 7, 1, tzinfo=dt.UTC)
    ms_share = one(con, "select avg(case when ts_us % 1000000 = 0 then 0 else 1 end) from events")
    assert 0.05 < ms_share < 0.5
    ties = one(
        con,
        "select count(*) from (select 1 from events group by customer_id, ts having count(*) > 1)",
    )
    assert 0 < ties < shop.result.events * 0.01


def test_every_customer_has_events_and_one_persona(shop: Shop) -> None:
    truth = shop.truth
    ids = set(shop.table["customer_id"].unique().to_pylist())
    assert ids == set(truth.customer_personas)
    assert len(ids) == CUSTOMERS
    counts: dict[str, int] = {}
    for persona in truth.customer_personas.values():
        counts[persona] = counts.get(persona, 0) + 1
    for name, p in truth.personas.items():
        assert counts[name] == p.customers
        assert abs(p.customers / CUSTOMERS - p.share) < 0.04, name
    assert {n: p.share for n, p in truth.personas.items()} == {
        "deal_hunter": 0.30,
        "researcher": 0.25,
        "loyal_repeat": 0.25,
        "impulsive_mobile": 0.20,
    }


def test_revenue_and_currency_only_on_completed_orders(shop: Shop) -> None:
    got = rows(
        shop.con,
        """select event, count(*), count(revenue), count(currency), min(revenue),
                  count(distinct currency), count(order_id)
           from events where revenue is not null or currency is not null group by event""",
    )
    n = shop.result.orders
    assert got == [("order_completed", n, n, n, got[0][4], 1, n)]
    assert got[0][4] > 0
    assert one(shop.con, "select any_value(currency) from events where revenue > 0") == "EUR"


def test_scores_only_on_surveys_and_within_their_scales(shop: Shop) -> None:
    con = shop.con
    assert one(con, "select count(*) from events where score is not null") == one(
        con, "select count(*) from events where event = 'survey_response'"
    )
    scales = {"nps": (0, 10), "csat": (1, 5), "ces": (1, 7)}
    got = rows(
        con,
        """select properties->>'survey', properties->>'touchpoint', min(score), max(score),
                  count(*) from events where event = 'survey_response' group by all""",
    )
    assert {(k, tp) for k, tp, *_ in got} <= {
        (k, tp)
        for k in scales
        for tp in ("checkout", "delivery", "hotline", "support", "website", "store")
    }
    for kind, _tp, lo, hi, _n in got:
        assert scales[kind][0] <= lo <= hi <= scales[kind][1]


def test_device_is_null_exactly_for_store_hotline_and_email_events(shop: Shop) -> None:
    got = dict(
        rows(
            shop.con,
            """select event || '/' || channel, bool_and(device is null) = bool_or(device is null)
                 and bool_or(device is null) from events group by 1""",
        )
    )
    offline = {
        "store_visit/store",
        "hotline_call/hotline",
        "order_shipped/email",
        "delivery_confirmed/email",
        "survey_response/email",
        "newsletter_open/newsletter",
        "support_ticket/hotline",
    }
    assert {k for k, all_null in got.items() if all_null} == offline
    null_elsewhere = one(
        shop.con,
        """select count(*) from events where device is null and event || '/' || channel
           not in ('store_visit/store', 'hotline_call/hotline', 'order_shipped/email',
                   'delivery_confirmed/email', 'survey_response/email',
                   'newsletter_open/newsletter', 'support_ticket/hotline')""",
    )
    assert null_elsewhere == 0
    assert one(shop.con, "select count(*) from events where anonymous_id is null") == one(
        shop.con, "select count(*) from events where device is null"
    )


def test_properties_are_compact_json_objects(shop: Shop) -> None:
    for text in shop.table["properties"].to_pylist():
        assert isinstance(json.loads(text), dict)
        assert ", " not in text
        assert '": ' not in text


def test_campaigns_only_on_campaign_traffic(shop: Shop) -> None:
    got = dict(
        rows(shop.con, "select event, count(*) from events where campaign is not null group by 1")
    )
    assert set(got) == {
        "ad_click",
        "page_view",
        "newsletter_open",
        "newsletter_click",
        "push_click",
    }
    used = {r[0] for r in rows(shop.con, "select distinct campaign from events")} - {None}
    assert used == {c.id for c in shop.truth.campaigns}
    assert one(shop.con, "select count(distinct source) from events") == 1
    assert one(shop.con, "select any_value(source) from events") == "simulator"


def test_campaigns_run_only_in_their_windows(shop: Shop) -> None:
    for c in shop.truth.campaigns:
        lo, hi, weekdays = rows(
            shop.con,
            f"""select min(ts_us), max(ts_us),
                       list(distinct isodow(ts at time zone 'Europe/Berlin'))
                from events where campaign = '{c.id}'""",
        )[0]
        if c.start is not None and c.end is not None:
            assert us(c.start) <= lo <= hi < us(c.end), c.id
        if c.weekends_only:
            assert set(weekdays) <= {6, 7}


def test_checkout_steps_appear_in_order_within_a_session(shop: Shop) -> None:
    firsts = ", ".join(
        f"min(case when event = '{e}' then k end) as s{i}" for i, e in enumerate(CHECKOUT_STEPS)
    )
    sessions = rows(
        shop.con,
        f"""select {firsts} from (
              select *, row_number() over (partition by customer_id order by ts, event_id) as k
              from s)
            group by customer_id, sid
            having count(*) filter (where event = 'checkout_start') > 0""",
    )
    assert len(sessions) > 500
    for steps in sessions:
        reached = [x for x in steps if x is not None]
        assert reached == sorted(reached)
        # a step is only reached after every step before it
        assert steps[: len(reached)] == tuple(reached)


def test_browsing_sessions_start_with_an_entry_touchpoint(shop: Shop) -> None:
    got = dict(
        rows(
            shop.con,
            """select first_event, count(*) from (
                 select arg_min(event, (ts, event_id)) as first_event from s
                 group by customer_id, sid
                 having bool_or(event in ('page_view', 'product_view')))
               group by 1""",
        )
    )
    entries = {
        "ad_click",
        "search_visit",
        "referral_visit",
        "review_site_visit",
        "newsletter_click",
        "push_click",
        "page_view",
        "newsletter_open",  # a newsletter visit: the open, then the click
    }
    assert sum(n for e, n in got.items() if e in entries) / sum(got.values()) > 0.99


# --------------------------------------------------------------------------- injected breaks


def test_mobile_size_select_break_is_visible_in_the_raw_events(shop: Shop) -> None:
    b = shop.truth.break_by_id("mobile_size_select")
    assert (b.kind, b.touchpoint, b.segment) == (
        "step_exit",
        "checkout_size_select",
        {"device": "mobile"},
    )
    got = {
        (in_segment, in_window): (n, rate)
        for in_segment, in_window, n, rate in rows(
            shop.con,
            f"""select dev = 'mobile', ts >= {us(b.window_start)} and ts < {us(b.window_end)},
                       count(*), avg(case when addr then 0 else 1 end)
                from (select any_value(device) dev,
                             min(ts_us) filter (where event = 'checkout_size_select') ts,
                             bool_or(event = 'checkout_address') addr
                      from s group by customer_id, sid)
                where ts is not null group by all""",
        )
    }
    n = got[(True, True)][0]
    assert n >= 20
    assert_clearly_higher(got[(True, True)], got[(True, False)], got[(False, True)])
    for key in ((True, False), (False, True), (False, False)):
        assert got[key][1] < 0.16
    # the error shows exactly in the broken checkouts
    errors = rows(
        shop.con,
        """select min(ts_us), max(ts_us), count(*), bool_and(device = 'mobile') from events
           where event = 'checkout_size_select' and properties->>'error' = 'size_unavailable'""",
    )[0]
    assert us(b.window_start) <= errors[0] <= errors[1] < us(b.window_end)
    assert errors[2] == b.exposed_sessions
    assert abs(n - b.exposed_sessions) <= 3  # sessions cut by the 30-minute rule may differ
    assert errors[3] is True


def test_tiktok_flash_bounce_is_visible_in_the_raw_events(shop: Shop) -> None:
    b = shop.truth.break_by_id("tiktok_flash_bounce")
    assert (b.kind, b.campaign) == ("campaign_bounce", "tiktok_flash")
    got = {
        campaign: (n, rate)
        for campaign, n, rate in rows(
            shop.con,
            """select campaign, count(*), avg(case when other = 0 and pv <= 1 then 1 else 0 end)
               from (select arg_min(event, (ts, event_id)) first_event,
                            arg_min(campaign, (ts, event_id)) campaign,
                            count(*) filter (where event not in ('ad_click', 'page_view')) other,
                            count(*) filter (where event = 'page_view') pv
                     from s group by customer_id, sid)
               where first_event = 'ad_click' group by 1""",
        )
    }
    tiktok = got.pop("tiktok_flash")
    assert tiktok[0] >= 30
    assert_clearly_higher(tiktok, *got.values())
    for campaign, (_n, other) in got.items():
        assert 0.2 < other < 0.4, campaign


def test_mobile_payment_interruption_is_visible_in_the_raw_events(shop: Shop) -> None:
    b = shop.truth.break_by_id("mobile_payment_interrupted")
    assert b.segment == {"device": "mobile", "payment_method": "mobile_wallet"}
    got = {
        (seg, win): (n, rate)
        for seg, win, n, rate in rows(
            shop.con,
            f"""select dev = 'mobile' and wallet, ts >= {us(b.window_start)}, count(*),
                       avg(case when ordered then 0 else 1 end)
                from (select any_value(device) dev,
                             min(ts_us) filter (where event = 'payment_start') ts,
                             bool_or(event = 'payment_start'
                                     and properties->>'payment_method' = 'mobile_wallet') wallet,
                             bool_or(event = 'order_completed') ordered
                      from s group by customer_id, sid)
                where ts is not null group by all""",
        )
    }
    assert got[(True, True)][0] >= 20
    assert_clearly_higher(got[(True, True)], got[(True, False)], got[(False, True)])
    for key in ((True, False), (False, True), (False, False)):
        assert got[key][1] < 0.1
    assert b.window_end == shop.truth.period_end


def test_truth_describes_each_break_consistently(shop: Shop) -> None:
    truth = shop.truth
    assert [b.id for b in truth.breaks] == [
        "mobile_size_select",
        "tiktok_flash_bounce",
        "mobile_payment_interrupted",
    ]
    for b in truth.breaks:
        assert truth.period_start <= b.window_start < b.window_end <= truth.period_end
        assert b.baseline_rate < b.injected_rate
        # within four standard errors (plus payment failures, which add to the exits)
        for observed, rate, n in (
            (b.observed_baseline_rate, b.baseline_rate, b.baseline_sessions),
            (b.observed_injected_rate, b.injected_rate, b.exposed_sessions),
        ):
            assert abs(observed - rate) < 4 * (rate * (1 - rate) / n) ** 0.5 + 0.02, b.id
        assert 0 < b.affected_customers <= b.exposed_customers <= b.exposed_sessions
        assert b.extra_exits <= b.exited_sessions <= b.exposed_sessions
        assert b.baseline_exits <= b.baseline_sessions
        assert b.lost_orders_estimate > 0
        assert b.lost_revenue_estimate > 0
        assert b.description
        assert b.measure
    tiktok = truth.break_by_id("tiktok_flash_bounce")
    campaign = next(c for c in truth.campaigns if c.id == "tiktok_flash")
    assert (tiktok.window_start, tiktok.window_end) == (campaign.start, campaign.end)
    with pytest.raises(KeyError, match="known breaks: mobile_size_select"):
        truth.break_by_id("nope")


# --------------------------------------------------------------------------- personas


def _kmeans(x: np.ndarray, k: int, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    centres = [x[rng.integers(len(x))]]
    for _ in range(k - 1):
        d2 = np.min(((x[:, None, :] - np.array(centres)[None]) ** 2).sum(-1), axis=1)
        centres.append(x[rng.choice(len(x), p=d2 / d2.sum())])
    c = np.array(centres)
    labels = np.zeros(len(x), dtype=int)
    for _ in range(100):
        labels = np.argmin(((x[:, None, :] - c[None]) ** 2).sum(-1), axis=1)
        new = np.array([x[labels == j].mean(0) if (labels == j).any() else c[j] for j in range(k)])
        if np.allclose(new, c):
            break
        c = new
    return labels, float(((x - c[labels]) ** 2).sum())


def _adjusted_rand_index(a: np.ndarray, b: np.ndarray) -> float:
    table = np.zeros((a.max() + 1, b.max() + 1), dtype=int)
    np.add.at(table, (a, b), 1)
    pairs = sum(comb(int(v), 2) for v in table.ravel())
    rows_ = sum(comb(int(v), 2) for v in table.sum(1))
    cols = sum(comb(int(v), 2) for v in table.sum(0))
    expected = rows_ * cols / comb(len(a), 2)
    return (pairs - expected) / ((rows_ + cols) / 2 - expected)


def test_personas_are_recoverable_from_behaviour(shop: Shop) -> None:
    features = rows(
        shop.con,
        """select customer_id,
             count(*) filter (where channel = 'search_ads'),
             count(*) filter (where channel = 'social_ads' and event = 'ad_click'),
             count(*) filter (where event = 'search_visit'),
             count(*) filter (where event = 'review_site_visit'),
             count(*) filter (where event = 'newsletter_click'),
             count(*) filter (where channel = 'direct'),
             count(*) filter (where event = 'push_click'),
             count(*) filter (where device = 'mobile') / (count(device) + 1),
             count(*) filter (where device = 'desktop') / (count(device) + 1),
             coalesce(avg(sin(2 * pi() * hour(ts at time zone 'Europe/Berlin') / 24))
                      filter (where device is not null), 0),
             coalesce(avg(cos(2 * pi() * hour(ts at time zone 'Europe/Berlin') / 24))
                      filter (where device is not null), 0),
             ln(1 + count(*) filter (where event = 'order_completed')),
             count(*) filter (where properties->>'discount_code' is not null)
               / (count(*) filter (where event = 'order_completed') + 1),
             count(*) filter (where category in ('accessories', 'sale')) / (count(category) + 1),
             count(*) filter (where category in ('jackets', 'shoes')) / (count(category) + 1),
             count(*) filter (where category in ('sportswear', 'trends')) / (count(category) + 1),
             count(*) filter (where event in ('review_read', 'size_guide_view'))
               / (count(*) filter (where event = 'product_view') + 1)
           from events group by 1 order by 1""",
    )
    x = np.array([f[1:] for f in features], dtype=float)
    x[:, :7] /= x[:, :7].sum(1, keepdims=True) + 1  # channel counts -> shares
    x = (x - x.mean(0)) / (x.std(0) + 1e-9)
    names = sorted(shop.truth.personas)
    truth = np.array([names.index(shop.truth.customer_personas[f[0]]) for f in features])
    rng = np.random.default_rng(0)
    labels, _ = min((_kmeans(x, 4, rng) for _ in range(5)), key=lambda r: r[1])
    assert _adjusted_rand_index(truth, labels) >= 0.6


def test_personas_behave_as_described(shop: Shop) -> None:
    got = {
        r[0]: r[1:]
        for r in rows(
            shop.con,
            """select persona,
                 count(distinct customer_id) filter (where event = 'order_completed')
                   / count(distinct customer_id) as conversion,
                 count(*) filter (where event = 'order_completed')
                   / count(distinct customer_id) as orders_per_customer,
                 avg(revenue) as basket,
                 avg(case when properties->>'discount_code' is not null then 1 else 0 end)
                   filter (where event = 'order_completed') as discount_share,
                 avg(case when device = 'mobile' then 1 else 0 end)
                   filter (where device is not null) as mobile_share,
                 avg(case when properties->>'payment_method' = 'mobile_wallet' then 1 else 0 end)
                   filter (where event = 'order_completed') as wallet_share,
                 count(*) filter (where event = 'review_read') / count(distinct customer_id)
               from events join cp using (customer_id) group by 1""",
        )
    }
    for name, (conversion, *_rest) in got.items():
        assert 0.12 <= conversion <= 0.5, name
    deal, researcher, loyal, impulsive = (
        got[n] for n in ("deal_hunter", "researcher", "loyal_repeat", "impulsive_mobile")
    )
    assert deal[3] > 0.6 > max(researcher[3], loyal[3], impulsive[3])
    assert researcher[2] > max(deal[2], impulsive[2])
    assert Decimal(deal[2]) < Decimal(loyal[2])
    assert loyal[1] > 1.5 * max(deal[1], researcher[1], impulsive[1])
    # loyal customers order again and again: most orders per buyer
    per_buyer = {n: p.orders / p.buyers for n, p in shop.truth.personas.items()}
    assert per_buyer.pop("loyal_repeat") > 1.4 * max(per_buyer.values())
    assert impulsive[4] == 1.0
    assert impulsive[5] > 0.5 > max(deal[5], researcher[5], loyal[5])
    assert researcher[6] > 3 * max(deal[6], loyal[6], impulsive[6])


def test_survey_scores_differ_by_touchpoint(shop: Shop) -> None:
    means = dict(
        rows(
            shop.con,
            """select properties->>'touchpoint', avg(score) from events
               where properties->>'survey' = 'csat' group by 1""",
        )
    )
    assert set(means) == {"delivery", "hotline", "store", "support"}
    assert max(means["hotline"], means["delivery"]) < means["store"] - 0.6
    assert means["support"] < means["store"]
    # checkout effort on mobile is worse during the break windows
    size = shop.truth.break_by_id("mobile_size_select")
    ces = dict(
        rows(
            shop.con,
            f"""select o.device = 'mobile' and o.ts_us >= {us(size.window_start)}
                       and o.ts_us < {us(size.window_end)}, avg(e.score)
                from events e join events o on o.order_id = e.order_id
                     and o.event = 'order_completed'
                where e.event = 'survey_response' and e.properties->>'survey' = 'ces'
                group by 1""",
        )
    )
    assert ces[False] > 5
    assert ces.get(True, 0.0) < ces[False]


# --------------------------------------------------------------------------- API edges


def test_load_truth_round_trips_the_file(shop: Shop, tmp_path: Path) -> None:
    truth = shop.truth
    assert truth.seed == 11
    assert truth.timezone == "Europe/Berlin"
    raw = json.loads(shop.result.truth_path.read_text())
    assert list(raw)[:4] == ["seed", "customers", "period", "timezone"]
    assert raw["period"] == {"start": "2026-01-01T00:00:00Z", "end": "2026-07-01T00:00:00Z"}
    assert raw["counts"]["revenue"] == str(truth.counts.revenue)
    assert len(raw["customer_personas"]) == CUSTOMERS
    assert {"brand_search", "tiktok_flash", "spring_sale", "push_weekend"} <= {
        c.id for c in truth.campaigns
    }
    broken = tmp_path / "truth.json"
    broken.write_text('{"seed": 1}')
    with pytest.raises(InputDataError, match="not in the simulator's format"):
        load_truth(broken)
    with pytest.raises(InputDataError, match="simulate_shop"):
        load_truth(tmp_path / "missing.json")


def test_windows_scale_to_any_period(tmp_path: Path) -> None:
    res = simulate_shop(
        tmp_path, customers=200, seed=3, start=dt.date(2025, 10, 1), days=30, progress=False
    )
    truth = load_truth(res.truth_path)
    assert truth.period_start == dt.datetime(2025, 10, 1, tzinfo=dt.UTC)
    assert truth.period_end == dt.datetime(2025, 10, 31, tzinfo=dt.UTC)
    table = pq.read_table(res.events_path)
    assert truth.period_start <= pc.min(table["ts"]).as_py()
    assert pc.max(table["ts"]).as_py() < truth.period_end
    for b in truth.breaks:
        assert truth.period_start <= b.window_start < b.window_end <= truth.period_end
    assert len(set(table["customer_id"].to_pylist())) == 200


def test_progress_bar(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    res = simulate_shop(tmp_path, customers=20, seed=2, progress=True)
    assert res.customers == 20
    assert "simulating customers" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("customers", "seed", "days", "message"),
    [
        (0, 7, 181, "customers must be at least 1, got 0"),
        (10, 7, 7, "days must be at least 14"),
        (10, -1, 181, "seed must be a non-negative integer"),
    ],
)
def test_rejects_bad_arguments(
    tmp_path: Path, customers: int, seed: int, days: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        simulate_shop(tmp_path, customers=customers, seed=seed, days=days)
