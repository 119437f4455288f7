"""The journey spec: the hand-written YAML that names phases, touchpoints and the goal.

A spec says *what the journey is*; the data says *what customers did*. The spec holds

* ``phases``: ordered stages (inherited from a shipped ``model`` or listed), each with the
  customer's goals and questions, the expected feeling, our measures, known pain points and
  opportunities;
* ``touchpoints``: named places of contact, each in one phase and one channel, with the rules
  that map events to it (``match``: event name, channel, campaign, property conditions);
  rules are tried in the order written and the first that matches wins;
* ``goal``: the conversion (an event, optionally with conditions) and its value;
* ``personas``: narratives (goals, questions, fears, a quote) that attach to data personas.

``load_spec`` reports every problem at once with file, line, field and the allowed values.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from journeymap.errors import SpecError, SpecProblem
from journeymap.model.phase_models import PHASE_MODELS, Lang

SPEC_VERSION = 1
_ID = r"^[a-z][a-z0-9_]*$"
#: Event columns a ``where`` condition can test directly; other keys are read from properties.
COLUMN_CONDITIONS = (
    "device",
    "order_id",
    "product_id",
    "category",
    "score",
    "source",
    "currency",
    "anonymous_id",
)

Scalar = str | int | float | bool


def _as_list(value: Any) -> Any:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _as_text(value: Any) -> Any:
    """Plain text or ``{en: ..., de: ...}``; a plain string is stored under ``"*"``."""
    if isinstance(value, str):
        return {"*": value}
    return value


StrList = Annotated[list[str], BeforeValidator(_as_list)]
ScalarList = Annotated[list[Scalar], BeforeValidator(_as_list)]
Text = Annotated[dict[str, str], BeforeValidator(_as_text)]
TextList = Annotated[list[Text], BeforeValidator(_as_list)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def text_in(text: Mapping[str, str] | None, lang: str) -> str:
    """The text in ``lang``, else the plain text, else English, else any."""
    if not text:
        return ""
    for key in (lang, "*", "en"):
        if key in text:
            return text[key]
    return next(iter(text.values()))


class Feeling(_Strict):
    """The feeling to expect, from -2 (very negative) to +2 (very positive)."""

    expected: float = Field(ge=-2, le=2)
    note: Text | None = None


class Phase(_Strict):
    id: str = Field(pattern=_ID)
    label: Text = Field(default_factory=dict)
    goals: TextList = Field(default_factory=list)
    questions: TextList = Field(default_factory=list)
    feeling: Feeling | None = None
    measures: TextList = Field(default_factory=list)
    pain_points: TextList = Field(default_factory=list)
    opportunities: TextList = Field(default_factory=list)

    def label_in(self, lang: str) -> str:
        return text_in(self.label, lang) or self.id.replace("_", " ").capitalize()


class Match(_Strict):
    """Event-matching rule: every given condition must hold (a list means any of)."""

    event: StrList = Field(default_factory=list)
    channel: StrList = Field(default_factory=list)
    campaign: StrList = Field(default_factory=list)
    where: dict[str, Annotated[list[Scalar], BeforeValidator(_as_list)]] = Field(
        default_factory=dict
    )

    @field_validator("where")
    @classmethod
    def _keys(cls, value: dict[str, list[Scalar]]) -> dict[str, list[Scalar]]:
        for key in value:
            if not re.fullmatch(r"[A-Za-z_$][A-Za-z0-9_$.\-]*", key):
                raise ValueError(f"property name {key!r} must be letters, digits, _ . - or $")
        return value

    def is_empty(self) -> bool:
        return not (self.event or self.channel or self.campaign or self.where)


class Touchpoint(_Strict):
    id: str = Field(pattern=_ID)
    label: Text = Field(default_factory=dict)
    phase: str
    channel: str | None = None
    kind: Literal["direct", "indirect"] = "direct"
    #: a message the customer gets because of what they did (order confirmation, shipping
    #: notice, survey invitation): not a marketing touch, so attribution leaves it out
    transactional: bool = False
    description: Text | None = None
    match: Match | None = None

    def rule(self) -> Match:
        """The matching rule; without ``match`` the touchpoint matches events named like it."""
        return self.match if self.match is not None else Match(event=[self.id])

    def label_in(self, lang: str) -> str:
        return text_in(self.label, lang) or self.id.replace("_", " ").capitalize()


class Goal(_Strict):
    """The conversion: events matching ``match``; ``value`` names the revenue column."""

    name: Text = Field(default_factory=lambda: {"*": "Conversion"})
    match: Match
    value: Literal["revenue"] | None = "revenue"


class PersonaNarrative(_Strict):
    id: str = Field(pattern=_ID)
    name: Text
    description: Text | None = None
    goals: TextList = Field(default_factory=list)
    questions: TextList = Field(default_factory=list)
    fears: TextList = Field(default_factory=list)
    quote: Text | None = None
    channels: StrList = Field(default_factory=list)


class JourneySpec(_Strict):
    version: Literal[1] = 1
    name: str = "Customer journey"
    language: Lang = "en"
    model: str | None = None
    phases: list[Phase] = Field(default_factory=list)
    touchpoints: list[Touchpoint] = Field(default_factory=list)
    goal: Goal
    personas: list[PersonaNarrative] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _inherit_model(cls, data: Any) -> Any:
        """Fill phases (or their missing labels) from the shipped phase model."""
        if not isinstance(data, dict) or not isinstance(data.get("model"), str):
            return data
        model = PHASE_MODELS.get(data["model"])
        if model is None:
            return data  # reported by the field check below
        data = dict(data)
        templates = {p.id: p for p in model.phases}
        listed = data.get("phases") or []
        by_id = {p.get("id"): p for p in listed if isinstance(p, dict)}
        merged: list[Any] = []
        for tpl in model.phases:  # the model's order; listed phases add their texts
            phase = dict(by_id.get(tpl.id, {"id": tpl.id}))
            phase.setdefault("label", {"en": tpl.en, "de": tpl.de})
            merged.append(phase)
        # phases the model does not have are kept so that validation can name them
        merged += [p for p in listed if not (isinstance(p, dict) and p.get("id") in templates)]
        data["phases"] = merged
        return data

    @field_validator("model")
    @classmethod
    def _known_model(cls, value: str | None) -> str | None:
        if value is not None and value not in PHASE_MODELS:
            raise ValueError(f"unknown phase model {value!r}; allowed: {', '.join(PHASE_MODELS)}")
        return value

    # -- lookups ---------------------------------------------------------------------------
    def phase_ids(self) -> list[str]:
        return [p.id for p in self.phases]

    def phase(self, phase_id: str) -> Phase:
        for p in self.phases:
            if p.id == phase_id:
                return p
        raise KeyError(phase_id)

    def touchpoint(self, touchpoint_id: str) -> Touchpoint:
        for t in self.touchpoints:
            if t.id == touchpoint_id:
                return t
        raise KeyError(touchpoint_id)

    def touchpoints_in(self, phase_id: str) -> list[Touchpoint]:
        return [t for t in self.touchpoints if t.phase == phase_id]

    def fingerprint(self) -> str:
        """A hash of everything that shapes the journey table (not narratives or labels)."""
        relevant = {
            "phases": self.phase_ids(),
            "touchpoints": [
                [t.id, t.phase, t.rule().model_dump(mode="json")] for t in self.touchpoints
            ],
            "goal": self.goal.match.model_dump(mode="json"),
        }
        blob = json.dumps(relevant, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


# -- cross-field checks ---------------------------------------------------------------------
Loc = tuple[str | int, ...]


def _check_references(data: Mapping[str, Any]) -> list[tuple[Loc, str]]:
    """Problems that need the whole spec: unknown phases, duplicate ids, empty rules.

    Works on the raw YAML data so that these are reported together with field errors.
    """
    problems: list[tuple[Loc, str]] = []
    model_name = data.get("model")
    model = PHASE_MODELS.get(model_name) if isinstance(model_name, str) else None
    raw_phases = data.get("phases") or ([{"id": p.id} for p in model.phases] if model else [])
    if not isinstance(raw_phases, list) or not raw_phases:
        problems.append(
            (("phases",), f"no phases: list them or name a model ({', '.join(PHASE_MODELS)})")
        )
        raw_phases = []
    phase_ids: list[str] = [str(p.get("id")) for p in raw_phases if isinstance(p, dict)]
    if model is not None and data.get("phases"):
        phase_ids = model.phase_ids()
        for i, p in enumerate(raw_phases):
            if isinstance(p, dict) and p.get("id") not in phase_ids:
                problems.append(
                    (
                        ("phases", i, "id"),
                        f"phase {p.get('id')!r} is not in model {model.id} "
                        f"({', '.join(phase_ids)}); drop `model:` to define your own phases",
                    )
                )
    for kind in ("phases", "touchpoints", "personas"):
        items = raw_phases if kind == "phases" else data.get(kind) or []
        seen: dict[Any, int] = {}
        for i, item in enumerate(items if isinstance(items, list) else []):
            item_id = item.get("id") if isinstance(item, dict) else None
            if item_id is None:
                continue
            if item_id in seen:
                problems.append(
                    ((kind, i, "id"), f"duplicate id {item_id!r} (also at {kind}[{seen[item_id]}])")
                )
            seen.setdefault(item_id, i)
    allowed = ", ".join(str(p) for p in phase_ids)
    touchpoints = data.get("touchpoints") or []
    for i, tp in enumerate(touchpoints if isinstance(touchpoints, list) else []):
        if not isinstance(tp, dict):
            continue
        if "phase" in tp and tp["phase"] not in phase_ids:
            problems.append(
                (("touchpoints", i, "phase"), f"unknown phase {tp['phase']!r}; allowed: {allowed}")
            )
        if "match" in tp and not _has_condition(tp["match"]):
            problems.append(
                (
                    ("touchpoints", i, "match"),
                    "an empty match would take every event; give event, channel, campaign or where",
                )
            )
    goal = data.get("goal")
    if isinstance(goal, dict) and "match" in goal and not _has_condition(goal["match"]):
        problems.append(
            (
                ("goal", "match"),
                "the goal needs at least one condition, e.g. event: order_completed",
            )
        )
    return problems


def _has_condition(match: Any) -> bool:
    return isinstance(match, dict) and any(
        match.get(k) for k in ("event", "channel", "campaign", "where")
    )


# -- loading with line numbers --------------------------------------------------------------
class _Located:
    """Line numbers of every node of a YAML document, by path."""

    def __init__(self) -> None:
        self.lines: dict[tuple[str | int, ...], int] = {}
        self.duplicates: list[tuple[tuple[str | int, ...], int]] = []

    def walk(self, node: yaml.Node, path: tuple[str | int, ...] = ()) -> None:
        self.lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key_node, value_node in node.value:
                key = str(key_node.value)
                if key in seen:
                    self.duplicates.append(((*path, key), key_node.start_mark.line + 1))
                seen.add(key)
                self.lines[(*path, key)] = key_node.start_mark.line + 1
                self.walk(value_node, (*path, key))
                # point at the key's line for scalars, the value's line for blocks
                if isinstance(value_node, yaml.ScalarNode):
                    self.lines[(*path, key)] = key_node.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self.walk(item, (*path, i))

    def line(self, path: Sequence[str | int]) -> int | None:
        p = tuple(path)
        while p:
            if p in self.lines:
                return self.lines[p]
            p = p[:-1]
        return self.lines.get(())


#: libyaml's safe loader when PyYAML has it (the wheels do): 10x faster, same nodes and marks
_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _python_yaml_error(text: str) -> yaml.YAMLError:
    """The pure-Python parser's error for text libyaml rejected: its messages name what it
    expected ("expected <block end>, but found ...") where libyaml's are terser."""
    try:
        yaml.compose(text, Loader=yaml.SafeLoader)
        yaml.safe_load(text)
    except yaml.YAMLError as exc:
        return exc
    return yaml.YAMLError("not valid YAML")


