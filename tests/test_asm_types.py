"""netprof/asm type-checks clean under mypy (issue 17), when mypy is installed (it is not a test dependency)."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_asm_has_no_mypy_errors():
    pytest.importorskip("mypy")
    # follow-imports=silent: report netprof/asm only, not the modules netprof/__init__ imports lazily.
    # No untyped defs: a builder factory without a return type makes every builder it returns Any.
    # cache-dir=/dev/null: write nothing into the tree.
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "netprof/asm", "--ignore-missing-imports", "--follow-imports=silent",
         "--disallow-untyped-defs", "--disallow-incomplete-defs", "--cache-dir=/dev/null"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
