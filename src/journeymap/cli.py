"""The ``journeymap`` command: parsing and formatting around the ``Journeymap`` facade."""

from __future__ import annotations

import contextlib
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

import click
from rich.console import Console
from rich.table import Table

from journeymap import __version__
from journeymap.analytics.funnels import FunnelResult, ReachResult
from journeymap.analytics.results import TableResult
from journeymap.config import SETTINGS, Settings, settings_markdown
from journeymap.errors import JourneymapError
from journeymap.facade import Journeymap

# Wide tables when the output is a file or a pipe (rich would assume 80 columns).
console = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)
F = TypeVar("F", bound=Callable[..., Any])


def _fail(exc: BaseException) -> None:
    err_console.print(f"[bold red]error:[/] {exc}", markup=True, soft_wrap=True)
    sys.exit(2 if isinstance(exc, ValueError) else 1)


class _Group(click.Group):
    """Turns journeymap's own errors into one clear message and exit code 2 (bad input)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except JourneymapError as exc:
            _fail(exc)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="journeymap")
@click.option(
    "-p",
    "--project",
    type=click.Path(file_okay=False, path_type=Path),
    default=".",
    envvar="JOURNEYMAP_PROJECT",
    show_default=True,
    help="Project folder (holds journeymap.toml and journey.yaml).",
)
@click.pass_context
def main(ctx: click.Context, project: Path) -> None:
    """journeymap: customer journey maps from data."""
    ctx.obj = project


def _jm(ctx: click.Context, **overrides: Any) -> Journeymap:
    return Journeymap(cast(Path, ctx.obj), **overrides)


# -- formatting helpers --------------------------------------------------------------------
def human_duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    for limit, unit, div in ((120, "s", 1), (7200, "min", 60), (172800, "h", 3600)):
        if seconds < limit:
            return f"{seconds / div:.0f} {unit}" if unit == "s" else f"{seconds / div:.1f} {unit}"
    return f"{seconds / 86400:.1f} d"


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f} %"


def funnel_table(result: FunnelResult, title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for col, justify in (
        ("#", "right"),
        ("step", "left"),
        ("customers", "right"),
        ("of start", "right"),
        ("from previous", "right"),
        ("skipped previous", "right"),
        ("median time from previous", "right"),
    ):
        table.add_column(col, justify=cast(Literal["left", "right"], justify))
    for s in result.steps:
        table.add_row(
            str(s.index),
            s.label,
            f"{s.customers:,}",
            _pct(s.conversion_from_start),
            _pct(s.conversion_from_previous),
            f"{s.skipped_previous:,}" if s.index > 1 else "–",
            human_duration(s.median_seconds_from_previous),
        )
    return table


def reach_table(result: ReachResult, title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for col in ("phase", "touchpoint", "channel", "customers", "reach", "events", "conversion"):
        table.add_column(
            col, justify="left" if col in ("phase", "touchpoint", "channel") else "right"
        )
    for t in result.touchpoints:
        table.add_row(
            t.phase,
            t.label,
            t.channel or "",
            f"{t.customers:,}",
            _pct(t.share_of_customers),
            f"{t.events:,}",
            _pct(t.conversion_rate),
        )
    return table


def records_table(records: Sequence[dict[str, Any]], title: str, limit: int = 60) -> Table:
    """Any result's rows as a table (numbers right-aligned, floats to 3 decimals)."""
    table = Table(title=title, title_justify="left")
    if not records:
        table.add_column("(no rows)")
        return table
    columns = list(records[0])
    for col in columns:
        numeric = isinstance(records[0][col], int | float) and not isinstance(records[0][col], bool)
        table.add_column(col, justify="right" if numeric else "left")
    for row in records[:limit]:
        cells = []
        for col in columns:
            v = row.get(col)
            if v is None:
                cells.append("–")
            elif isinstance(v, float):
                cells.append(f"{v:,.3f}")
            elif isinstance(v, int) and not isinstance(v, bool):
                cells.append(f"{v:,}")
            else:
                cells.append(str(v))
        table.add_row(*cells)
    if len(records) > limit:
        table.caption = f"{len(records) - limit:,} more rows: use --format csv or --out"
    return table


def _emit(result: TableResult, fmt: str, outs: Sequence[Path], table: Table | None = None) -> None:
    if fmt == "json":
        import json

        click.echo(json.dumps(result.to_dict(), indent=2))
    elif fmt == "csv":
        click.echo(result.to_pandas().to_csv(index=False), nl=False)
    else:
        console.print(table if table is not None else records_table(result.to_records(), ""))
    for out in outs:
        written = result.write(out)
        err_console.print(f"wrote {written}")


# -- commands ------------------------------------------------------------------------------
@main.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path), default=".")
@click.option(
    "--model",
    type=click.Choice(["six-phase", "five-phase", "five-step", "three-stage"]),
    default="six-phase",
    show_default=True,
    help="Phase model of the journey.",
)
@click.option("--lang", type=click.Choice(["en", "de"]), default="en", show_default=True)
@click.option("--name", default="Customer journey", show_default=True, help="Journey name.")
@click.option("--timezone", default="UTC", show_default=True, help="Business time zone.")
@click.option("--force", is_flag=True, help="Overwrite existing files.")
def init(directory: Path, model: str, lang: str, name: str, timezone: str, force: bool) -> None:
    """Scaffold a project: journeymap.toml and a journey.yaml for a phase model."""
    from journeymap.model.scaffold import init_project

    for path in init_project(
        directory, model=model, lang=lang, name=name, timezone=timezone, force=force
    ):
        console.print(f"created {path}")
    console.print("next: journeymap import EVENTS_FILE, then journeymap analyze funnel")


