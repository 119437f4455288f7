"""journeymap: customer journey maps from data.

from journeymap import Journeymap
jm = Journeymap("my-project")
jm.funnel().to_pandas()
"""

from __future__ import annotations

import typing as _typing
from importlib import import_module as _import_module

from journeymap.errors import (
    ConfigError,
    EngineError,
    InputDataError,
    JourneymapError,
    LakeError,
    MissingColumnsError,
    MissingExtraError,
    SpecError,
)

if _typing.TYPE_CHECKING:
    from journeymap.analytics.funnels import FunnelResult, FunnelStep, ReachResult, TouchpointReach
    from journeymap.config import Settings
    from journeymap.facade import Journeymap
    from journeymap.model.events import EVENT_SCHEMA
    from journeymap.model.spec import JourneySpec, load_spec
    from journeymap.storage.lake import AppendResult, DeltaEventStore

#: Imported on first use (PEP 562), so ``journeymap serve`` or ``journeymap worker`` do not pay
#: for Ibis, DuckDB and Delta Lake they may never touch.
_LAZY = {
    "FunnelResult": "journeymap.analytics.funnels",
    "FunnelStep": "journeymap.analytics.funnels",
    "ReachResult": "journeymap.analytics.funnels",
    "TouchpointReach": "journeymap.analytics.funnels",
    "Settings": "journeymap.config",
    "Journeymap": "journeymap.facade",
    "EVENT_SCHEMA": "journeymap.model.events",
    "JourneySpec": "journeymap.model.spec",
    "load_spec": "journeymap.model.spec",
    "AppendResult": "journeymap.storage.lake",
    "DeltaEventStore": "journeymap.storage.lake",
}


def __getattr__(name: str) -> _typing.Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'journeymap' has no attribute {name!r}")
    value = getattr(_import_module(module), name)
    globals()[name] = value
    return value


__version__ = "0.1.0"

__all__ = [
    "EVENT_SCHEMA",
    "AppendResult",
    "ConfigError",
    "DeltaEventStore",
    "EngineError",
    "FunnelResult",
    "FunnelStep",
    "InputDataError",
    "JourneySpec",
    "Journeymap",
    "JourneymapError",
    "LakeError",
    "MissingColumnsError",
    "MissingExtraError",
    "ReachResult",
    "Settings",
    "SpecError",
    "TouchpointReach",
    "__version__",
    "load_spec",
]


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
