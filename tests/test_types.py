"""The core type-checks clean under mypy (issue 17): all of netprof/, and the assembler also with
every definition typed (a builder factory without a return type makes every builder it returns Any)."""

import subprocess
import sys
from pathlib import Path

import needs

ROOT = Path(__file__).resolve().parent.parent


def mypy(*args: str) -> subprocess.CompletedProcess:
    needs.module("mypy", extra="test")
    # cache-dir=/dev/null: write nothing into the tree
    return subprocess.run([sys.executable, "-m", "mypy", *args, "--ignore-missing-imports", "--cache-dir=/dev/null"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_netprof_has_no_mypy_errors():
    result = mypy("netprof")
    assert result.returncode == 0, result.stdout + result.stderr


def test_asm_has_no_untyped_definitions():
    result = mypy("netprof/asm", "--follow-imports=silent", "--disallow-untyped-defs", "--disallow-incomplete-defs")
    assert result.returncode == 0, result.stdout + result.stderr