@main.command("import")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "jsonl", "parquet"]),
    default=None,
    help="File format (default: from the file name).",
)
@click.option(
    "--preset",
    type=click.Choice(["segment", "ga4"]),
    default=None,
    help="Column layout of a known export.",
)
@click.option(
    "--map",
    "mapping",
    default=None,
    metavar="FIELD=COLUMN,...",
    help="Map event fields to your columns, e.g. customer_id=user_id,ts=timestamp.",
)
@click.option("--timezone", default=None, help="Time zone of naive timestamps.")
@click.option("--source", default=None, help="Source name stored with the events.")
@click.option("--progress/--no-progress", default=True, show_default=True)
@click.pass_context
def import_(
    ctx: click.Context,
    files: tuple[Path, ...],
    fmt: str | None,
    preset: str | None,
    mapping: str | None,
    timezone: str | None,
    source: str | None,
    progress: bool,
) -> None:
    """Import event files (CSV, JSONL, Parquet; .gz too) into the lake, idempotently."""
    from journeymap.importing import parse_mapping

    jm = _jm(ctx)
    parsed = parse_mapping(mapping) if mapping else None
    rejected = 0
    for f in files:
        summary = jm.import_file(
            f,
            format=cast(Any, fmt),
            preset=cast(Any, preset),
            mapping=parsed,
            timezone=timezone,
            source=source,
            progress=progress,
        )
        console.print(str(summary))
        rejected += summary.rows_rejected
    if rejected:
        sys.exit(3)


@main.group()
def analyze() -> None:
    """Analyses of the journey table (table, CSV or JSON)."""


_fmt_option = click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    show_default=True,
    help="What to print.",
)
_out_option = click.option(
    "--out",
    "outs",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the result to this .csv or .json file (repeatable).",
)


def parse_duration(text: str | None) -> int | None:
    """'30m', '12h', '7d', '45s' or seconds → seconds."""
    if text is None:
        return None
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    t = text.strip().lower()
    try:
        if t[-1] in units:
            return int(float(t[:-1]) * units[t[-1]])
        return int(t)
    except (ValueError, IndexError):
        raise click.BadParameter(
            f"{text!r} is not a duration; use e.g. 45s, 30m, 12h, 7d or 2w"
        ) from None


@analyze.command("funnel")
@click.option(
    "--steps", default=None, metavar="A,B,C", help="Ordered steps (default: the spec's phases)."
)
@click.option(
    "--by",
    type=click.Choice(["phase", "touchpoint", "event", "channel"]),
    default="phase",
    show_default=True,
    help="What the steps name.",
)
@click.option(
    "--strict/--allow-skips",
    default=None,
    help="Stop at the first missing step (default: skips allowed for phases).",
)
@click.option("--window", default=None, help="Conversion window from the first step, e.g. 7d.")
@click.option(
    "--order",
    type=click.Choice(["loose", "strict"]),
    default="loose",
    show_default=True,
    help="strict: each step must be the very next event.",
)
@click.option("--exclude", default=None, metavar="X,Y", help="Steps that end an attempt.")
@click.option(
    "--per", type=click.Choice(["customer", "session"]), default="customer", show_default=True
)
@click.option(
    "--breakdown",
    default=None,
    help="A journey column (device, channel, campaign, …), cohort or persona.",
)
@click.option("--lang", type=click.Choice(["en", "de"]), default=None)
@_fmt_option
@_out_option
@click.pass_context
def analyze_funnel(
    ctx: click.Context,
    steps: str | None,
    by: str,
    strict: bool | None,
    window: str | None,
    order: str,
    exclude: str | None,
    per: str,
    breakdown: str | None,
    lang: str | None,
    fmt: str,
    outs: tuple[Path, ...],
) -> None:
    """Customers reaching each step in order, conversion and median time between steps."""
    jm = _jm(ctx)
    result = jm.funnel(
        [s.strip() for s in steps.split(",") if s.strip()] if steps else None,
        by=cast(Any, by),
        skips=None if strict is None else not strict,
        window_seconds=parse_duration(window),
        order=cast(Any, order),
        exclude=[x.strip() for x in exclude.split(",") if x.strip()] if exclude else (),
        per=cast(Any, per),
        breakdown=breakdown,
        lang=lang,
    )
    _emit(result, fmt, outs, funnel_table(result, f"Funnel by {by} ({result.entered:,} entered)"))


