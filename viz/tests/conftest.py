"""The viewer's tests use the core's test helpers (tests/needs.py, tests/viz_trace.py)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
