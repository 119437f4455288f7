"""``Journeymap``: the one object behind the library, the CLI and (later) the server.

    jm = Journeymap("my-project")              # reads journeymap.toml and journey.yaml there
    jm.import_file("events.csv", mapping={"customer_id": "user_id"})
    result = jm.funnel()                        # the phase funnel, a FunnelResult
    result.to_pandas()

Front doors add parsing and formatting only; every rule lives here or below.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

from journeymap.analytics.engine import connect_duckdb, register_lake, to_arrow
from journeymap.analytics.funnels import (
    FunnelResult,
    ReachResult,
    StepLevel,
    funnel,
    touchpoint_reach,
)
from journeymap.analytics.journey import JourneyCache, build_journey
from journeymap.config import Settings
from journeymap.errors import ConfigError, LakeError
from journeymap.model.spec import JourneySpec, load_spec
from journeymap.storage.lake import AppendResult, CompactResult, DeltaEventStore, LakeStats

if TYPE_CHECKING:
    import datetime as dt

    import ibis.expr.types as ir
    import pyarrow as pa

    from journeymap.analytics.attribution import AttributionResult
    from journeymap.analytics.breaks import BreaksResult
    from journeymap.analytics.experience import ExperienceResult
    from journeymap.analytics.funnels import FunnelDropoffs
    from journeymap.analytics.paths import PathLevel, StepSankey, TopPaths, TransitionGraph
    from journeymap.analytics.personas import PersonasResult
    from journeymap.analytics.retention import (
        LapsedResult,
        RepeatPurchaseResult,
        RetentionResult,
        RFMResult,
    )
    from journeymap.collect.loader import LoadResult
    from journeymap.collect.sources import Source
    from journeymap.gdpr import ErasureReceipt
    from journeymap.importing import ImportSummary
    from journeymap.model.campaigns import Campaign
    from journeymap.orchestration.report import CampaignReport
    from journeymap.orchestration.runtime import CampaignRuntime
    from journeymap.orchestration.simulate import SimulationResult
    from journeymap.storage.db import OperationalDB
    from journeymap.storage.inbox import DeadLetter
    from journeymap.storage.profiles import Profile, ProfileStore


class Journeymap:
    """A journeymap project: settings, spec, event lake and the analyses over them."""

    def __init__(
        self,
        project: str | os.PathLike[str] = ".",
        *,
        spec: JourneySpec | str | os.PathLike[str] | None = None,
        **settings: Any,
    ) -> None:
        self.settings = Settings.load(project, overrides=settings)
        self._spec = spec if isinstance(spec, JourneySpec) else None
        self._spec_path = Path(spec).resolve() if isinstance(spec, str | os.PathLike) else None
        self.store = DeltaEventStore(self.settings.lake)
        self._cache = JourneyCache(self.settings.cache_dir)
        self._con: Any = None
        self._db: OperationalDB | None = None
        self._journey: tuple[str, Path, ir.Table] | None = None
        self._campaigns: CampaignRuntime | None = None
        self.last_journey_built = False

    # -- project ---------------------------------------------------------------------------
    @property
    def spec(self) -> JourneySpec:
        """The journey spec (loaded on first use; errors name file and line)."""
        if self._spec is None:
            self._spec = load_spec(self._spec_path or self.settings.spec)
        return self._spec

    @property
    def con(self) -> Any:
        """The Ibis connection (DuckDB, in memory) analyses run on."""
        if self.settings.engine != "duckdb":
            raise ConfigError(
                f"engine {self.settings.engine!r} is not served by the facade yet; use the "
                "analytics functions with journeymap.analytics.engine.connect_pyspark()"
            )
        if self._con is None:
            self._con = connect_duckdb(
                threads=self.settings.threads, memory_limit=self.settings.memory_limit
            )
        return self._con

    @property
    def db(self) -> OperationalDB:
        """The operational database (profiles, consent, sources, inbox); created on first use."""
        if self._db is None:
            from journeymap.storage.db import OperationalDB, database_url

            self._db = OperationalDB(
                database_url(self.settings.database, self.settings.project_dir)
            )
        return self._db

    def has_db(self) -> bool:
        """Whether an operational database exists (without creating one)."""
        if self._db is not None:
            return True
        url = self.settings.database
        if not url.startswith("sqlite"):
            return True
        # a SQLite file: looked up without importing SQLAlchemy (analyses start faster)
        path = Path(url.split(":///", 1)[1].split("?", 1)[0]) if ":///" in url else None
        if path is None:
            return True  # let database_url explain what is wrong with it
        return (self.settings.project_dir / path).exists()

    @property
    def profiles(self) -> ProfileStore:
        from journeymap.storage.profiles import ProfileStore

        return ProfileStore(self.db)

    def close(self) -> None:
        if self._con is not None:
            self._con.disconnect()
            self._con = None
            self._journey = None
        self._campaigns = None
        if self._db is not None:
            self._db.close()
            self._db = None

    def __enter__(self) -> Journeymap:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- events ----------------------------------------------------------------------------
    def import_file(
        self,
        path: str | os.PathLike[str],
        *,
        format: Literal["csv", "jsonl", "parquet"] | None = None,
        preset: Literal["segment", "ga4"] | None = None,
        mapping: Mapping[str, str] | None = None,
        timezone: str | None = None,
        source: str | None = None,
        progress: bool = False,
    ) -> ImportSummary:
        """Import a CSV / JSONL / Parquet file into the lake (idempotent; rejects to a file)."""
        from journeymap.importing import import_file

        p = Path(path)
        rejects = self.settings.rejects_dir / f"{p.name}.rejects.jsonl"
        return import_file(
            self.store,
            p,
            format=format,
            preset=preset,
            mapping=mapping,
            timezone=timezone or self.settings.timezone,
            source=source,
            default_currency=self.settings.currency,
            rejects_path=rejects,
            progress=progress,
            max_line_bytes=self.settings.import_max_line_bytes,
        )

    def append(self, events: pa.Table) -> AppendResult:
        """Append events that already follow ``EVENT_SCHEMA`` (idempotent on event_id)."""
        return self.store.append(events)

    def delete_customer(self, customer_id: str, anonymous_ids: Sequence[str] = ()) -> int:
        return self.store.delete_customer(customer_id, anonymous_ids)

    def compact(self, *, vacuum_hours: int | None = 168) -> CompactResult:
        return self.store.compact(vacuum_hours=vacuum_hours)

    def lake_stats(self) -> LakeStats:
        return self.store.stats()

    # -- the journey table -------------------------------------------------------------------
    def events(self) -> ir.Table:
        """The lake's current snapshot as an Ibis table."""
        if not self.store.exists():
            raise LakeError(
                f"no event lake at {self.store.path}: import events first "
                "(journeymap import FILE, or journeymap demo for sample data)"
            )
        return register_lake(self.con, self.store)

    def journey(self) -> ir.Table:
        """The journey table, built once per lake version, spec and identity graph, then read
        from cache."""
        version = self.store.version()
        if version is None:
            self.events()  # raises the LakeError that says what to do
        identity_version = self.profiles.identity_version() if self.has_db() else None
        key = JourneyCache.key(
            self.store.path,
            version,
            self.spec,
            self.settings.session_gap_minutes,
            identity_version,
        )
        if self._journey is not None and self._journey[0] == key:
            self.last_journey_built = False
            return self._journey[2]
        cached = self._cache.path_for(key)
        if cached.exists():  # a hit needs neither the lake's dataset nor the expression
            self.last_journey_built = False
            table = self.con.read_parquet(cached, table_name="journey")
            self._journey = (key, cached, table)
            return table
        id_map = None
        if identity_version:  # 0 or None: no links recorded, nothing to resolve
            self.con.con.register("identity_map", self.profiles.identity_map())
            id_map = self.con.table("identity_map")
        expr = build_journey(
            self.events(),
            self.spec,
            session_gap_minutes=self.settings.session_gap_minutes,
            identity_map=id_map,
        )
        path, self.last_journey_built = self._cache.get_or_build(self.con, key, expr)
        table = self.con.read_parquet(path, table_name="journey")
        self._journey = (key, path, table)
        return table

    def journey_path(self) -> Path:
        """The Parquet file of the current journey table (built if needed)."""
        self.journey()
        assert self._journey is not None
        return self._journey[1]

    # -- collection: sources, inbox, profiles, GDPR ------------------------------------------
    def add_source(self, name: str, *, rate_limit: int | None = None) -> tuple[Source, str]:
        """Create a source; returns it and its write key (shown once, stored hashed)."""
        from journeymap.collect.sources import SourceRegistry

        return SourceRegistry(self.db).add(name, rate_limit=rate_limit)

    def sources(self) -> list[Source]:
        from journeymap.collect.sources import SourceRegistry

        return SourceRegistry(self.db).list()

    def rotate_source(self, name: str) -> str:
        """A new write key for ``name`` (the old one stops working)."""
        from journeymap.collect.sources import SourceRegistry

        return SourceRegistry(self.db).rotate(name)

    def remove_source(self, name: str) -> None:
        from journeymap.collect.sources import SourceRegistry

        SourceRegistry(self.db).remove(name)

    def load(self) -> list[LoadResult]:
        """Move every collected message from the inbox into the lake (exactly once)."""
        from journeymap.collect.loader import InboxLoader

        loader = InboxLoader(
            self.db,
            self.store,
            default_currency=self.settings.currency,
            retention_days=self.settings.inbox_retention_days,
        )
        results = loader.load_all()
        loader.prune()
        return results

    def dead_letters(self, limit: int = 100, source: str | None = None) -> list[DeadLetter]:
        from journeymap.storage.inbox import InboxStore

        return InboxStore(self.db).dead_letters(limit=limit, source=source)

    def profile(self, any_id: str) -> Profile | None:
        """The profile behind a customer, user or anonymous id."""
        return self.profiles.find(any_id)

    def gdpr_export(self, any_id: str) -> dict[str, Any]:
        """Everything held about a customer: events, profile, traits, consent (JSON-ready)."""
        from journeymap.gdpr import export_customer

        return export_customer(self.db, self.store, any_id)

    def gdpr_delete(self, any_id: str) -> ErasureReceipt:
        """Erase a customer everywhere (lake files vacuumed, profiles, inbox, caches)."""
        from journeymap.gdpr import delete_customer

        receipt = delete_customer(
            self.db, self.store, any_id, cache_dirs=(self.settings.cache_dir,)
        )
        self._journey = None
        return receipt

    # -- analyses ----------------------------------------------------------------------------
    def funnel(
        self,
        steps: Sequence[str] | None = None,
        *,
        by: StepLevel = "phase",
        skips: bool | None = None,
        window_seconds: int | None = None,
        order: Literal["loose", "strict"] = "loose",
        exclude: Sequence[str] = (),
        per: Literal["customer", "session"] = "customer",
        breakdown: str | None = None,
        lang: str | None = None,
    ) -> FunnelResult:
        """An ordered funnel; by default the phase funnel of the spec (skipping allowed).

        ``order="strict"``: each step must be the very next event at the funnel's level;
        ``exclude``: steps that end the attempt; ``per="session"``: sessions instead of
        customers; ``breakdown``: a journey column, ``cohort`` or ``persona``.
        """
        spec = self.spec
        if steps is None:
            if by != "phase":
                raise ConfigError(f"give the steps of a {by} funnel (e.g. steps=[...])")
            steps = spec.phase_ids()
        steps = list(steps)
        self._check_steps([*steps, *exclude], by)
        language = lang or spec.language
        labels = [self._label(s, by, language) for s in steps]
        if skips is None:
            skips = by == "phase" and order == "loose"
        return funnel(
            self.journey(),
            steps,
            level=by,
            skips=skips,
            window_seconds=window_seconds,
            labels=labels,
            order=order,
            exclude=exclude,
            per=per,
            breakdown=breakdown,
            personas=self.persona_table() if breakdown == "persona" else None,
        )

    def funnel_dropoffs(
        self,
        steps: Sequence[str],
        at_step: int,
        *,
        by: StepLevel = "phase",
        skips: bool | None = None,
        window_seconds: int | None = None,
        top: int = 10,
    ) -> FunnelDropoffs:
        """Who left the funnel before ``at_step`` (1-based), and what they did next."""
        from journeymap.analytics.funnels import funnel_dropoffs

        self._check_steps(steps, by)
        return funnel_dropoffs(
            self.journey(),
            list(steps),
            at_step,
            level=by,
            skips=by == "phase" if skips is None else skips,
            window_seconds=window_seconds,
            top=top,
        )

    def transitions(
        self, *, by: PathLevel = "phase", collapse_repeats: bool = False, times: bool = True
    ) -> TransitionGraph:
        """Transition graph with (start), (exit) and (conversion) nodes; ``times=False``
        leaves out the median time per edge (about half the cost at the event level)."""
        from journeymap.analytics.paths import transitions

        return transitions(self.journey(), by, collapse_repeats=collapse_repeats, times=times)

    def top_paths(
        self,
        *,
        by: PathLevel = "channel",
        to: Literal["conversion", "exit"] = "conversion",
        limit: int = 20,
    ) -> TopPaths:
        """The most frequent paths to conversion (or exit), with an "other" row."""
        from journeymap.analytics.paths import top_paths

        return top_paths(self.journey(), by, to=to, limit=limit)

    def step_sankey(
        self, *, by: PathLevel = "phase", steps: int = 5, top_n: int = 8, anchor: str | None = None
    ) -> StepSankey:
        """Step-by-step flows whose column totals reconcile with the funnel."""
        from journeymap.analytics.paths import step_sankey

        return step_sankey(self.journey(), by, steps=steps, top_n=top_n, anchor=anchor)

    def reach(self, *, lang: str | None = None) -> ReachResult:
        """Customers, events and conversion per touchpoint of the spec."""
        language = lang or self.spec.language
        tps = [(t.id, t.label_in(language), t.phase, t.channel) for t in self.spec.touchpoints]
        return touchpoint_reach(self.journey(), tps)

    def attribution(
        self,
        *,
        by: Literal["channel", "touchpoint"] = "channel",
        models: Sequence[str] | None = None,
        touch: Literal["event", "session"] = "session",
        lookback_days: float | None = 30,
        markov_order: int = 1,
        include_transactional: bool = False,
        **options: Any,
    ) -> AttributionResult:
        """Credit for conversions per channel or touchpoint under several models.

        ``touch="session"`` (the default) counts how each session began, the usual unit of
        marketing attribution; ``"event"`` counts every event. The spec's transactional
        touchpoints (shipping notices, surveys: ``transactional: true``) are no marketing
        touches and are left out unless ``include_transactional``; a session they opened
        then has no touch. ``options`` go to ``journeymap.analytics.attribution.attribution``
        (half_life_days, seed, …).
        """
        from journeymap.analytics.attribution import MODELS, attribution

        journey = self.journey()
        transactional = [t.id for t in self.spec.touchpoints if t.transactional]
        if transactional and not include_transactional:
            journey = journey.filter(
                journey.touchpoint.isnull() | ~journey.touchpoint.isin(transactional)
            )
        return attribution(
            journey,
            level=by,
            models=tuple(models) if models else MODELS,  # type: ignore[arg-type]
            touch=touch,
            lookback_days=lookback_days,
            markov_order=markov_order,
            **options,
        )

    def experience(self, *, confidence: float = 0.95, lang: str | None = None) -> ExperienceResult:
        """NPS, CSAT and CES per touchpoint and phase, with sample sizes and intervals."""
        from journeymap.analytics.experience import experience

        return experience(self.journey(), self.spec, confidence=confidence, lang=lang)

    def retention(
        self,
        *,
        period: Literal["day", "week", "month"] = "week",
        cohort: Literal["first_event", "first_conversion"] = "first_event",
        activity: Literal["any", "conversion"] = "any",
        breakdown: str | None = None,
        **options: Any,
    ) -> RetentionResult:
        """The cohort retention matrix (optionally broken down by a journey column)."""
        from journeymap.analytics.retention import retention

        return retention(
            self.journey(),
            period=period,
            cohort=cohort,
            activity=activity,
            breakdown=breakdown,
            **options,
        )

    def repeat_purchase(self, *, within_days: int | None = None) -> RepeatPurchaseResult:
        from journeymap.analytics.retention import repeat_purchase

        return repeat_purchase(self.journey(), within_days=within_days)

    def rfm(self, *, as_of: dt.datetime | None = None) -> RFMResult:
        """Recency / frequency / monetary scores and named segments of every buyer."""
        from journeymap.analytics.retention import rfm

        return rfm(self.journey(), as_of=as_of)

    def lapsed(
        self, *, k: float = 2.0, as_of: dt.datetime | None = None, min_purchases: int = 2
    ) -> LapsedResult:
        """Customers inactive for longer than ``k`` times their own purchase cadence."""
        from journeymap.analytics.retention import lapsed

        return lapsed(self.journey(), k=k, as_of=as_of, min_purchases=min_purchases)

    def personas(
        self,
        *,
        method: Literal["kmeans", "gmm"] = "kmeans",
        k: int | None = None,
        seed: int = 0,
        lang: str | None = None,
    ) -> PersonasResult:
        """Cluster customers into personas; assignments are stored for breakdowns."""
        from journeymap.analytics.personas import find_personas

        extra: dict[str, Any] = {} if k is None else {"k": k}
        return find_personas(
            self.journey(),
            self.spec,
            timezone=self.settings.timezone,
            method=method,
            seed=seed,
            path=self._persona_path(),
            lang=lang,
            **extra,
        )

    def _persona_path(self) -> Path:
        self.journey()
        assert self._journey is not None
        return self.settings.cache_dir / f"personas-{self._journey[0]}.parquet"

    def persona_table(self) -> ir.Table | None:
        """``customer_id, persona, persona_label`` of the last ``personas()`` run on this
        journey table, or None."""
        path = self._persona_path()
        return self.con.read_parquet(path, table_name="personas") if path.exists() else None

    def breaks(self, *, lang: str | None = None, **options: Any) -> BreaksResult:
        """Journey breaks: step exits, change points, bouncing campaigns, unfinished processes.

        Uses the stored persona assignments, when there are any, to say where a break
        concentrates. ``options`` go to ``journeymap.analytics.breaks.find_breaks``.
        """
        from journeymap.analytics.breaks import find_breaks

        return find_breaks(
            self.journey(), self.spec, personas=self.persona_table(), lang=lang, **options
        )

    # -- the journey map and the report ---------------------------------------------------------
    def periods(self, days: int = 90) -> tuple[Any, ir.Table, ir.Table]:
        """The last ``days`` of data and the ``days`` before: (Period, current, previous)."""
        import datetime as _dt

        from journeymap.render.build import Period

        stats = self.lake_stats()
        if stats.last_date is None:
            self.events()  # raises the LakeError that says what to do
        end = _dt.date.fromisoformat(str(stats.last_date))
        start = end - _dt.timedelta(days=days - 1)
        prev_end = start - _dt.timedelta(days=1)
        prev_start = prev_end - _dt.timedelta(days=days - 1)

        def us(d: _dt.date) -> int:
            return int(_dt.datetime(d.year, d.month, d.day, tzinfo=_dt.UTC).timestamp()) * 10**6

        j = self.journey()
        day = 86_400 * 10**6
        current = j.filter((j.ts_us >= us(start)) & (j.ts_us < us(end) + day))
        previous = j.filter((j.ts_us >= us(prev_start)) & (j.ts_us < us(prev_end) + day))
        return Period(start, end, prev_start, prev_end), current, previous

    def journey_map(
        self,
        *,
        lang: str | None = None,
        days: int = 90,
        persona: str | None = None,
        personas: PersonasResult | None = None,
        breaks: BreaksResult | None = None,
    ) -> Any:
        """The journey map: the last ``days`` against the ``days`` before.

        ``persona`` (a spec persona id or a data persona id) restricts the map to that
        persona's customers; ``personas``/``breaks`` reuse results already computed.
        """
        from journeymap.analytics.experience import experience
        from journeymap.render.adapters import (
            detected_breaks,
            persona_profiles,
            phase_experience,
            survey_count,
        )
        from journeymap.render.build import build_journey_map

        language = cast(Any, lang or self.spec.language)
        period, current, previous = self.periods(days)
        narrative, profile = None, None
        found_breaks: tuple[Any, ...] = ()
        if persona is None:
            found_breaks = tuple(detected_breaks(breaks or self.breaks(lang=language), self.spec))
        else:
            found = personas or self.personas(lang=language)
            match = next(
                (p for p in found.personas if persona in (p.narrative_id, p.persona)), None
            )
            table = self.persona_table()
            if match is None or table is None:
                known = ", ".join(p.narrative_id or p.persona for p in found.personas)
                raise ConfigError(f"unknown persona {persona!r}; the data has: {known}")
            members = table.filter(table.persona == match.persona).select("customer_id")
            current = current.semi_join(members, "customer_id")
            previous = previous.semi_join(members, "customer_id")
            spec_ids = {p.id for p in self.spec.personas}
            narrative = match.narrative_id if match.narrative_id in spec_ids else None
            profile = persona_profiles(found)[found.personas.index(match)]
        steps = self.spec.phase_ids()
        labels = [self.spec.phase(p).label_in(language) for p in steps]
        exp_now = experience(current, self.spec, lang=language)
        exp_before = experience(previous, self.spec, lang=language)
        tps = [(t.id, t.label_in(language), t.phase, t.channel) for t in self.spec.touchpoints]
        return build_journey_map(
            self.spec,
            funnel(current, steps, labels=labels),
            touchpoint_reach(current, tps),
            lang=language,
            previous=funnel(previous, steps, labels=labels),
            period=period,
            spec_file=self.settings.spec.name,
            persona=narrative,
            persona_profile=profile,
            experience=phase_experience(exp_now, exp_before),
            breaks=found_breaks,
            survey_n=survey_count(exp_now),
            currency=self.settings.currency,
        )

    def report(self, *, lang: str | None = None, days: int = 90) -> Any:
        """The whole report: the journey map and its companion figures (render.ReportData)."""
        from journeymap.render.adapters import (
            attribution_credits,
            detected_breaks,
            path_transitions,
            persona_profiles,
            retention_cohorts,
            touchpoint_transitions,
        )
        from journeymap.render.build import (
            build_attribution,
            build_break,
            build_funnel,
            build_graph,
            build_personas,
            build_report,
            build_retention,
            build_sankey,
        )

        language = cast(Any, lang or self.spec.language)
        found = self.personas(lang=language)  # first: breaks then know the personas
        found_breaks = self.breaks(lang=language)
        maps = [self.journey_map(lang=language, days=days, breaks=found_breaks)]
        maps += [
            self.journey_map(lang=language, days=days, persona=p.persona, personas=found)
            for p in found.personas
        ]
        attribution = self.attribution(models=("first", "last", "linear", "markov", "shapley"))
        retention = self.retention(period="month")
        return build_report(
            maps,
            funnel=build_funnel(self.funnel(lang=language), lang=language),
            attribution=build_attribution(
                attribution_credits(attribution),
                lang=language,
                conversions=attribution.conversions,
            ),
            retention=build_retention(
                retention_cohorts(retention), lang=language, period_unit="month"
            ),
            personas=build_personas(self.spec, persona_profiles(found), language),
            sankey=build_sankey(
                path_transitions(self.step_sankey(by="phase", steps=6)),
                lang=language,
                labels={p.id: p.label_in(language) for p in self.spec.phases},
            ),
            breaks=[
                build_break(b, self.spec, language, self.settings.currency)
                for b in detected_breaks(found_breaks, self.spec)
            ],
            graph=build_graph(
                self.spec,
                touchpoint_transitions(self.transitions(by="touchpoint", collapse_repeats=True)),
                lang=language,
            ),
        )

    def write_report(
        self,
        html: str | os.PathLike[str] | None,
        *,
        png: str | os.PathLike[str] | None = None,
        figures_dir: str | os.PathLike[str] | None = None,
        lang: str | None = None,
        days: int = 90,
        pdf: str | os.PathLike[str] | None = None,
    ) -> list[Path]:
        """Write the offline HTML report, the map as PNG or vector PDF, and/or PNG+SVG per
        figure."""
        from journeymap.render.report import render_map_pdf, render_map_png, write_report

        report = self.report(lang=lang, days=days)
        written = write_report(
            report,
            None if html is None else Path(html),
            png_dir=None if figures_dir is None else Path(figures_dir),
            svg_dir=None if figures_dir is None else Path(figures_dir),
        )
        if png is not None:
            target = Path(png)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(render_map_png(report.maps[0]))
            written.append(target)
        if pdf is not None:
            target = Path(pdf)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(render_map_pdf(report.maps[0]))
            written.append(target)
        return written

    # -- campaigns ---------------------------------------------------------------------------
    @property
    def campaigns(self) -> CampaignRuntime:
        """The project's campaign runtime: engine, worker, channels and tracking from the
        settings (campaigns from ``campaigns_dir``)."""
        if self._campaigns is None:
            from journeymap.orchestration.runtime import CampaignRuntime

            self._campaigns = CampaignRuntime.open(self.settings, self.db)
        return self._campaigns

    def campaign(self, campaign_id: str) -> Campaign:
        """A campaign of ``campaigns_dir``, else a shipped playbook of that id."""
        from journeymap.orchestration.runtime import project_campaigns
        from journeymap.playbooks import load_playbooks

        known = {c.id: c for c in load_playbooks()}
        known.update({c.id: c for c in project_campaigns(self.settings)})
        if campaign_id not in known:
            raise ConfigError(
                f"unknown campaign {campaign_id!r}; known: {', '.join(sorted(known))} (files "
                f"in {self.settings.campaigns_dir} and the shipped playbooks)"
            )
        return known[campaign_id]

    def campaign_report(self, campaign_id: str) -> CampaignReport:
        """Sends, deliveries, opens, clicks, conversions, revenue per group and variant, and
        the uplift against the holdout with its 95 % interval."""
        import json

        from journeymap.collect.internal import INTERNAL_SOURCE
        from journeymap.orchestration.report import ENGAGEMENT, campaign_report

        feedback: list[tuple[str, str]] = []
        revenue: dict[tuple[str, Any], Any] = {}
        if self.store.exists():
            ev = self.events()
            rows = to_arrow(
                ev.filter(
                    (ev.source == INTERNAL_SOURCE)
                    & (ev.campaign == campaign_id)
                    & ev.event.isin(list(ENGAGEMENT))
                ).select("event", "properties")
            ).to_pylist()
            for r in rows:
                sid = json.loads(r["properties"] or "{}").get("send_id")
                if sid:
                    feedback.append((r["event"], str(sid)))
            goal = self.campaign(campaign_id).goal if self._known(campaign_id) else None
            if goal is not None:
                orders = to_arrow(
                    ev.filter((ev.event == goal.event) & ev.revenue.notnull()).select(
                        "customer_id", "ts", "revenue"
                    )
                ).to_pylist()
                revenue = {(o["customer_id"], o["ts"]): o["revenue"] for o in orders}
        return campaign_report(self.db, campaign_id, feedback=feedback, goal_revenue=revenue)

    def _known(self, campaign_id: str) -> bool:
        try:
            self.campaign(campaign_id)
        except ConfigError:
            return False
        return True

    def simulate_campaigns(
        self,
        campaigns: Sequence[str] | None = None,
        *,
        days: int = 30,
        tail_days: int = 14,
    ) -> SimulationResult:
        """Replay the last ``days`` of the lake through campaigns (default: those of
        ``campaigns_dir``, else the shipped playbooks) without sending anything: who would
        have entered and what they would have received. Phase triggers see a ``Phase
        Entered`` event whenever a customer's phase (from the journey table) changes."""
        import datetime as dt
        import json

        import ibis

        from journeymap.model.campaigns import SendStep, WaitForStep
        from journeymap.orchestration.engine import PHASE_EVENT
        from journeymap.orchestration.runtime import policy_settings, project_campaigns
        from journeymap.orchestration.simulate import simulate
        from journeymap.playbooks import load_playbooks

        flows = (
            [self.campaign(c) for c in campaigns]
            if campaigns
            else (project_campaigns(self.settings) or load_playbooks())
        )
        names = {c.trigger.event for c in flows if c.trigger.event}
        names |= {c.goal.event for c in flows if c.goal is not None}
        names |= {s.event for c in flows for s in c.steps if isinstance(s, WaitForStep)}
        j = self.journey()
        end = to_arrow(j.ts.max()).as_py()
        if end is None:
            return simulate(flows, [])
        since = end - dt.timedelta(days=days)
        recent = j.filter(j.ts >= since)
        promoted = ("order_id", "product_id", "category", "revenue", "channel", "campaign")
        rows = to_arrow(
            recent.filter(recent.event.isin(sorted(names))).select(
                "customer_id", "event", "ts", "event_id", "properties", *promoted
            )
        ).to_pylist()
        events: list[dict[str, Any]] = []
        for r in rows:
            props = json.loads(r["properties"]) if r["properties"] else {}
            props.update({k: str(r[k]) for k in promoted if r[k] is not None})
            events.append({**r, "properties": props})
        if any(c.trigger.phase for c in flows):
            phased = j.filter(j.phase.notnull())  # like the worker's PhaseTracker
            w = ibis.window(group_by=phased.customer_id, order_by=phased.step_index)
            changes = phased.mutate(previous=phased.phase.lag().over(w))
            changes = changes.filter(
                (changes.ts >= since)
                & (changes.previous.isnull() | (changes.phase != changes.previous))
            )
            for r in to_arrow(changes.select("customer_id", "ts", "phase", "event_id")).to_pylist():
                events.append(
                    {
                        "customer_id": r["customer_id"],
                        "event": PHASE_EVENT,
                        "ts": r["ts"],
                        "event_id": f"phase-{r['event_id']}",
                        "properties": {"phase": r["phase"]},
                    }
                )
        channels = {s.channel for c in flows for s in c.steps if isinstance(s, SendStep)}
        traits: dict[str, dict[str, Any]] = {}
        if channels and self.has_db():
            store = self.profiles
            for cid in {e["customer_id"] for e in events}:
                profile = store.find(cid)
                if profile is not None:
                    traits[cid] = dict(profile.traits)
        return simulate(
            flows,
            events,
            settings=policy_settings(self.settings),
            tail=dt.timedelta(days=tail_days),
            traits=traits,
        )

    def _check_steps(self, steps: Sequence[str], by: str) -> None:
        if by == "phase":
            allowed = self.spec.phase_ids()
        elif by == "touchpoint":
            allowed = [t.id for t in self.spec.touchpoints]
        else:
            return
        unknown = [s for s in steps if s not in allowed]
        if unknown:
            raise ConfigError(
                f"unknown {by}(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(allowed)}"
            )

    def _label(self, step: str, by: str, lang: str) -> str:
        if by == "phase":
            return self.spec.phase(step).label_in(lang)
        if by == "touchpoint":
            return self.spec.touchpoint(step).label_in(lang)
        return step
