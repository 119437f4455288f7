"""The exception tree of journeymap.

Every error raised on purpose by journeymap derives from ``JourneymapError``; errors caused by
the caller's input (files, settings, spec, arguments) also derive from ``ValueError`` so that
generic code can catch them as such.

    JourneymapError
    ├── ConfigError (ValueError)          a setting or project file is wrong
    ├── SpecError (ValueError)            the journey spec YAML is wrong (file, line, field)
    ├── InputDataError (ValueError)       an input file cannot be read at all
    ├── MissingColumnsError (InputDataError)
    ├── LakeError                         the event lake is missing or unusable
    ├── EngineError                       an analytics backend cannot be reached or used
    └── MissingExtraError (ImportError)   an optional dependency is not installed

Messages say what happened, the offending value, what is allowed, and the next step.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass


class JourneymapError(Exception):
    """Root of every error journeymap raises on purpose."""


class ConfigError(JourneymapError, ValueError):
    """A setting, environment variable or project file has an invalid value."""


@dataclass(frozen=True)
class SpecProblem:
    """One problem in a journey spec, located in its file."""

    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return (
            f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
        )


class SpecError(JourneymapError, ValueError):
    """The journey spec is invalid; ``problems`` lists every problem with file and line."""

    def __init__(self, problems: Sequence[SpecProblem]) -> None:
        self.problems = list(problems)
        n = len(self.problems)
        head = f"the journey spec has {n} problem{'s' if n != 1 else ''}:"
        super().__init__("\n".join([head, *(f"  {p}" for p in self.problems)]))


class InputDataError(JourneymapError, ValueError):
    """An input file cannot be read at all (wrong format, unreadable, empty)."""


class MissingColumnsError(InputDataError):
    """The input lacks columns that every event needs."""

    def __init__(self, file: str, missing: Iterable[str], available: Iterable[str]) -> None:
        self.file = file
        self.missing = sorted(missing)
        self.available = sorted(available)
        super().__init__(
            f"{file}: missing required column(s) {', '.join(self.missing)}; the file has "
            f"{', '.join(self.available) or 'no columns'}. Map them with "
            f"--map {self.missing[0]}=<column in your file> or choose a --preset."
        )


class LakeError(JourneymapError):
    """The event lake is missing, locked or unusable."""


class EngineError(JourneymapError):
    """An analytics backend cannot be reached or used."""


class MissingExtraError(JourneymapError, ImportError):
    """An optional dependency is needed but not installed; the message names the extra."""

    def __init__(self, package: str, extra: str, purpose: str) -> None:
        super().__init__(
            f"{purpose} needs the package {package!r}, which is not installed. "
            f"Install it with: pip install 'journeymap[{extra}]'"
        )
