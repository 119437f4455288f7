"""File import into the event lake: CSV, JSON lines, Parquet (gzip too), with presets.

    from journeymap.importing import import_file, parse_mapping
    summary = import_file(store, Path("events.csv"), mapping=parse_mapping("customer_id=user_id"))
    print(summary)

Modules: ``readers`` (open a file by format; JSON and Parquet), ``csvreader`` (CSV),
``sources`` (the chunks readers yield), ``textblocks`` (vectorised line / record splitting),
``normalize`` (one DuckDB query per chunk: typing, rules, rejects; deterministic event ids),
``mapping`` (which column feeds which field), ``presets`` (Segment, GA4), ``rejects`` (the
rejects file), ``importer`` (``import_file``).
"""

from __future__ import annotations

from journeymap.importing.importer import ImportSummary, import_file
from journeymap.importing.mapping import parse_mapping
from journeymap.importing.presets import PRESETS, Preset
from journeymap.importing.rejects import Reject

__all__ = ["PRESETS", "ImportSummary", "Preset", "Reject", "import_file", "parse_mapping"]