@analyze.command("dropoffs")
@click.option("--steps", required=True, metavar="A,B,C", help="The funnel's ordered steps.")
@click.option(
    "--at",
    "at_step",
    type=click.IntRange(min=2),
    required=True,
    help="The step (1-based) customers did not reach.",
)
@click.option(
    "--by",
    type=click.Choice(["phase", "touchpoint", "event", "channel"]),
    default="phase",
    show_default=True,
)
@click.option("--top", type=int, default=10, show_default=True)
@_fmt_option
@_out_option
@click.pass_context
def analyze_dropoffs(
    ctx: click.Context,
    steps: str,
    at_step: int,
    by: str,
    top: int,
    fmt: str,
    outs: tuple[Path, ...],
) -> None:
    """Who left the funnel before a step, and what they did next (--out lists them)."""
    result = _jm(ctx).funnel_dropoffs(
        [x.strip() for x in steps.split(",") if x.strip()], at_step, by=cast(Any, by), top=top
    )
    _emit(result, fmt, outs)


@analyze.command("transitions")
@click.option(
    "--by",
    type=click.Choice(["phase", "touchpoint", "event", "channel"]),
    default="phase",
    show_default=True,
)
@click.option("--collapse", is_flag=True, help="Merge repeated consecutive values.")
@click.option(
    "--times/--no-times",
    default=True,
    show_default=True,
    help="Median time per edge (about half the cost of a large event-level graph).",
)
@_fmt_option
@_out_option
@click.pass_context
def analyze_transitions(
    ctx: click.Context, by: str, collapse: bool, times: bool, fmt: str, outs: tuple[Path, ...]
) -> None:
    """Transition graph with (start), (exit) and (conversion) nodes."""
    result = _jm(ctx).transitions(by=cast(Any, by), collapse_repeats=collapse, times=times)
    _emit(result, fmt, outs)


@analyze.command("paths")
@click.option(
    "--by",
    type=click.Choice(["phase", "touchpoint", "event", "channel"]),
    default="channel",
    show_default=True,
)
@click.option(
    "--to", type=click.Choice(["conversion", "exit"]), default="conversion", show_default=True
)
@click.option("--limit", type=int, default=20, show_default=True)
@_fmt_option
@_out_option
@click.pass_context
def analyze_paths(
    ctx: click.Context, by: str, to: str, limit: int, fmt: str, outs: tuple[Path, ...]
) -> None:
    """The most frequent paths to conversion or to exit."""
    result = _jm(ctx).top_paths(by=cast(Any, by), to=cast(Any, to), limit=limit)
    _emit(result, fmt, outs)


@analyze.command("sankey")
@click.option(
    "--by",
    type=click.Choice(["phase", "touchpoint", "event", "channel"]),
    default="phase",
    show_default=True,
)
@click.option("--steps", type=click.IntRange(2, 20), default=5, show_default=True)
@click.option("--top", type=click.IntRange(1, 30), default=8, show_default=True)
@click.option("--anchor", default=None, help="Start every path at this value.")
@_fmt_option
@_out_option
@click.pass_context
def analyze_sankey(
    ctx: click.Context,
    by: str,
    steps: int,
    top: int,
    anchor: str | None,
    fmt: str,
    outs: tuple[Path, ...],
) -> None:
    """Step-by-step flows (step k to k+1), top values plus "other", exits per step."""
    result = _jm(ctx).step_sankey(by=cast(Any, by), steps=steps, top_n=top, anchor=anchor)
    _emit(result, fmt, outs)


@analyze.command("reach")
@click.option("--lang", type=click.Choice(["en", "de"]), default=None)
@_fmt_option
@_out_option
@click.pass_context
def analyze_reach(ctx: click.Context, lang: str | None, fmt: str, outs: tuple[Path, ...]) -> None:
    """Customers, events and conversion per touchpoint."""
    result = _jm(ctx).reach(lang=lang)
    _emit(
        result, fmt, outs, reach_table(result, f"Touchpoint reach ({result.customers:,} customers)")
    )


