"""Measuring the probe costs: a capture of the calibration workload, each of its functions probed
where it starts, read back like any trace.

Calls in a tight loop give both figures per site: the time from one call's entry timestamp to the
next one's is a probed call's whole cost (the loop's own few nanoseconds aside), and a span's
duration is the part inside the span (the function does nothing but return).

What a hit costs depends on where the process's stack and mappings happen to be (measured here:
1.37 to 1.84 µs a call at a push, from one run of a program to the next with address space
randomisation, 1.38 ± 0.01 µs without it). So the workload runs RUNS times, each a process with a
layout of its own, and each figure is the mean over them: what a probed process costs on average.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading

import numpy as np

from . import workload
from . import costs
from .costs import Calibration, SiteCost

CALLS = 500
RUNS = 16


class CalibrationError(Exception):
    pass


def measure(calls: int = CALLS, runs: int = RUNS) -> Calibration:
    from ..loader.features import boot_id

    folder = tempfile.mkdtemp(prefix="netprof-calibration-")  # 0700, made with O_EXCL semantics
    try:
        program = workload.build(calls)
        exe = os.path.join(folder, "calibration")
        fd = os.open(exe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o700)
        with os.fdopen(fd, "wb") as f:
            f.write(program.image)
        spans = _capture(exe, runs, list(program.symbols), os.path.join(folder, "calibration.trace"))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    found = Calibration(os.uname().release, boot_id(), calls)
    costs = {}
    for site in workload.SITES:
        starts, durations = spans.get(site.name, (np.empty(0), np.empty(0)))
        if len(starts) != calls * runs:
            raise CalibrationError(f"{len(starts)} of {calls * runs} calls of {site.name} recorded")
        gaps = np.diff(starts.reshape(runs, calls).astype(np.float64), axis=1)  # a row per run: no gap between runs
        costs[site.name] = (float(gaps.mean()), float(durations.astype(np.float64).mean()))
    cheapest, dearest = min(c for c, _ in costs.values()), max(c for c, _ in costs.values())
    threshold = (cheapest * dearest) ** 0.5 if dearest >= 2 * cheapest else float("inf")
    for site in workload.SITES:
        cost, in_span = costs[site.name]
        found.sites[site.name] = SiteCost(site.insn, round(cost, 1), round(in_span, 1), cost < threshold)
    return found


def _capture(exe: str, runs: int, functions: list[str], output: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{function: (span starts, durations)} from a capture of ``runs`` runs of ``exe``, in call order."""
    from ..format import tracefile
    from ..format.layout import ENTRY, EXIT
    from ..session import Session, SessionError

    failure: list[str] = []
    costs.measuring = True  # the capture that measures asks for no costs
    try:
        session = Session(user=[f"{exe}:{name}" for name in functions], exact_entry=True, output=output)
        with session:
            def run_workload() -> None:
                try:
                    for _ in range(runs):
                        done = subprocess.run([exe], timeout=60, stdin=subprocess.DEVNULL, check=False)
                        if done.returncode:
                            failure.append(f"the workload exited with {done.returncode}")
                            break
                except (OSError, subprocess.TimeoutExpired) as err:
                    failure.append(f"the workload did not run: {err}")
                finally:
                    session.stop()

            runner = threading.Thread(target=run_workload, name="netprof-calibration")
            runner.start()
            try:
                session.run()
            finally:
                runner.join()
    except (SessionError, OSError) as err:
        raise CalibrationError(str(err)) from None
    finally:
        costs.measuring = False
    if failure:
        raise CalibrationError(failure[0])
    if session.summary.lost_total:
        raise CalibrationError(f"{session.summary.lost_total} events lost")
    captured = tracefile.read(output)
    if captured.problems:
        raise CalibrationError(f"the calibration's trace: {captured.problems[0]}")
    events = captured.records[tracefile.Kind.SPANS]
    out = {}
    for probe in captured.header["probes"]:
        # one thread calls each function in turn, so its entries and exits alternate
        mine = events[events["probe"] == probe["id"]]
        mine = mine[np.argsort(mine["ts"], kind="stable")]
        entries, exits = mine["ts"][mine["kind"] == ENTRY], mine["ts"][mine["kind"] == EXIT]
        if len(entries) != len(exits) or np.any(exits < entries):
            raise CalibrationError(f"{probe['name']}: {len(entries)} entries and {len(exits)} exits do not pair")
        out[probe["name"].rsplit(":", 1)[-1]] = (entries, exits - entries)
    return out
