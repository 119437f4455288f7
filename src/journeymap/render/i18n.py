"""Labels and number / date formats in English and German.

Formats (documented in docs and pinned by tests):

=========== ===================== =====================
what        en                    de
=========== ===================== =====================
number      1,234.5               1.234,5
percent     9.4%                  9,4 %
points      +1.1 pp               +1,1 Pp.
compact     1.2M · 48.2k          1,2 Mio. · 48,2 Tsd.
money (EUR) €12,300               12.300 €
date        2026-11-23 (ISO 8601) 23.11.2026
period      2026-01-01 – 2026-03-31  01.01.2026 – 31.03.2026
=========== ===================== =====================

English dates are ISO 8601: unambiguous for readers on both sides of the Atlantic and
sortable; German dates follow DIN 5008. The space before ``%`` and units in German is a
no-break space so that a value never wraps apart.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Final, Literal

Lang = Literal["en", "de"]
NBSP: Final = "\u00a0"
MINUS: Final = "\u2212"

_CURRENCY_SYMBOL: Final = {"EUR": "€", "USD": "$", "GBP": "£", "CHF": "CHF"}


@dataclass(frozen=True)
class Formatter:
    """Number and date formatting for one language."""

    lang: Lang = "en"

    def _sep(self, text: str) -> str:
        if self.lang == "en":
            return text
        return text.replace(",", "\0").replace(".", ",").replace("\0", ".")

    def number(self, value: float, digits: int = 0, *, sign: bool = False) -> str:
        text = f"{abs(value):,.{digits}f}"
        prefix = ("+" if value > 0 else "") if sign else ""
        if value < 0 and round(abs(value), digits) != 0:
            prefix = MINUS
        return prefix + self._sep(text)

    def integer(self, value: int) -> str:
        return self.number(value, 0)

    def percent(self, share: float, digits: int = 1, *, sign: bool = False) -> str:
        """``share`` is a fraction (0.094 → 9.4%)."""
        digits = digits if abs(share) < 10 else 0
        text = self.number(share * 100, digits, sign=sign)
        return f"{text}%" if self.lang == "en" else f"{text}{NBSP}%"

    def points(self, delta: float, digits: int = 1) -> str:
        """A difference of two shares, in percentage points (0.011 → +1.1 pp)."""
        text = self.number(delta * 100, digits, sign=True)
        return f"{text}{NBSP}pp" if self.lang == "en" else f"{text}{NBSP}Pp."

    def compact(self, value: float) -> str:
        """Short form for big counts: 1.2M, 48.2k (de: 1,2 Mio., 48,2 Tsd.)."""
        a = abs(value)
        for limit, en, de in ((1e9, "B", f"{NBSP}Mrd."), (1e6, "M", f"{NBSP}Mio."), (1e4, "k", "")):
            if a >= limit:
                if limit == 1e4 and self.lang == "de":
                    return self.number(value, 0)  # German writes 48.210 rather than 48 Tsd.
                digits = 1 if a / limit < 100 else 0
                return self.number(value / limit, digits) + (en if self.lang == "en" else de)
        return self.number(value, 0)

    def money(self, value: float, currency: str = "EUR", digits: int = 0) -> str:
        symbol = _CURRENCY_SYMBOL.get(currency, currency)
        text = self.number(value, digits)
        if self.lang == "de":
            return f"{text}{NBSP}{symbol}"
        if len(symbol) > 1:
            return f"{symbol}{NBSP}{text}"
        return f"{MINUS}{symbol}{text[1:]}" if text.startswith(MINUS) else f"{symbol}{text}"

    def date(self, value: dt.date) -> str:
        return value.strftime("%d.%m.%Y") if self.lang == "de" else value.isoformat()

    def period(self, start: dt.date, end: dt.date) -> str:
        return f"{self.date(start)} – {self.date(end)}"

    def score(self, value: float, digits: int = 1) -> str:
        """An emotion score on -2…+2, always signed."""
        return self.number(value, digits, sign=True)

    def t(self, key: str, **values: object) -> str:
        """The label ``key`` in this language, with ``{name}`` placeholders filled."""
        text = LABELS[key][0 if self.lang == "en" else 1]
        return text.format(**values) if values else text


#: key -> (English, German)
LABELS: Final[dict[str, tuple[str, str]]] = {
    # lanes
    "lane.feelings": ("Feelings", "Gefühle"),
    "lane.goals": ("Customer goals & questions", "Ziele & Fragen der Kunden"),
    "lane.touchpoints": ("Touchpoints & channels", "Touchpoints & Kanäle"),
    "lane.measures": ("Our measures", "Unsere Maßnahmen"),
    "lane.pain": ("Pain points / journey breaks", "Schmerzpunkte / Journey-Brüche"),
    "lane.opportunities": ("Opportunities", "Chancen"),
    "lane.kpis": ("KPIs", "Kennzahlen"),
    # legend and provenance
    "legend.data": ("from data", "aus Daten"),
    "legend.spec": ("from spec (YAML)", "aus Spec (YAML)"),
    "legend.break": ("journey break", "Journey-Bruch"),
    "legend.emotion": ("emotion −2…+2", "Emotion −2…+2"),
    "legend.previous": ("previous period", "Vorperiode"),
    "source.data": ("from data", "aus Daten"),
    "source.spec": ("from spec", "aus Spec"),
    "feel.high": ("delighted", "begeistert"),
    "feel.low": ("frustrated", "frustriert"),
    # emotion words by score band
    "emotion.-2": ("frustrated", "frustriert"),
    "emotion.-1": ("annoyed", "verärgert"),
    "emotion.0": ("neutral", "neutral"),
    "emotion.1": ("pleased", "zufrieden"),
    "emotion.2": ("delighted", "begeistert"),
    # phases and funnel
    "customers": ("customers", "Kunden"),
    "customers_n": ("{n} customers", "{n} Kunden"),
    "moment_of_truth": ("★ moment of truth", "★ Moment der Wahrheit"),
    "conversion_to": ("{a} → {b}: {pct} continue", "{a} → {b}: {pct} gehen weiter"),
    "break_tip": (
        "journey break: {pct} continue ({prev} in the previous period)",
        "Journey-Bruch: {pct} gehen weiter ({prev} in der Vorperiode)",
    ),
    "vs_previous": ("{delta} vs previous period", "{delta} zur Vorperiode"),
    "previous": ("previous: {value}", "Vorperiode: {value}"),
    "reach": ("reach {pct}", "Reichweite {pct}"),
    "reach_tip": (
        "{label} ({channel}, {kind}): {n} customers, {pct} of all",
        "{label} ({channel}, {kind}): {n} Kunden, {pct} aller",
    ),
    "kind.direct": ("direct", "direkt"),
    "kind.indirect": ("indirect", "indirekt"),
    "more": ("+{n} more", "+{n} weitere"),
    "more_chips": ("+{n}", "+{n}"),
    "no_data": ("no data", "keine Daten"),
    "feeling_tip_data": (
        "{word}: {score} from surveys (n={n})",
        "{word}: {score} aus Umfragen (n={n})",
    ),
    "feeling_tip_spec": (
        "{word}: {score} expected (written in the spec; no survey data)",
        "{word}: {score} erwartet (aus der Spec; keine Umfragedaten)",
    ),
    "feeling_prev": ("previous period: {score}", "Vorperiode: {score}"),
    "severity.high": ("high", "hoch"),
    "severity.medium": ("medium", "mittel"),
    "severity.low": ("low", "niedrig"),
    # header and footer
    "all_customers": ("All customers", "Alle Kunden"),
    "persona_all_desc": (
        "Everyone in the data, across all personas",
        "Alle Kunden in den Daten, über alle Personas",
    ),
    "subtitle.phases": ("{n} phases", "{n} Phasen"),
    "subtitle.persona": ("Persona “{name}”", "Persona „{name}“"),
    "subtitle.sources": ("merged from {sources}", "zusammengeführt aus {sources}"),
    "footer.generated": ("Generated by journeymap", "Erstellt mit journeymap"),
    "footer.events": ("events {period} (n={n} customers)", "Ereignisse {period} (n={n} Kunden)"),
    "footer.previous": ("previous period {period}", "Vorperiode {period}"),
    "footer.surveys": ("surveys n={n}", "Umfragen n={n}"),
    "footer.spec": ("spec: {file}", "Spec: {file}"),
    "footer.data": ("data", "Daten"),
    # figures
    "fig.map": ("Journey map", "Journey Map"),
    "fig.sankey": ("Paths", "Pfade"),
    "fig.funnel": ("Funnel", "Funnel"),
    "fig.attribution": ("Attribution", "Attribution"),
    "fig.personas": ("Personas", "Personas"),
    "fig.breaks": ("Journey breaks", "Journey-Brüche"),
    "fig.retention": ("Retention", "Kundenbindung"),
    "fig.graph": ("Transitions", "Übergänge"),
    "sankey.title": ("Paths through the journey", "Pfade durch die Journey"),
    "sankey.subtitle": (
        "width = customers; red = exit (drop-off) · hover a band for counts",
        "Breite = Kunden; rot = Ausstieg · Band berühren für Zahlen",
    ),
    "sankey.step": ("STEP {n}", "SCHRITT {n}"),
    "sankey.exit": ("exit", "Ausstieg"),
    "sankey.other": ("other", "Sonstige"),
    "sankey.link": ("{a} → {b}: {n} customers", "{a} → {b}: {n} Kunden"),
    "funnel.title": ("Phase funnel", "Phasen-Funnel"),
    "funnel.subtitle": (
        "customers reaching each phase; red = journey break",
        "Kunden, die jede Phase erreichen; rot = Journey-Bruch",
    ),
    "funnel.dropped": ("{n} dropped", "{n} ausgestiegen"),
    "attribution.title": ("Attribution by model", "Attribution nach Modell"),
    "attribution.subtitle": (
        "share of conversions credited to each channel",
        "Anteil der Conversions je Kanal",
    ),
    "personas.title": ("Personas found in the data", "Personas aus den Daten"),
    "personas.subtitle": (
        "clusters of behaviour and interests; names from the spec",
        "Cluster aus Verhalten und Interessen; Namen aus der Spec",
    ),
    "persona.size": ("{n} customers · {pct}", "{n} Kunden · {pct}"),
    "persona.conversion": ("conversion", "Conversion"),
    "persona.channels": ("channels", "Kanäle"),
    "persona.goals": ("goals", "Ziele"),
    "persona.fears": ("fears", "Sorgen"),
    "persona.path": ("typical path", "typischer Pfad"),
    "persona.hours": ("active", "aktiv"),
    "persona.feelings": ("feelings by phase", "Gefühle je Phase"),
    "breaks.title": ("Journey breaks", "Journey-Brüche"),
    "breaks.subtitle": (
        "where significantly more journeys end than expected",
        "wo signifikant mehr Journeys enden als erwartet",
    ),
    "break.affected": ("{n} customers affected", "{n} Kunden betroffen"),
    "break.lost": ("≈{v} lost revenue", "≈{v} Umsatzverlust"),
    "break.rate": ("exit rate {rate} vs {base} expected", "Ausstiegsrate {rate} statt {base}"),
    "break.significance": ("p {p}", "p {p}"),
    "break.window": ("window", "Zeitraum"),
    "retention.title": ("Retention by cohort", "Kundenbindung nach Kohorte"),
    "retention.subtitle": (
        "share of a cohort active again in each later period",
        "Anteil einer Kohorte, der in späteren Perioden wieder aktiv ist",
    ),
    "retention.cohort": ("cohort", "Kohorte"),
    "retention.size": ("size", "Größe"),
    "retention.period": ("+{n}", "+{n}"),
    "graph.title": ("Transitions between touchpoints", "Übergänge zwischen Touchpoints"),
    "graph.subtitle": (
        "x = phase, edge width = share of transitions; top {k} per touchpoint",
        "x = Phase, Kantenbreite = Anteil der Übergänge; Top {k} je Touchpoint",
    ),
    "graph.edge": ("{a} → {b}: {n} ({pct})", "{a} → {b}: {n} ({pct})"),
    # report chrome
    "report.title": ("Customer journey report", "Customer-Journey-Bericht"),
    "report.lanes": ("Lanes", "Bahnen"),
    "report.view": ("Map", "Karte"),
    "report.download_svg": ("Download SVG", "SVG herunterladen"),
    "report.print": ("Print", "Drucken"),
    "report.previous": ("Show previous period", "Vorperiode zeigen"),
    "report.offline": (
        "This report is one self-contained file; it works offline.",
        "Dieser Bericht ist eine eigenständige Datei; er funktioniert offline.",
    ),
}


def emotion_word(score: float, fmt: Formatter) -> str:
    """A word for an emotion score on -2…+2 (used when the data gives only a number)."""
    band = max(-2, min(2, round(score)))
    return fmt.t(f"emotion.{band}")
