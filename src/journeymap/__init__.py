"""journeymap: customer journey maps from data.

from journeymap import Journeymap
jm = Journeymap("my-project")
jm.funnel().to_pandas()
"""

from __future__ import annotations

from journeymap.analytics.funnels import FunnelResult, FunnelStep, ReachResult, TouchpointReach
from journeymap.config import Settings
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
from journeymap.facade import Journeymap
from journeymap.model.events import EVENT_SCHEMA
from journeymap.model.spec import JourneySpec, load_spec
from journeymap.storage.lake import AppendResult, DeltaEventStore

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
