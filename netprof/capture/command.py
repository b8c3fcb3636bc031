"""A command run under the capture (``netprof attach ... -- COMMAND ARGS``, ``Session(command=[...])``).

It is started before anything is attached, held by a small holder process just short of its
exec until the probes are live, then released: its first instruction runs probed. Uprobes sit on files, not on
processes, so a library it loads later is probed from its first call too. The capture follows
it and every process it forks (as -p does), and stops when it exits. Under sudo it runs as the
user who ran sudo, with that user's groups, not as root; the environment is passed on as it is.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading

from ..outfile import sudo_caller

# The holder reads the gate: "go" execs the command; anything else (netprof closed the pipe
# without releasing it: setup failed, or netprof died) exits 126 without running it. Python, not
# sh: dash reads no file descriptor above 9, and the command must not inherit the pipe.
_HOLD = ("import os, sys\n"
         "gate = int(sys.argv[1])\n"
         "go = os.read(gate, 3) == b'go\\n'\n"
         "os.close(gate)\n"
         "if not go: os._exit(126)\n"
         "try: os.execv(sys.argv[2], sys.argv[3:])\n"
         "except OSError as err:\n"
         "    sys.stderr.write(f'netprof: cannot run {sys.argv[3]}: {err.strerror}\\n')\n"
         "    os._exit(127 if err.errno == 2 else 126)\n")


class CommandError(Exception):
    """The command cannot be run: one line, what and why."""


class Command:
    def __init__(self, argv: list[str]):
        if not argv or not argv[0]:
            raise CommandError("no command after --: give the program to run, e.g. -- ./server --port 8080")
        path = shutil.which(argv[0])
        if path is None:
            where = "no such file" if os.sep in argv[0] else "not found in PATH"
            raise CommandError(f"cannot run {argv[0]!r}: {where}")
        self.argv, self.path = list(argv), path
        self.name = os.path.basename(path)[:15]  # as the kernel keeps it (comm)
        self.process: subprocess.Popen | None = None
        self.status: int | None = None  # the exit status a shell would give: the code, or 128 + signal
        self.exited = threading.Event()
        self._gate = -1

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> int:
        """Start it, held before its exec; its pid (the same after the exec)."""
        gate, self._gate = os.pipe()
        user = sudo_caller()
        uid = gid = None
        groups: list[int] | None = None
        if user is not None:
            import pwd

            uid, gid = user
            try:
                groups = os.getgrouplist(pwd.getpwuid(uid).pw_name, gid)
            except KeyError:
                groups = [gid]
        try:
            self.process = subprocess.Popen([sys.executable, "-I", "-S", "-c", _HOLD, str(gate), self.path,
                                             *self.argv], pass_fds=(gate,), user=uid, group=gid,
                                            extra_groups=groups)
        except OSError as err:
            os.close(self._gate)
            raise CommandError(f"cannot start {self.argv[0]!r}: {err.strerror}") from None
        finally:
            os.close(gate)
        return self.process.pid

    def release(self, on_exit=None) -> None:
        """Let it exec (once); ``on_exit()`` is called once it has exited (from another thread)."""
        if self._gate < 0:
            return
        os.write(self._gate, b"go\n")
        os.close(self._gate)
        self._gate = -1

        def wait() -> None:
            assert self.process is not None
            code = self.process.wait()
            self.status = 128 - code if code < 0 else code
            self.exited.set()
            if on_exit is not None:
                on_exit()

        threading.Thread(target=wait, name="netprof-command", daemon=True).start()

    def abandon(self) -> None:
        """Never released: it exits without running the command (the gate closes)."""
        if self._gate >= 0:
            os.close(self._gate)
            self._gate = -1
            if self.process is not None:
                self.process.wait()

    def signal(self, sig: int) -> None:
        if self.process is not None and not self.exited.is_set():
            try:
                os.kill(self.process.pid, sig)
            except ProcessLookupError:
                pass


def describe_status(status: int) -> str:
    if status > 128 and status - 128 in signal.valid_signals():
        return f"killed by {signal.Signals(status - 128).name}"
    return f"exited with status {status}"
