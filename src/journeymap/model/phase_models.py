"""The phase models journeymap ships, with labels in English and German.

A journey spec names one (``model: six-phase``) and inherits its phases, or lists its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

Lang = Literal["en", "de"]
LANGUAGES: Final[tuple[Lang, ...]] = ("en", "de")


@dataclass(frozen=True)
class PhaseTemplate:
    id: str
    en: str
    de: str
    #: what customers typically want here (en, de): seeds the scaffold's goals
    goal_en: str
    goal_de: str
    #: the feeling to expect, from -2 (very negative) to +2 (very positive)
    feeling: float


@dataclass(frozen=True)
class PhaseModel:
    id: str
    en: str
    de: str
    phases: tuple[PhaseTemplate, ...]

    def phase_ids(self) -> list[str]:
        return [p.id for p in self.phases]


PHASE_MODELS: Final[dict[str, PhaseModel]] = {
    m.id: m
    for m in (
        PhaseModel(
            "six-phase",
            "Six phases",
            "Sechs Phasen",
            (
                PhaseTemplate(
                    "awareness",
                    "Awareness",
                    "Aufmerksamkeit",
                    "Notice that a product could solve my need",
                    "Merken, dass ein Produkt mein Bedürfnis lösen könnte",
                    0.5,
                ),
                PhaseTemplate(
                    "consideration",
                    "Consideration",
                    "Erwägung",
                    "Compare options and understand what fits me",
                    "Optionen vergleichen und verstehen, was zu mir passt",
                    0.3,
                ),
                PhaseTemplate(
                    "preference",
                    "Preference",
                    "Präferenz",
                    "Be sure I pick the right product at the right price",
                    "Sicher sein, das richtige Produkt zum richtigen Preis zu wählen",
                    0.4,
                ),
                PhaseTemplate(
                    "purchase",
                    "Purchase",
                    "Kauf",
                    "Buy quickly and safely",
                    "Schnell und sicher kaufen",
                    0.0,
                ),
                PhaseTemplate(
                    "after_sale",
                    "After-sale",
                    "Nachkauf",
                    "Get the order on time and help when something goes wrong",
                    "Die Bestellung pünktlich erhalten und Hilfe, wenn etwas schiefgeht",
                    0.2,
                ),
                PhaseTemplate(
                    "loyalty",
                    "Loyalty",
                    "Loyalität",
                    "Be recognised and rewarded for coming back",
                    "Für die Treue erkannt und belohnt werden",
                    0.8,
                ),
            ),
        ),
        PhaseModel(
            "five-phase",
            "Five phases",
            "Fünf Phasen",
            (
                PhaseTemplate(
                    "need_recognition",
                    "Need recognition",
                    "Bedürfniserkennung",
                    "Understand what I need",
                    "Verstehen, was ich brauche",
                    0.2,
                ),
                PhaseTemplate(
                    "information",
                    "Information search",
                    "Informationssuche",
                    "Find trustworthy information quickly",
                    "Schnell vertrauenswürdige Informationen finden",
                    0.3,
                ),
                PhaseTemplate(
                    "decision",
                    "Decision",
                    "Entscheidung",
                    "Decide and buy without doubts",
                    "Ohne Zweifel entscheiden und kaufen",
                    0.1,
                ),
                PhaseTemplate(
                    "retention",
                    "Retention",
                    "Bindung",
                    "Get value from what I bought",
                    "Den Nutzen aus meinem Kauf ziehen",
                    0.4,
                ),
                PhaseTemplate(
                    "evaluation",
                    "Evaluation",
                    "Bewertung",
                    "Share my experience and be heard",
                    "Meine Erfahrung teilen und gehört werden",
                    0.5,
                ),
            ),
        ),
        PhaseModel(
            "five-step",
            "Five steps",
            "Fünf Schritte",
            (
                PhaseTemplate(
                    "perception",
                    "Perception",
                    "Wahrnehmung",
                    "Notice the brand and what it offers",
                    "Die Marke und ihr Angebot wahrnehmen",
                    0.5,
                ),
                PhaseTemplate(
                    "purchase_decision",
                    "Purchase decision",
                    "Kaufentscheidung",
                    "Choose with confidence",
                    "Mit Zuversicht wählen",
                    0.2,
                ),
                PhaseTemplate(
                    "acquisition",
                    "Acquisition",
                    "Erwerb",
                    "Buy and receive it smoothly",
                    "Reibungslos kaufen und erhalten",
                    0.1,
                ),
                PhaseTemplate(
                    "service",
                    "Service",
                    "Service",
                    "Get help fast when I need it",
                    "Schnell Hilfe bekommen, wenn ich sie brauche",
                    0.0,
                ),
                PhaseTemplate(
                    "retention",
                    "Retention",
                    "Kundenbindung",
                    "Feel valued and come back",
                    "Mich geschätzt fühlen und wiederkommen",
                    0.7,
                ),
            ),
        ),
        PhaseModel(
            "three-stage",
            "Three stages",
            "Drei Stufen",
            (
                PhaseTemplate(
                    "before_purchase",
                    "Before purchase",
                    "Vor dem Kauf",
                    "Find the right product",
                    "Das richtige Produkt finden",
                    0.4,
                ),
                PhaseTemplate(
                    "during_purchase",
                    "During purchase",
                    "Während des Kaufs",
                    "Buy without friction",
                    "Ohne Hürden kaufen",
                    0.0,
                ),
                PhaseTemplate(
                    "after_purchase",
                    "After purchase",
                    "Nach dem Kauf",
                    "Enjoy it, get support, come back",
                    "Es genießen, Unterstützung bekommen, wiederkommen",
                    0.5,
                ),
            ),
        ),
    )
}


def get_phase_model(name: str) -> PhaseModel:
    """The shipped phase model ``name``; the error lists the allowed names."""
    try:
        return PHASE_MODELS[name]
    except KeyError:
        from journeymap.errors import ConfigError

        raise ConfigError(
            f"unknown phase model {name!r}; allowed: {', '.join(PHASE_MODELS)}"
        ) from None
