"""The one user-facing error type: it always names the file and, where known, the line or byte."""

from __future__ import annotations

from pathlib import Path


class DarknetError(Exception):
    """A problem with a user's input, reported as one line `file:line: message`.

    The CLI prints ``str(err)`` and exits with status 2; it never shows a traceback for this type.
    """

    def __init__(
        self,
        message: str,
        file: str | Path | None = None,
        line: int | None = None,
        byte: int | None = None,
    ) -> None:
        self.message = message
        self.file = str(file) if file is not None else None
        self.line = line
        self.byte = byte
        super().__init__(self.__str__())

    def __str__(self) -> str:
        where = self.file or ""
        if self.line is not None:
            where += f":{self.line}"
        if self.byte is not None:
            where += f": byte {self.byte}"
        return f"{where}: {self.message}" if where else self.message
