"""Column mapping: which column of a file feeds which event field.

A field is fed by the column of the same name unless a mapping names another column
(``--map customer_id=user_id,ts=timestamp``). Every other column of the file is folded into
``properties`` (``{"column": value}``, empty values left out; a key already in the file's own
``properties`` object is overwritten by the column). For JSON files a mapping may name a
dotted path (``--map campaign=context.campaign.name``). The derived columns ``ts_us`` and
``event_date`` (of a file exported from a lake) are ignored: they are computed from ``ts``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from journeymap.errors import ConfigError, InputDataError, MissingColumnsError
from journeymap.importing.normalize import TARGETS
from journeymap.importing.sources import LOC
from journeymap.model.events import DERIVED_COLUMNS, IDENTITY_COLUMNS, REQUIRED_COLUMNS

_ALLOWED = ", ".join(TARGETS)


def parse_mapping(text: str) -> dict[str, str]:
    """``"customer_id=user_id,ts=timestamp"`` → ``{"customer_id": "user_id", "ts": "timestamp"}``.

    Targets are event fields (``TARGETS``); sources are column names of the file.
    """
    mapping: dict[str, str] = {}
    for raw in text.split(","):
        pair = raw.strip()
        if not pair:
            continue
        target, sep, source = (s.strip() for s in pair.partition("="))
        if not sep or not target or not source:
            raise ConfigError(
                f"mapping {pair!r} is not FIELD=COLUMN; write pairs like "
                f"customer_id=user_id,ts=timestamp (fields: {_ALLOWED})"
            )
        if target in mapping:
            raise ConfigError(
                f"mapping {pair!r}: the field {target!r} is mapped twice "
                f"({target}={mapping[target]} and {target}={source}); map each field once"
            )
        mapping[target] = source
    return check_mapping(mapping)


def check_mapping(mapping: Mapping[str, str]) -> dict[str, str]:
    """The mapping as a dict, or a ``ConfigError`` naming a bad pair and the allowed fields."""
    for target, source in mapping.items():
        pair = f"{target}={source}"
        if target not in TARGETS:
            hint = ""
            if source in TARGETS:
                hint = f" (the event field comes first: did you mean {source}={target}?)"
            elif target in ("ts_us", "event_date"):
                hint = " (it is derived from ts)"
            raise ConfigError(
                f"mapping {pair!r}: {target!r} is not an event field{hint}; map one of: {_ALLOWED}"
            )
        if not isinstance(source, str) or not source.strip():
            raise ConfigError(f"mapping {pair!r}: the column name is empty")
    return {t: s.strip() for t, s in mapping.items()}


def resolve_columns(
    file: str, columns: Sequence[str], mapping: Mapping[str, str]
) -> tuple[dict[str, str], list[str]]:
    """Field → source column, and the columns folded into ``properties``.

    Raises ``MissingColumnsError`` when a required field has no column, and
    ``InputDataError`` when the mapping names a column the file lacks.
    """
    present = [c for c in columns if c != LOC]
    for target, source in mapping.items():
        if source not in present:
            raise InputDataError(
                f"{file}: --map {target}={source}: the file has no column {source!r}; "
                f"it has {', '.join(present) or 'no columns'}"
            )
    return _complete(file, present, mapping, dict(mapping))


def resolve_keys(
    file: str, keys: Sequence[str], mapping: Mapping[str, str], *, strict: bool = True
) -> tuple[dict[str, tuple[str, ...]], list[str]]:
    """Like ``resolve_columns`` for JSON objects: sources are keys or dotted paths.

    ``strict=False`` (chunks after the first) accepts keys that are absent: their rows then
    miss the field and are rejected one by one if it is required.
    """
    paths: dict[str, tuple[str, ...]] = {}
    for target, source in mapping.items():
        if source in keys or not strict:
            paths[target] = tuple(source.split(".")) if source not in keys else (source,)
        elif "." in source and source.split(".", 1)[0] in keys:
            paths[target] = tuple(source.split("."))
        else:
            raise InputDataError(
                f"{file}: --map {target}={source}: the JSON objects have no key {source!r}; "
                f"they have {', '.join(keys) or 'no keys'}"
            )
    sources, extras = _complete(file, keys, mapping, dict(mapping), strict=strict)
    for target, source in sources.items():
        paths.setdefault(target, (source,))
    return paths, extras


def _complete(
    file: str,
    columns: Sequence[str],
    mapping: Mapping[str, str],
    sources: dict[str, str],
    *,
    strict: bool = True,
) -> tuple[dict[str, str], list[str]]:
    used = set(mapping.values())
    for target in TARGETS:
        if target not in sources and target in columns and target not in used:
            sources[target] = target
    missing = [t for t in REQUIRED_COLUMNS if t not in sources]
    if not any(t in sources for t in IDENTITY_COLUMNS):
        missing.append(IDENTITY_COLUMNS[0])
    if missing and strict:
        raise MissingColumnsError(file, missing, columns)
    taken = set(sources.values()) | set(DERIVED_COLUMNS)
    extras = [c for c in columns if c not in taken]
    return sources, extras