@analyze.command("attribution")
@click.option(
    "--by", type=click.Choice(["channel", "touchpoint"]), default="channel", show_default=True
)
@click.option(
    "--model",
    "models",
    multiple=True,
    type=click.Choice(
        ["first", "last", "linear", "time_decay", "position_based", "markov", "shapley"]
    ),
    help="Model to run (repeatable; default: all).",
)
@click.option(
    "--touch",
    type=click.Choice(["session", "event"]),
    default="session",
    show_default=True,
    help="Count each session's entry, or every event, as a touch.",
)
@click.option(
    "--lookback",
    default="30d",
    show_default=True,
    help="Touches this long before a conversion count (e.g. 30d), or 'none'.",
)
@click.option("--markov-order", type=click.IntRange(1, 4), default=1, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of sampled Shapley.")
@click.option(
    "--paths",
    "paths_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Attribute a path file (path;total_conversions;…) instead.",
)
@_fmt_option
@_out_option
@click.pass_context
def analyze_attribution(
    ctx: click.Context,
    by: str,
    models: tuple[str, ...],
    touch: str,
    lookback: str,
    markov_order: int,
    seed: int,
    paths_file: Path | None,
    fmt: str,
    outs: tuple[Path, ...],
) -> None:
    """Conversions credited per channel or touchpoint: heuristics, Markov, Shapley."""
    if paths_file is not None:
        from journeymap.analytics.attribution import PATH_MODELS, attribution_from_paths

        result = attribution_from_paths(
            paths_file,
            models=cast(Any, models or PATH_MODELS),
            markov_order=markov_order,
            seed=seed,
        )
    else:
        look = None if lookback.strip().lower() == "none" else parse_duration(lookback)
        result = _jm(ctx).attribution(
            by=cast(Any, by),
            models=models or None,
            touch=cast(Any, touch),
            lookback_days=None if look is None else look / 86400,
            markov_order=markov_order,
            seed=seed,
        )
    _emit(result, fmt, outs, records_table(result.to_records(), f"Attribution by {by}"))


@analyze.command("experience")
@click.option("--confidence", type=float, default=0.95, show_default=True)
@click.option("--lang", type=click.Choice(["en", "de"]), default=None)
@_fmt_option
@_out_option
@click.pass_context
def analyze_experience(
    ctx: click.Context, confidence: float, lang: str | None, fmt: str, outs: tuple[Path, ...]
) -> None:
    """NPS, CSAT and CES per touchpoint and phase, with sample sizes and intervals."""
    result = _jm(ctx).experience(confidence=confidence, lang=lang)
    _emit(result, fmt, outs, records_table(result.to_records(), "Experience"))


@analyze.command("retention")
@click.option(
    "--period", type=click.Choice(["day", "week", "month"]), default="week", show_default=True
)
@click.option(
    "--cohort",
    type=click.Choice(["first_event", "first_conversion"]),
    default="first_event",
    show_default=True,
)
@click.option(
    "--activity", type=click.Choice(["any", "conversion"]), default="any", show_default=True
)
@click.option("--breakdown", default=None, help="A journey column, e.g. device or channel.")
@_fmt_option
@_out_option
@click.pass_context
def analyze_retention(
    ctx: click.Context,
    period: str,
    cohort: str,
    activity: str,
    breakdown: str | None,
    fmt: str,
    outs: tuple[Path, ...],
) -> None:
    """Cohort retention matrix."""
    result = _jm(ctx).retention(
        period=cast(Any, period),
        cohort=cast(Any, cohort),
        activity=cast(Any, activity),
        breakdown=breakdown,
    )
    _emit(result, fmt, outs, records_table(result.to_records(), f"Retention by {period}"))


@analyze.command("rfm")
@_fmt_option
@_out_option
@click.pass_context
def analyze_rfm(ctx: click.Context, fmt: str, outs: tuple[Path, ...]) -> None:
    """Recency / frequency / monetary scores and segments of every buyer."""
    result = _jm(ctx).rfm()
    _emit(result, fmt, outs, records_table(result.to_records(), "RFM"))


@analyze.command("repeat")
@click.option("--within", default=None, help="Second purchase within, e.g. 90d.")
@_fmt_option
@_out_option
@click.pass_context
def analyze_repeat(
    ctx: click.Context, within: str | None, fmt: str, outs: tuple[Path, ...]
) -> None:
    """Repeat-purchase rate."""
    seconds = parse_duration(within)
    result = _jm(ctx).repeat_purchase(within_days=None if seconds is None else seconds // 86400)
    _emit(result, fmt, outs, records_table(result.to_records(), "Repeat purchase"))


@analyze.command("lapsed")
@click.option(
    "--k",
    type=float,
    default=2.0,
    show_default=True,
    help="Lapsed after k times the customer's own median purchase gap.",
)
@_fmt_option
@_out_option
@click.pass_context
def analyze_lapsed(ctx: click.Context, k: float, fmt: str, outs: tuple[Path, ...]) -> None:
    """Customers inactive beyond their own purchase cadence."""
    result = _jm(ctx).lapsed(k=k)
    _emit(result, fmt, outs, records_table(result.to_records(), "Lapsed customers"))


@analyze.command("personas")
@click.option("--method", type=click.Choice(["kmeans", "gmm"]), default="kmeans", show_default=True)
@click.option(
    "--k",
    type=click.IntRange(2, 20),
    default=None,
    help="Number of personas (default: chosen by silhouette from 2-8).",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--lang", type=click.Choice(["en", "de"]), default=None)
@_fmt_option
@_out_option
@click.pass_context
def analyze_personas(
    ctx: click.Context,
    method: str,
    k: int | None,
    seed: int,
    lang: str | None,
    fmt: str,
    outs: tuple[Path, ...],
) -> None:
    """Data-driven personas: clusters of behaviour, described and named."""
    with _jm(ctx) as jm:
        result = jm.personas(method=cast(Any, method), k=k, seed=seed, lang=lang)
    if fmt == "table":
        for p in result.personas:
            console.rule(f"{p.label} · {p.customers:,} customers ({100 * p.share:.1f} %)")
            console.print(p.description)
        for out in outs:
            err_console.print(f"wrote {result.write(out)}")
    else:
        _emit(result, fmt, outs)


@analyze.command("breaks")
@click.option(
    "--alpha",
    type=float,
    default=0.01,
    show_default=True,
    help="False discovery rate (Benjamini-Hochberg).",
)
@click.option("--lang", type=click.Choice(["en", "de"]), default=None)
@_fmt_option
@_out_option
@click.pass_context
def analyze_breaks(
    ctx: click.Context, alpha: float, lang: str | None, fmt: str, outs: tuple[Path, ...]
) -> None:
    """Where journeys break: significant exits, jumps over time, bouncing campaigns."""
    with _jm(ctx) as jm:
        result = jm.breaks(alpha=alpha, lang=lang)
    if fmt == "table":
        if not result.breaks:
            console.print("no significant journey breaks")
        for b in result.breaks:
            console.rule(f"[red]{b.label}[/] · q = {b.q_value:.2g}", style="red")
            console.print(b.description)
        for out in outs:
            err_console.print(f"wrote {result.write(out)}")
    else:
        _emit(result, fmt, outs)


@main.group()
def lake() -> None:
    """The event lake (Delta Lake)."""


@lake.command("stats")
@click.pass_context
def lake_stats(ctx: click.Context) -> None:
    """Events, files, version and date range of the lake."""
    s = _jm(ctx).lake_stats()
    console.print(
        f"lake {s.path}: version {s.version}, {s.events:,} events in {s.files:,} files, "
        f"{s.first_date or '–'} … {s.last_date or '–'}"
    )


@lake.command("compact")
@click.option(
    "--vacuum-hours",
    type=int,
    default=168,
    show_default=True,
    help="Keep files older versions may need for this long; 0 removes them now.",
)
@click.pass_context
def lake_compact(ctx: click.Context, vacuum_hours: int) -> None:
    """Merge small files into large ones and remove files no longer referenced."""
    r = _jm(ctx).compact(vacuum_hours=vacuum_hours)
    console.print(
        f"compacted: {r.files_before:,} → {r.files_after:,} files, "
        f"{r.files_removed_from_disk:,} old files removed, version {r.version}"
    )


@main.group()
def spec() -> None:
    """The journey spec."""


@spec.command("validate")
@click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.pass_context
def spec_validate(ctx: click.Context, file: Path | None) -> None:
    """Check the journey spec; every problem is listed with file and line."""
    from journeymap.model.spec import load_spec

    path = file or Settings.load(cast(Path, ctx.obj)).spec
    s = load_spec(path)
    console.print(
        f"{path}: valid — {len(s.phases)} phases, {len(s.touchpoints)} touchpoints, "
        f"{len(s.personas)} personas"
    )


@main.command("settings")
@click.option("--markdown", is_flag=True, help="Print the settings reference (docs/settings.md).")
@click.pass_context
def settings_cmd(ctx: click.Context, markdown: bool) -> None:
    """Show every setting, its value and where the value came from."""
    if markdown:
        click.echo(settings_markdown(), nl=False)
        return
    s = Settings.load(cast(Path, ctx.obj))
    helps = {x.name: x.help for x in SETTINGS}
    table = Table(title=f"Settings of {s.project_dir}", title_justify="left")
    for col in ("name", "value", "from", "meaning"):
        table.add_column(col)
    for name, value, origin in s.as_rows():
        table.add_row(name, value, origin, helps[name])
    console.print(table)


@main.command("map")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The offline HTML report (default: <reports_dir>/report.html).",
)
@click.option(
    "--png",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the journey map as PNG (for slides).",
)
@click.option(
    "--pdf",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the journey map as vector PDF (for print; the pdf extra).",
)
@click.option(
    "--figures",
    "figures_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Also write every figure as PNG and SVG into this folder.",
)
@click.option("--lang", type=click.Choice(["en", "de"]), default=None)
@click.option(
    "--days",
    type=click.IntRange(min=7),
    default=90,
    show_default=True,
    help="Length of the current period (compared with the one before).",
)
@click.pass_context
def map_cmd(
    ctx: click.Context,
    out: Path | None,
    png: Path | None,
    pdf: Path | None,
    figures_dir: Path | None,
    lang: str | None,
    days: int,
) -> None:
    """The customer journey map and its figures as one offline HTML report (and PNG, PDF,
    SVG)."""
    with _jm(ctx) as jm:
        html = out or jm.settings.reports_dir / "report.html"
        written = jm.write_report(
            html, png=png, pdf=pdf, figures_dir=figures_dir, lang=lang, days=days
        )
        for path in written:
            console.print(f"wrote {path}")


@main.group()
def campaigns() -> None:
    """Phase playbooks: validate, preview and measure campaign flows (YAML)."""


def _campaign_files(paths: Sequence[Path]) -> list[Any]:
    from journeymap.model.campaigns import load_campaign, load_campaigns
    from journeymap.playbooks import load_playbooks

    if not paths:
        return load_playbooks()
    out: list[Any] = []
    for p in paths:
        out += load_campaigns(p) if p.is_dir() else [load_campaign(p)]
    return out


@campaigns.command("validate")
@click.argument("paths", nargs=-1, type=click.Path(exists=True, path_type=Path))
def campaigns_validate(paths: tuple[Path, ...]) -> None:
    """Check campaign files or folders (default: the shipped playbooks); every problem is
    listed with file, line, field and the allowed values."""
    found = _campaign_files(paths)
    for c in found:
        console.print(f"{c.id}: valid — {len(c.steps)} steps")
    console.print(f"{len(found)} campaign(s) valid")


@campaigns.command("preview")
@click.argument("campaign_id")
@click.option(
    "--file",
    "file",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="Campaign file or folder (default: the shipped playbooks).",
)
@click.option("--profile", "profile_json", default=None, help="Profile variables as JSON.")
@click.option("--event", "event_json", default=None, help="Trigger event variables as JSON.")
def campaigns_preview(
    campaign_id: str, file: Path | None, profile_json: str | None, event_json: str | None
) -> None:
    """Render every message of a campaign (per channel) with sample variables."""
    import json

    from journeymap.orchestration.simulate import preview

    by_id = {c.id: c for c in _campaign_files([file] if file else [])}
    if campaign_id not in by_id:
        raise click.BadParameter(
            f"unknown campaign {campaign_id!r}; known: {', '.join(sorted(by_id))}"
        )
    try:
        profile = json.loads(profile_json) if profile_json else {}
        event = json.loads(event_json) if event_json else {}
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"--profile/--event must be JSON objects: {exc}") from None
    for item in preview(by_id[campaign_id], profile, event):
        console.rule(f"step {item['step']} · {item['channel']}")
        click.echo(json.dumps(item["renderings"], indent=2, ensure_ascii=False, default=str))


@campaigns.command("report")
@click.argument("campaign_id")
@click.pass_context
def campaigns_report(ctx: click.Context, campaign_id: str) -> None:
    """Per group and variant: entries, sends, deliveries, opens, clicks, conversions and
    revenue, and the uplift against the holdout (95% interval)."""
    with _jm(ctx) as jm:
        r = jm.campaign_report(campaign_id)
        currency = jm.settings.currency
    table = Table(title=f"Campaign {campaign_id}", title_justify="left")
    cols = ["group", "variant", "entries", "sent", "delivered", "suppressed", "opened"]
    cols += ["clicked", "unsubscribed", "conversions", "rate", f"revenue ({currency})"]
    for col in cols:
        table.add_column(col, justify="left" if col in ("group", "variant") else "right")
    for g in r.variants:
        table.add_row(
            g.group,
            g.variant or "–",
            f"{g.entries:,}",
            f"{g.sends:,}",
            f"{g.messages_sent:,}",
            f"{g.messages_suppressed:,}",
            f"{g.opened:,}",
            f"{g.clicked:,}",
            f"{g.unsubscribed:,}",
            f"{g.conversions:,}",
            _pct(g.rate),
            f"{g.revenue:,.2f}",
        )
    console.print(table)
    if r.uplift is None:
        console.print("uplift: not measurable yet (needs entries in treatment and holdout)")
        return
    console.print(
        f"uplift {100 * r.uplift:+.1f} pp (95% interval {100 * (r.uplift_low or 0):+.1f} … "
        f"{100 * (r.uplift_high or 0):+.1f} pp)"
        + (" — significant" if r.significant else " — not significant")
    )
    for u in r.variant_uplift:
        console.print(
            f"  variant {u.variant}: {100 * u.uplift:+.1f} pp "
            f"({100 * u.low:+.1f} … {100 * u.high:+.1f} pp)"
            + (" — significant" if u.significant else "")
        )


@campaigns.command("simulate")
@click.argument("campaign_ids", nargs=-1)
@click.option("--days", type=int, default=30, show_default=True, help="Days of events to replay.")
@click.option(
    "--tail-days",
    type=int,
    default=14,
    show_default=True,
    help="Days to keep the clock running after the last event (waits, timeouts).",
)
@click.pass_context
def campaigns_simulate(
    ctx: click.Context, campaign_ids: tuple[str, ...], days: int, tail_days: int
) -> None:
    """Replay the lake's recent events through campaigns (default: the project's, else the
    shipped playbooks): who would have entered and what they would have received. Nothing
    is sent and the project's database is not touched."""
    with _jm(ctx) as jm, console.status("replaying events through the campaigns …"):
        result = jm.simulate_campaigns(campaign_ids or None, days=days, tail_days=tail_days)
    entries = Table(title=f"Entries (last {days} days replayed)", title_justify="left")
    for col in ("campaign", "group", "entries", "converted", "rate"):
        entries.add_column(col, justify="left" if col in ("campaign", "group") else "right")
    for (campaign, group), n in sorted(result.entries.items()):
        k = result.conversions[(campaign, group)]
        entries.add_row(campaign, group, f"{n:,}", f"{k:,}", _pct(k / n if n else 0.0))
    console.print(entries)
    messages = Table(title="Messages", title_justify="left")
    for col in ("campaign", "step", "outcome", "messages"):
        messages.add_column(col, justify="right" if col == "messages" else "left")
    for (campaign, step, outcome), n in sorted(result.messages.items()):
        messages.add_row(campaign, step, outcome, f"{n:,}")
    console.print(messages)
    if result.exits:
        exits = Table(title="Exits", title_justify="left")
        for col in ("campaign", "reason", "entries"):
            exits.add_column(col, justify="right" if col == "entries" else "left")
        for (campaign, reason), n in sorted(result.exits.items()):
            exits.add_row(campaign, reason, f"{n:,}")
        console.print(exits)
    if not result.entries:
        console.print(
            "nobody entered: check that the campaigns' trigger events occur in the lake under "
            "these names (journeymap analyze reach lists what is there)"
        )


@main.command()
@click.option("--host", default=None, help="Address to listen on (setting server_host).")
@click.option("--port", type=int, default=None, help="Port (setting server_port).")
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
)
@click.pass_context
def serve(ctx: click.Context, host: str | None, port: int | None, log_level: str) -> None:
    """Run the server: collector (Segment/RudderStack/PostHog compatible) and admin API."""
    from journeymap.server.run import ensure_admin_token
    from journeymap.server.run import serve as run_server

    settings = Settings.load(cast(Path, ctx.obj))
    token_path, created = ensure_admin_token(settings)
    err_console.print(
        f"admin token {'created in' if created else 'read from'} {token_path} (never printed)"
    )
    run_server(settings, host=host, port=port, log_level=log_level)


