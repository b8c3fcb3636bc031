"""AsmError: every assembler failure, naming the source line and column where there is one."""

from __future__ import annotations

from typing import NamedTuple


class Location(NamedTuple):
    """Where an instruction came from: a line of assembler text, or a Python call site."""

    line: int
    column: int = 1
    text: str = ""
    file: str = ""

    def __str__(self) -> str:
        where = f"{self.file}:" if self.file else "line "
        return f"{where}{self.line}:{self.column}" if self.file else f"line {self.line}, column {self.column}"


class AsmError(ValueError):
    """An instruction or program that cannot be encoded, with the place it came from."""

    def __init__(self, message: str, location: Location | None = None):
        super().__init__(message)
        self.message = message
        self.location = location

    @property
    def line(self) -> int | None:
        return self.location.line if self.location else None

    @property
    def column(self) -> int | None:
        return self.location.column if self.location else None

    def at(self, location: Location | None) -> AsmError:
        """The same error placed at ``location`` unless it already has a place."""
        if self.location is not None or location is None:
            return self
        return AsmError(self.message, location)

    def __str__(self) -> str:
        loc = self.location
        if loc is None:
            return self.message
        text = f"{loc}: {self.message}"
        if loc.text:
            text += f"\n    {loc.text}\n    {' ' * (loc.column - 1)}^"
        return text
