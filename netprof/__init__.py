"""netprof: high-resolution Linux network profiling in pure Python."""

__version__ = "0.1.0"


def __getattr__(name: str):
    # Lazy: ``import netprof`` stays cheap for the capture path and the CLI.
    if name == "load":
        from .trace import load

        return load
    if name in ("Session", "CaptureOptions"):
        from . import session

        return getattr(session, name)
    raise AttributeError(f"module 'netprof' has no attribute {name!r}")