@main.command()
@click.option("--once", is_flag=True, help="One pass (feed, timers, outbox), then exit.")
@click.option(
    "--interval",
    type=float,
    default=None,
    help="Seconds between passes when idle (setting worker_interval_seconds).",
)
@click.pass_context
def worker(ctx: click.Context, once: bool, interval: float | None) -> None:
    """Run the campaign worker: feed new events, fire timers, deliver the outbox.

    SIGTERM or Ctrl-C finishes the messages being sent and exits 0; a killed worker loses
    nothing and sends nothing twice (see journeymap.orchestration.worker).
    """
    import logging
    import signal
    import threading

    from journeymap.orchestration.runtime import CampaignRuntime
    from journeymap.orchestration.service import InboxFeed, WorkerService
    from journeymap.storage.db import OperationalDB, database_url

    settings = Settings.load(cast(Path, ctx.obj))
    tty = sys.stderr.isatty()
    logging.basicConfig(level=logging.INFO if tty else logging.WARNING)
    # the thread that commits a send writes its SMTP dot right after; it must get the
    # interpreter back quickly from the threads building messages (default 5 ms)
    sys.setswitchinterval(0.0005)
    db = OperationalDB(database_url(settings.database, settings.project_dir))
    stop = threading.Event()
    try:
        rt = CampaignRuntime.open(settings, db)
        phases = None
        if any(c.trigger.phase for c in rt.flows):  # phase triggers: entries from the spec
            from journeymap.model.spec import load_spec
            from journeymap.orchestration.phases import PhaseTracker
            from journeymap.storage.profiles import ProfileStore

            phases = PhaseTracker(load_spec(settings.spec), ProfileStore(db))
        feed = InboxFeed(
            db,
            rt.engine,
            lake=settings.lake,
            default_currency=settings.currency,
            phases=phases,
        )
        service = WorkerService(
            db,
            rt.engine,
            rt.worker,
            feed,
            batch_size=settings.worker_batch_size,
            progress=(lambda line: err_console.print(line, markup=False)) if tty else None,
        )

        def _stop(signum: int, frame: object) -> None:
            stop.set()
            rt.worker.stopping.set()

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        if tty:
            err_console.print(
                f"worker: {len(rt.flows)} campaign(s), channels {', '.join(rt.registry.names())}"
            )
        service.run(
            stop, settings.worker_interval_seconds if interval is None else interval, once=once
        )
    finally:
        with contextlib.suppress(Exception):
            rt.worker.close()
        db.close()


