"""C++ symbol names as people write them (``ns::fn(int)`` for ``_ZN2ns2fnEi``), from the Itanium
C++ ABI's own demangler, ``__cxa_demangle`` in libstdc++ (what c++filt uses), called through
ctypes: no program run, no name guessed. Without libstdc++ names stay as the symbol table has them.
"""

from __future__ import annotations

import ctypes
import functools

from .sys import libc


@functools.lru_cache(maxsize=1)
def _demangler():
    try:
        lib = ctypes.cdll.LoadLibrary("libstdc++.so.6")  # not libc: netprof.loader.sys keeps that one
    except OSError:
        return None
    function = lib.__cxa_demangle
    function.restype = ctypes.c_void_p
    function.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.POINTER(ctypes.c_int)]
    return function


def available() -> bool:
    return _demangler() is not None


def demangle(name: str) -> str:
    """``name`` demangled if it is a mangled C++ name (``_Z...``), else ``name`` itself."""
    if not name.startswith("_Z"):
        return name
    function = _demangler()
    if function is None:
        return name
    symbol, _, version = name.partition("@")  # name@VERSION: demangle the name, keep the version
    status = ctypes.c_int()
    pointer = function(symbol.encode(), None, None, ctypes.byref(status))
    if status.value != 0 or not pointer:
        return name
    try:
        text = ctypes.string_at(pointer).decode(errors="replace")
    finally:
        libc.free(ctypes.c_void_p(pointer))
    return f"{text}@{version}" if version else text


def without_parameters(demangled: str) -> str:
    """``ns::fn`` from ``ns::fn(int) const``: the name before its parameter list (templates kept)."""
    depth = 0
    for i, c in enumerate(demangled):
        if c == "<":
            depth += 1
        elif c == ">":
            depth -= 1
        elif c == "(" and depth == 0 and i > 0 and not demangled.startswith("operator()", max(0, i - 8)):
            return demangled[:i]
    return demangled
