"""Where the local platform keeps its state: a leaf module, so the hosts and the supervisor can all import it.

`platform` starts `http_api` and `console`; they only need the state directory back, and importing it
from here (not from `platform`) keeps the import graph acyclic.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def state_dir() -> Path:
    """The local platform's state directory (ETL_LOCAL_DIR, else .etl/local in the repository)."""
    return Path(os.environ.get("ETL_LOCAL_DIR", ROOT / ".etl" / "local"))