@main.group()
def sources() -> None:
    """Sources that send events to the collector, each with its own write key."""


@sources.command("add")
@click.argument("name")
@click.option("--rate-limit", type=int, default=None, help="Events per second allowed.")
@click.pass_context
def sources_add(ctx: click.Context, name: str, rate_limit: int | None) -> None:
    """Create a source and print its write key (shown once)."""
    with _jm(ctx) as jm:
        src, key = jm.add_source(name, rate_limit=rate_limit)
    console.print(f"source {src.name} created; write key (store it now, it is not shown again):")
    click.echo(key)


@sources.command("list")
@click.pass_context
def sources_list(ctx: click.Context) -> None:
    """List the sources (names, key hints, rate limits)."""
    with _jm(ctx) as jm:
        rows = jm.sources()
    table = Table(title="Sources", title_justify="left")
    for col in ("name", "key", "rate limit (events/s)"):
        table.add_column(col)
    for src in rows:
        table.add_row(src.name, src.key_hint, str(src.rate_limit or "–"))
    console.print(table)


@sources.command("rotate")
@click.argument("name")
@click.pass_context
def sources_rotate(ctx: click.Context, name: str) -> None:
    """Give a source a new write key; the old key stops working."""
    with _jm(ctx) as jm:
        key = jm.rotate_source(name)
    console.print(f"new write key for {name}:")
    click.echo(key)


