"""What a test needs from the machine, found the same way everywhere: a missing tool or package
skips the test with the reason and the Debian package to install. Under .ci/run
(NETPROF_TEST_STRICT=1), which installs all of them, a missing one fails instead of skipping."""

from __future__ import annotations

import os
import shutil

import pytest

# bpftool, and tools like it, live in /usr/sbin, which a normal user's PATH lacks.
SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin", "/sbin"])


def missing(reason: str) -> None:
    if os.environ.get("NETPROF_TEST_STRICT") == "1":
        pytest.fail(f"{reason} (NETPROF_TEST_STRICT: .ci/run installs it)")
    pytest.skip(reason, allow_module_level=True)


def tool(name: str, package: str | None = None) -> str:
    """The path of the program ``name``, or skip: '<name> is not installed (apt-get install <package>)'."""
    path = shutil.which(name, path=SEARCH_PATH)
    if path is None:
        missing(f"{name} is not installed (Debian: apt-get install {package or name})")
    return path


def module(name: str, extra: str = "viz"):
    """Import ``name``, or skip: the optional extra that provides it is not installed."""
    try:
        return __import__(name)
    except ImportError as err:
        missing(f"{name} is not installed ({err}): make install adds the [{extra}] extra")
