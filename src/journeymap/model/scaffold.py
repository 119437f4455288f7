"""``journeymap init``: a new project with a journey spec for one of the shipped phase models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Final

from journeymap.config import PROJECT_FILE
from journeymap.errors import ConfigError
from journeymap.model.phase_models import LANGUAGES, Lang, get_phase_model
from journeymap.model.spec import parse_spec

_TEXT: Final[dict[str, dict[Lang, str]]] = {
    "head": {
        "en": "Journey spec: phases, touchpoints and the goal. Reference: docs/spec.md",
        "de": "Journey-Spezifikation: Phasen, Touchpoints und Ziel. Referenz: docs/spec.md",
    },
    "phases": {
        "en": "Phases come from the model; add goals, questions, feelings and measures.",
        "de": "Die Phasen stammen aus dem Modell; ergänzen Sie Ziele, Fragen, Gefühle, Maßnahmen.",
    },
    "touchpoints": {
        "en": "Each touchpoint belongs to one phase; `match` maps events to it (first match wins).",
        "de": "Jeder Touchpoint gehört zu einer Phase; `match` ordnet Events zu "
        "(erste Regel gewinnt).",
    },
    "question": {"en": "What do customers ask here?", "de": "Was fragen Kunden hier?"},
    "goal": {"en": "Purchase", "de": "Kauf"},
}

# Example touchpoints per position in the model: (id, event, channel, en label, de label)
_EXAMPLES: Final = (
    ("social_ad", "ad_click", "social_ads", "Social ad", "Social-Anzeige"),
    ("product_page", "product_view", "web", "Product page", "Produktseite"),
    ("cart", "add_to_cart", "web", "Cart", "Warenkorb"),
    ("order", "order_completed", "web", "Order placed", "Bestellung abgeschlossen"),
    ("review_request", "review_written", "email", "Review", "Bewertung"),
    ("newsletter", "newsletter_click", "newsletter", "Newsletter", "Newsletter"),
)


def spec_yaml(model: str, lang: str, name: str) -> str:
    """The text of a new journey spec for ``model`` in ``lang``."""
    if lang not in LANGUAGES:
        raise ConfigError(f"unknown language {lang!r}; allowed: {', '.join(LANGUAGES)}")
    lg: Lang = "de" if lang == "de" else "en"
    pm = get_phase_model(model)
    q = json.dumps
    lines = [
        f"# {_TEXT['head'][lg]}",
        "version: 1",
        f"name: {q(name, ensure_ascii=False)}",
        f"language: {lg}",
        f"model: {model}",
        "",
        f"# {_TEXT['phases'][lg]}",
        "phases:",
    ]
    for p in pm.phases:
        goal = p.goal_de if lg == "de" else p.goal_en
        lines += [
            f"  - id: {p.id}",
            f"    label: {{en: {q(p.en)}, de: {q(p.de, ensure_ascii=False)}}}",
            f"    goals: [{q(goal, ensure_ascii=False)}]",
            f"    questions: [{q(_TEXT['question'][lg], ensure_ascii=False)}]",
            f"    feeling: {{expected: {p.feeling}}}",
            "    measures: []",
        ]
    lines += ["", f"# {_TEXT['touchpoints'][lg]}", "touchpoints:"]
    # spread the examples over the phases: first, middle ones, the purchase-like one, last
    n = len(pm.phases)
    for i, (tp_id, event, channel, en, de) in enumerate(_EXAMPLES):
        phase = pm.phases[min(n - 1, i * n // len(_EXAMPLES))].id
        if event == "order_completed":
            phase = pm.phases[min(n - 1, max(1, n // 2))].id
        lines += [
            f"  - id: {tp_id}",
            f"    phase: {phase}",
            f"    channel: {channel}",
            f"    label: {{en: {q(en)}, de: {q(de, ensure_ascii=False)}}}",
            f"    match: {{event: {event}}}",
        ]
    lines += [
        "",
        "goal:",
        f"  name: {q(_TEXT['goal'][lg], ensure_ascii=False)}",
        "  match: {event: order_completed}",
        "  value: revenue",
        "",
        "personas: []",
        "",
    ]
    return "\n".join(lines)


def project_toml(timezone: str) -> str:
    return (
        "# journeymap project settings; see docs/settings.md for all of them.\n"
        "[settings]\n"
        'spec = "journey.yaml"\n'
        'lake = "data/lake"\n'
        f'timezone = "{timezone}"\n'
        "session_gap_minutes = 30\n"
    )


def init_project(
    directory: Path,
    *,
    model: str = "six-phase",
    lang: str = "en",
    name: str = "Customer journey",
    timezone: str = "UTC",
    force: bool = False,
) -> list[Path]:
    """Write ``journeymap.toml`` and ``journey.yaml`` into ``directory``, and for the six-phase
    model (the one the shipped playbooks are written for) the phase playbooks into
    ``campaigns/``, ready to edit; return the files written."""
    from journeymap.playbooks import PLAYBOOKS, playbook_text

    text = spec_yaml(model, lang, name)
    parse_spec(text, "journey.yaml")  # what we write must be valid
    directory.mkdir(parents=True, exist_ok=True)
    targets = {directory / PROJECT_FILE: project_toml(timezone), directory / "journey.yaml": text}
    if model == "six-phase":
        (directory / "campaigns").mkdir(exist_ok=True)
        for playbook in PLAYBOOKS:
            targets[directory / "campaigns" / f"{playbook}.yaml"] = playbook_text(playbook)
    existing = [p for p in targets if p.exists()]
    if existing and not force:
        raise ConfigError(
            f"{', '.join(map(str, existing))} already exist; pass --force to overwrite"
        )
    for path, content in targets.items():
        path.write_text(content, encoding="utf-8")
    return list(targets)
