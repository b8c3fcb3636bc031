"""netprof: high-resolution Linux network profiling in pure Python."""

__version__ = "0.1.0"