@sources.command("remove")
@click.argument("name")
@click.pass_context
def sources_remove(ctx: click.Context, name: str) -> None:
    """Remove a source (its key stops working; its events stay)."""
    with _jm(ctx) as jm:
        jm.remove_source(name)
    console.print(f"source {name} removed")


@main.command()
@click.pass_context
def load(ctx: click.Context) -> None:
    """Move collected events from the inbox into the lake (exactly once)."""
    with _jm(ctx) as jm:
        results = jm.load()
    appended = sum(r.appended for r in results)
    dead = sum(r.dead_letters for r in results)
    console.print(
        f"loaded {appended:,} new events in {len(results)} round(s) into {jm.store.path}"
        + (f"; {dead:,} invalid messages in the dead-letter table" if dead else "")
    )


@main.group()
def gdpr() -> None:
    """Data-subject requests: export or erase everything about a customer."""


@gdpr.command("export")
@click.argument("customer")
@click.option(
    "-o",
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the JSON here instead of printing it.",
)
@click.pass_context
def gdpr_export(ctx: click.Context, customer: str, out: Path | None) -> None:
    """Events, profile, traits and consent of CUSTOMER (any of its ids) as JSON."""
    import json

    with _jm(ctx) as jm:
        doc = jm.gdpr_export(customer)
    text = json.dumps(doc, indent=2, ensure_ascii=False, default=str)
    if out is None:
        click.echo(text)
    else:
        out.write_text(text + "\n", encoding="utf-8")
        err_console.print(f"wrote {out}")


