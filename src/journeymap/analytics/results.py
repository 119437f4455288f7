"""What every analysis result shares: records, a DataFrame, and CSV / JSON files.

A result is a frozen dataclass. It lists its rows in ``to_records()`` and its whole content in
``to_dict()`` (defaults to ``{"rows": records}``); ``to_pandas()`` and ``write()`` follow.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd


class TableResult:
    """Mixin for analysis results that are, at heart, a table of rows."""

    def to_records(self) -> list[dict[str, Any]]:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.to_records()}

    def to_pandas(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame.from_records(self.to_records())

    def write(self, path: str | Path) -> Path:
        """Write as CSV (the rows) or JSON (everything), chosen by the file's suffix."""
        p = Path(path)
        suffix = p.suffix.lower()
        if suffix not in (".csv", ".json"):
            raise ValueError(f"{p}: write .csv or .json (got {p.suffix or 'no suffix'!r})")
        p.parent.mkdir(parents=True, exist_ok=True)
        if suffix == ".json":
            p.write_text(json.dumps(self.to_dict(), indent=2, default=str) + "\n", encoding="utf-8")
        else:
            self.to_pandas().to_csv(p, index=False)
        return p