def _field_path(loc: Sequence[str | int]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def read_located(
    text: str,
    file: str,
    *,
    error: type[SpecError],
    not_mapping: str,
) -> tuple[dict[str, Any], _Located, list[SpecProblem]]:
    """YAML text as data, the line of every node, and its duplicate-key problems.

    Raises ``error`` for text that is not YAML (with the line) or not a mapping.
    """
    try:
        root = yaml.compose(text, Loader=_LOADER)
        data = yaml.load(text, Loader=_LOADER)  # a safe loader
    except yaml.YAMLError:
        exc = _python_yaml_error(text)
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        reason = getattr(exc, "problem", None) or str(exc)
        raise error([SpecProblem(file, line, "", f"not valid YAML: {reason}")]) from None
    if root is None or not isinstance(data, dict):
        raise error([SpecProblem(file, 1, "", not_mapping)])
    located = _Located()
    located.walk(root)
    problems = [
        SpecProblem(file, line, _field_path(path), "duplicate key (the later one would win)")
        for path, line in located.duplicates
    ]
    return data, located, problems


def parse_spec(text: str, file: str = "<spec>") -> JourneySpec:
    """Parse and validate spec YAML; raise ``SpecError`` listing every problem."""
    data, located, problems = read_located(
        text,
        file,
        error=SpecError,
        not_mapping="the spec must be a YAML mapping with at least phases (or model), "
        "touchpoints and goal",
    )
    spec: JourneySpec | None = None
    try:
        spec = JourneySpec.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            loc = [p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
            msg = _pydantic_message(err, loc)
            problems.append(SpecProblem(file, located.line(loc), _field_path(loc), msg))
    for ref_loc, msg in _check_references(data):
        problems.append(SpecProblem(file, located.line(ref_loc), _field_path(ref_loc), msg))
    if problems or spec is None:
        problems.sort(key=lambda p: p.line or 0)
        raise SpecError(problems)
    return spec


def _pydantic_message(err: Mapping[str, Any], loc: Sequence[str | int]) -> str:
    kind = err.get("type", "")
    if kind == "extra_forbidden":
        return f"unknown field {loc[-1]!r}; check the spelling (see docs/spec.md)"
    if kind == "missing":
        return "required field is missing"
    if kind == "string_pattern_mismatch":
        return (
            f"{err.get('input')!r} is not a valid id: use lower-case letters, digits and "
            "underscores, starting with a letter"
        )
    if kind == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        return f"{err.get('input')!r} is not allowed; allowed: {expected}"
    msg = str(err.get("msg", "invalid value"))
    return msg.removeprefix("Value error, ")


def load_spec(path: str | Path) -> JourneySpec:
    """Load the journey spec at ``path``."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(
            [
                SpecProblem(
                    str(p),
                    None,
                    "",
                    "file not found: create one with `journeymap init` or pass --spec",
                )
            ]
        ) from None
    except UnicodeDecodeError as exc:
        raise SpecError(
            [SpecProblem(str(p), None, "", f"not UTF-8 text ({exc.reason} at byte {exc.start})")]
        ) from None
    return parse_spec(text, str(p))
