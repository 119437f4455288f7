"""Campaign definitions: the YAML of an automated flow (trigger, steps, goal, holdout).

A campaign is entered by a **trigger** (an event with conditions, or entering a phase) and keyed
by an **entry key** (a property such as ``order_id``) so that one order enters once. Then it
runs its **steps** in order (``next`` jumps elsewhere):

===============  ============================================================================
``wait``         wait a duration (``duration: 2d``)
``wait_until``   wait until a local time of day in the customer's time zone (``time: "10:00"``)
``wait_for``     wait for an event (``event``, ``where``) at most ``timeout``; ``on_timeout``
                 names the step taken when it does not come
``branch``       ``if`` a condition on the profile or the trigger event: ``then`` / ``else``
``split``        random split / A-B test: ``variants`` with shares, each with its ``next``
``send``         send a message on a channel (``topic``, ``transactional``) with per-channel
                 renderings (email, push, banner, webhook, text)
``update``       set profile traits
``exit``         leave the campaign
===============  ============================================================================

A **goal** (conversion event and window) measures the campaign; ``exit_on_goal`` stops the flow
once the customer converts. ``reentry`` says whether a customer who left may enter again,
``holdout`` is the share of customers (a deterministic hash of customer and campaign) who go
through the flow but receive no marketing message, so the report can measure uplift.

``parse_campaign`` reports every problem at once with file, line, field and allowed values,
through the same machinery as the journey spec (``journeymap.model.spec``).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Final, Literal

import jinja2
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from journeymap.errors import SpecError, SpecProblem
from journeymap.model.spec import Scalar, _as_list, _field_path, _pydantic_message, read_located

_ID = r"^[a-z][a-z0-9_]*$"
_CONDITION_FIELD = re.compile(r"^(profile|event)\.[A-Za-z_$][A-Za-z0-9_$.\-]*$")
_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h|d|w)\s*$")
_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
#: Rendering kinds a message may carry; the built-in channels of the same name require theirs.
RENDERING_KINDS: Final = ("email", "push", "banner", "webhook", "text")
PUSH_TITLE_MAX: Final = 50
PUSH_BODY_MAX: Final = 120
STEP_TYPES: Final = ("wait", "wait_until", "wait_for", "branch", "split", "send", "update", "exit")
OPERATORS: Final = ("eq", "ne", "gt", "gte", "lt", "lte", "in", "exists", "missing")


def parse_duration(value: Any) -> dt.timedelta:
    """``30s``, ``15m``, ``2h``, ``3d``, ``1w`` (or a number of seconds) as a timedelta."""
    if isinstance(value, dt.timedelta):
        return value
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return dt.timedelta(seconds=value)
    m = _DURATION.match(value) if isinstance(value, str) else None
    if m is None:
        raise ValueError(
            f"{value!r} is not a duration; use a number and a unit s, m, h, d or w, e.g. 2d"
        )
    return dt.timedelta(seconds=int(m.group(1)) * _UNITS[m.group(2)])


def _time_of_day(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):  # YAML reads 10:00 as 600
        return dt.time(value // 60 % 24, value % 60)
    if isinstance(value, str):
        m = re.fullmatch(r"(\d{1,2}):(\d{2})", value.strip())
        if m and int(m.group(1)) < 24 and int(m.group(2)) < 60:
            return dt.time(int(m.group(1)), int(m.group(2)))
        raise ValueError(f'{value!r} is not a time of day; use HH:MM, e.g. "10:00"')
    return value


def time_from_trait(value: Any) -> dt.time | None:
    """A trait value as a time of day (an hour 0-23 or "HH:MM"), ``None`` if it is not one."""
    if isinstance(value, int) and not isinstance(value, bool):
        return dt.time(value) if 0 <= value < 24 else None
    if isinstance(value, str):
        try:
            t = _time_of_day(value)
        except ValueError:
            return None
        return t if isinstance(t, dt.time) else None
    return None


Duration = Annotated[dt.timedelta, BeforeValidator(parse_duration)]
TimeOfDay = Annotated[dt.time, BeforeValidator(_time_of_day)]
Where = dict[str, Annotated[list[Scalar], BeforeValidator(_as_list)]]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Trigger(_Strict):
    """Entry: an ``event`` matching ``where`` (a list means any of), or entering ``phase``."""

    event: str | None = None
    phase: str | None = None
    where: Where = Field(default_factory=dict)
    entry_key: str | None = None


class Goal(_Strict):
    event: str
    where: Where = Field(default_factory=dict)
    window: Duration = dt.timedelta(days=7)


class Condition(_Strict):
    """``field`` is ``profile.<trait>`` or ``event.<property>`` (the trigger event)."""

    field: str
    op: Literal["eq", "ne", "gt", "gte", "lt", "lte", "in", "exists", "missing"] = "eq"
    value: Scalar | list[Scalar] | None = None

    @field_validator("field")
    @classmethod
    def _scope(cls, value: str) -> str:
        if not _CONDITION_FIELD.match(value):
            raise ValueError(
                f"{value!r} must name profile.<trait> or event.<property>, e.g. profile.orders"
            )
        return value


class EmailRendering(_Strict):
    subject: str
    html: str | None = None
    text: str | None = None
    preheader: str | None = None


class PushRendering(_Strict):
    title: str
    body: str
    deep_link: str | None = None


class BannerRendering(_Strict):
    headline: str
    cta: str
    url: str | None = None
    slot: str = "default"


class Message(_Strict):
    """One message with a rendering per channel kind (Jinja2 templates, sandboxed)."""

    email: EmailRendering | None = None
    push: PushRendering | None = None
    banner: BannerRendering | None = None
    webhook: dict[str, Any] | None = None
    text: str | None = None

    def kinds(self) -> list[str]:
        return [k for k in RENDERING_KINDS if getattr(self, k) is not None]


class _Step(_Strict):
    id: str = Field(pattern=_ID)
    next: str | None = None


class WaitStep(_Step):
    type: Literal["wait"]
    duration: Duration


class WaitUntilStep(_Step):
    """Wait until ``time`` (local); ``time_trait`` names a profile trait with the customer's
    own best time (an hour 0-23 or "HH:MM"), used when present and valid."""

    type: Literal["wait_until"]
    time: TimeOfDay
    time_trait: str | None = None


class WaitForStep(_Step):
    type: Literal["wait_for"]
    event: str
    where: Where = Field(default_factory=dict)
    timeout: Duration
    on_timeout: str | None = None


class BranchStep(_Step):
    type: Literal["branch"]
    if_: Condition = Field(alias="if")
    then: str | None = None
    else_: str | None = Field(default=None, alias="else")


class Variant(_Strict):
    id: str = Field(pattern=_ID)
    share: float = Field(gt=0)
    next: str | None = None


class SplitStep(_Step):
    type: Literal["split"]
    variants: list[Variant] = Field(min_length=2)


class SendStep(_Step):
    type: Literal["send"]
    channel: str = Field(pattern=_ID)
    topic: str = "marketing"
    transactional: bool = False
    message: Message


class UpdateStep(_Step):
    type: Literal["update"]
    set: dict[str, Scalar | None]


class ExitStep(_Step):
    type: Literal["exit"]


Step = Annotated[
    WaitStep
    | WaitUntilStep
    | WaitForStep
    | BranchStep
    | SplitStep
    | SendStep
    | UpdateStep
    | ExitStep,
    Field(discriminator="type"),
]


class Campaign(_Strict):
    version: Literal[1] = 1
    id: str = Field(pattern=_ID)
    name: str = ""
    phase: str | None = None
    status: Literal["draft", "active", "paused", "archived"] = "active"
    trigger: Trigger
    steps: list[Step] = Field(min_length=1)
    goal: Goal | None = None
    exit_on_goal: bool = True
    reentry: Literal["never", "after_exit", "always"] = "never"
    reentry_cooldown: Duration = dt.timedelta(0)
    holdout: float = Field(default=0.0, ge=0, le=0.5)

    def step(self, step_id: str) -> Any:
        for s in self.steps:
            if s.id == step_id:
                return s
        raise KeyError(step_id)

    def next_of(self, step_id: str) -> str | None:
        """The step after ``step_id`` in the list (``None``: the end)."""
        ids = [s.id for s in self.steps]
        i = ids.index(step_id)
        return ids[i + 1] if i + 1 < len(ids) else None

    def has_marketing(self) -> bool:
        return any(isinstance(s, SendStep) and not s.transactional for s in self.steps)


# -- cross-field checks ---------------------------------------------------------------------
Loc = tuple[str | int, ...]
_SANDBOX = jinja2.Environment(autoescape=False)


def _check(data: Mapping[str, Any]) -> list[tuple[Loc, str]]:
    problems: list[tuple[Loc, str]] = []
    trigger = data.get("trigger")
    if isinstance(trigger, dict) and bool(trigger.get("event")) == bool(trigger.get("phase")):
        problems.append((("trigger",), "give exactly one of event or phase"))
    steps = data.get("steps")
    steps = steps if isinstance(steps, list) else []
    ids: dict[Any, int] = {}
    for i, s in enumerate(steps):
        if isinstance(s, dict) and "id" in s:
            if s["id"] in ids:
                problems.append(
                    (
                        ("steps", i, "id"),
                        f"duplicate step id {s['id']!r} (also steps[{ids[s['id']]}])",
                    )
                )
            ids.setdefault(s["id"], i)
    allowed = ", ".join(str(k) for k in ids) or "none"

    def ref(loc: Loc, target: Any) -> None:
        if target is not None and target not in ids:
            problems.append((loc, f"unknown step {target!r}; allowed: {allowed}"))

    for i, s in enumerate(steps):
        if not isinstance(s, dict):
            continue
        for key in ("next", "on_timeout", "then", "else"):
            ref(("steps", i, key), s.get(key))
        for j, v in enumerate(s.get("variants") or []):
            if isinstance(v, dict):
                ref(("steps", i, "variants", j, "next"), v.get("next"))
        if s.get("type") == "send" and isinstance(s.get("message"), dict):
            problems += _check_message(("steps", i), s)
    return problems


def _check_message(loc: Loc, step: Mapping[str, Any]) -> list[tuple[Loc, str]]:
    problems: list[tuple[Loc, str]] = []
    msg = step["message"]
    channel = step.get("channel")
    present = [k for k in RENDERING_KINDS if msg.get(k) is not None]
    if not present:
        problems.append(
            ((*loc, "message"), f"no rendering; give one of {', '.join(RENDERING_KINDS)}")
        )
    elif channel in RENDERING_KINDS and channel not in present and channel != "text":
        problems.append(
            ((*loc, "message"), f"channel {channel!r} needs a message.{channel} rendering")
        )

    def walk(value: Any, path: Loc) -> None:
        if isinstance(value, str):
            try:
                _SANDBOX.parse(value)
            except jinja2.TemplateSyntaxError as exc:
                problems.append(
                    (path, f"template error: {exc.message} (template line {exc.lineno})")
                )
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(v, (*path, str(k)))
        elif isinstance(value, list):
            for j, v in enumerate(value):
                walk(v, (*path, j))

    walk(msg, (*loc, "message"))
    push = msg.get("push")
    if isinstance(push, dict):
        for key, limit in (("title", PUSH_TITLE_MAX), ("body", PUSH_BODY_MAX)):
            text = push.get(key)
            if isinstance(text, str) and "{" not in text and len(text) > limit:
                problems.append(
                    ((*loc, "message", "push", key), f"{len(text)} characters; at most {limit}")
                )
    return problems


class CampaignError(SpecError):
    """A campaign definition is invalid; ``problems`` lists each with file, line and field."""

    def __init__(self, problems: Sequence[SpecProblem]) -> None:
        super().__init__(problems)
        n = len(self.problems)
        head = f"the campaign has {n} problem{'s' if n != 1 else ''}:"
        self.args = ("\n".join([head, *(f"  {p}" for p in self.problems)]),)


def _message(err: Mapping[str, Any], loc: Sequence[str | int]) -> str:
    if err.get("type") == "union_tag_invalid":
        tag = err.get("ctx", {}).get("tag")
        return f"{tag!r} is not a step type; allowed: {', '.join(STEP_TYPES)}"
    if err.get("type") == "union_tag_not_found":
        return f"the step needs a type; allowed: {', '.join(STEP_TYPES)}"
    return _pydantic_message(err, loc)


def parse_campaign(text: str, file: str = "<campaign>") -> Campaign:
    """Parse and validate campaign YAML; raise ``CampaignError`` listing every problem."""
    data, located, problems = read_located(
        text,
        file,
        error=CampaignError,
        not_mapping="a campaign is a YAML mapping with id, trigger and steps",
    )
    campaign: Campaign | None = None
    try:
        campaign = Campaign.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            loc = [p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
            # drop the union tag pydantic inserts (steps.0.send.channel -> steps[0].channel)
            loc = [
                p
                for i, p in enumerate(loc)
                if not (i == 2 and loc[0] == "steps" and p in STEP_TYPES)
            ]
            problems.append(
                SpecProblem(file, located.line(loc), _field_path(loc), _message(err, loc))
            )
    for ref_loc, msg in _check(data):
        problems.append(SpecProblem(file, located.line(ref_loc), _field_path(ref_loc), msg))
    if problems or campaign is None:
        problems.sort(key=lambda p: p.line or 0)
        raise CampaignError(problems)
    return campaign


def load_campaign(path: str | Path) -> Campaign:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CampaignError([SpecProblem(str(p), None, "", "file not found")]) from None
    return parse_campaign(text, str(p))


def load_campaigns(folder: str | Path) -> list[Campaign]:
    """Every ``*.yaml`` / ``*.yml`` campaign in ``folder``; problems of all files together."""
    problems: list[SpecProblem] = []
    out: list[Campaign] = []
    seen: set[str] = set()
    for f in sorted([*Path(folder).glob("*.yaml"), *Path(folder).glob("*.yml")]):
        try:
            c = load_campaign(f)
        except CampaignError as exc:
            problems += exc.problems
            continue
        if c.id in seen:
            problems.append(SpecProblem(str(f), None, "id", f"duplicate campaign id {c.id!r}"))
        seen.add(c.id)
        out.append(c)
    if problems:
        raise CampaignError(problems)
    return out
