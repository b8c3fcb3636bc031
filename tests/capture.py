"""A capture running in the background for the tests that drive one (test_attach, test_throughput)."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time


class Capture:
    """``netprof attach ARGS`` in the background (after ``prefix``, e.g. ip netns exec NS), ready once it
    has printed its "Tracing" line
    (after any notes: stderr is read unbuffered, so no line waits in a buffer that select cannot see)."""

    def __init__(self, *args: str, prefix: tuple[str, ...] = (), ready_timeout: float = 60):
        self.proc = subprocess.Popen([*prefix, sys.executable, "-m", "netprof", "attach", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + ready_timeout
        fd, said = self.proc.stderr.fileno(), b""
        while time.monotonic() < deadline:
            if select.select([fd], [], [], 0.2)[0]:
                chunk = os.read(fd, 65536)
                said += chunk
                if any(line.startswith(b"Tracing") for line in said.split(b"\n")[:-1]) or not chunk:
                    break
            elif self.proc.poll() is not None:
                break
        self.lines = [said.decode()]
        if not any(line.startswith("Tracing") for line in self.lines[0].splitlines()):
            raise AssertionError(f"netprof attach did not start: {self.lines[0]}{self.proc.stderr.read().decode()}")

    def stop(self, sig: int = signal.SIGINT) -> tuple[int, str]:
        self.proc.send_signal(sig)
        _, err = self.proc.communicate(timeout=60)
        return self.proc.returncode, "".join(self.lines) + err.decode()
