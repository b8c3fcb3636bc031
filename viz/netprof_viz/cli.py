"""``netprof view``: the core's command line parses the arguments and loads the trace, then hands
both here. Errors the user can fix are ViewError: one line, no traceback."""

from __future__ import annotations

import argparse
import os

from netprof import outfile
from netprof.trace import Trace

from .scene import Options, Scene


class ViewError(ValueError):
    """What is wrong and what to do, in one line."""


def view(trace: Trace, args: argparse.Namespace, size: tuple[int, int], start: float | None,
         end: float | None) -> int:
    only_asked = args.memory or args.throughput or args.xdp  # none asked: every lane the trace has data for
    options = Options(
        stack="merged" if args.stack_merged else "per-cpu", labels=not args.no_stack_labels,
        visible_threshold=args.visible_threshold, vertical_label=args.vertical_label,
        memory=args.memory if only_asked else None, throughput=args.throughput if only_asked else None,
        xdp=args.xdp if only_asked else None, xdp_labels=args.xdp_labels,
        filter=None if start is None and end is None else (start or 0.0, end if end is not None else float("inf")),
        ignored_cpus=tuple(args.ignored_cpus or ()))
    try:
        scene = Scene(trace, options)
    except ValueError as err:
        raise ViewError(str(err)) from None
    if not scene.lanes:
        raise ViewError(f"{args.trace} has nothing to show (no spans, packets, throughput or memory)")
    if args.png:
        return _png(scene, args.png, size)
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise ViewError("no display to open a window on (DISPLAY is not set): use --png FILE, or ssh -X")
    try:
        import vispy

        vispy.use(app=args.backend)
        from vispy import app

        from .canvas import TimelineCanvas
    except (RuntimeError, ValueError) as err:
        raise ViewError(f"cannot open a window with the {args.backend!r} backend ({err}): use --png FILE") from None
    durations = " (durations without netprof's probe cost; --raw: as recorded)" if trace.corrected else ""
    TimelineCanvas(scene, size, title=f"netprof: {args.trace}{durations}")
    app.run()
    return 0


def _png(scene: Scene, path: str, size: tuple[int, int]) -> int:
    try:
        outfile.check_target(path)
        from .headless import render_png

        render_png(scene, path, size)
    except outfile.OutputError as err:
        raise ViewError(str(err)) from None
    except (RuntimeError, OSError) as err:
        raise ViewError(f"cannot render offscreen ({err}): install Mesa's EGL (apt-get install libegl1 "
                        "libegl-mesa0 libgl1-mesa-dri) or OSMesa (libosmesa6)") from None
    print(f"wrote {path} ({size[0]}x{size[1]}, {len(scene.spans):,} spans)")
    return 0