@gdpr.command("delete")
@click.argument("customer")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def gdpr_delete(ctx: click.Context, customer: str, yes: bool) -> None:
    """Erase CUSTOMER everywhere: lake (files vacuumed), inbox, profiles, identity links."""
    if not yes:
        click.confirm(f"erase every record of {customer!r} for good?", abort=True)
    with _jm(ctx) as jm:
        receipt = jm.gdpr_delete(customer)
    counts = ", ".join(f"{k} {v:,}" for k, v in receipt.counts.items() if v)
    console.print(f"erased ({counts or 'nothing found'}); logged as request {receipt.request_id}")


@main.command()
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("demo"),
    show_default=True,
    help="Where the demo project goes.",
)
@click.option("--customers", type=click.IntRange(min=100), default=20_000, show_default=True)
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("--lang", type=click.Choice(["en", "de"]), default="en", show_default=True)
def demo(directory: Path, customers: int, seed: int, lang: str) -> None:
    """Generate the sample shop, import it, build the journey table and print the funnel."""
    from journeymap.simulate import simulate_shop

    directory.mkdir(parents=True, exist_ok=True)
    spec_path = directory / "journey.yaml"
    toml_path = directory / "journeymap.toml"
    if not spec_path.exists():
        with resources.as_file(resources.files("journeymap.simulate") / "demo_journey.yaml") as src:
            shutil.copyfile(src, spec_path)
    if not toml_path.exists():
        from journeymap.model.scaffold import project_toml

        toml_path.write_text(project_toml("Europe/Berlin"), encoding="utf-8")

    sim_dir = directory / "data" / "simulated"
    console.rule(f"[bold]1/5 Simulating {customers:,} customers (seed {seed})", style="cyan")
    sim = simulate_shop(sim_dir, customers=customers, seed=seed, progress=True)
    console.print(
        f"{sim.events:,} events, {sim.orders:,} orders, revenue {sim.revenue:,.2f} EUR "
        f"in {sim.seconds:.1f} s"
    )

    console.rule("[bold]2/5 Importing into the event lake", style="cyan")
    jm = Journeymap(directory)
    files = (
        sorted(sim.events_path.glob("*.parquet")) if sim.events_path.is_dir() else [sim.events_path]
    )
    for f in files:
        summary = jm.import_file(f, source="simulator", progress=True)
        console.print(str(summary))

    console.rule("[bold]3/5 Building the journey table", style="cyan")
    t0 = time.perf_counter()
    journey_file = jm.journey_path()
    built = "built" if jm.last_journey_built else "reused"
    console.print(f"journey table {built} in {time.perf_counter() - t0:.1f} s: {journey_file}")

    console.rule("[bold]4/5 Phase funnel and touchpoint reach", style="cyan")
    reports = jm.settings.reports_dir
    funnel_result = jm.funnel(lang=lang)
    console.print(
        funnel_table(funnel_result, f"Phase funnel ({funnel_result.entered:,} customers)")
    )
    reach_result = jm.reach(lang=lang)
    console.print(reach_table(reach_result, "Touchpoint reach"))
    written = [
        funnel_result.write(reports / "funnel.csv"),
        funnel_result.write(reports / "funnel.json"),
        reach_result.write(reports / "reach.csv"),
    ]
    console.rule("[bold]5/5 The customer journey map", style="cyan")
    t0 = time.perf_counter()
    report_files = jm.write_report(
        reports / "report.html", png=reports / "journey_map.png", lang=lang
    )
    console.print(f"report rendered in {time.perf_counter() - t0:.1f} s")
    stats = jm.lake_stats()
    jm.close()

    console.rule("[bold]Where everything is", style="green")
    rows = [
        ("project", directory.resolve()),
        ("journey spec", spec_path.resolve()),
        ("event lake", f"{stats.path} ({stats.events:,} events, {stats.files} files)"),
        ("ground truth", sim.truth_path.resolve()),
        ("journey table", journey_file),
        *(("analysis", p) for p in written),
        ("map (PNG)", report_files[-1]),
        ("REPORT", report_files[0]),
    ]
    for label, value in rows:
        console.print(f"  {label:<14} {value}")
    console.print(f"\nopen the report: {report_files[0].resolve()}")
    console.print(
        f"next: journeymap -p {directory} analyze funnel --by touchpoint "
        "--steps cart,checkout,checkout_size_select,payment,order --strict"
    )


if __name__ == "__main__":  # pragma: no cover
    main()
