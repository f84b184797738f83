"""Darknet `.data` files (`key = value` lines) and the plain lists they name (image lists, names)."""

from __future__ import annotations

from pathlib import Path

from pydarknet.errors import DarknetError
from pydarknet.fileio import read_text
from pydarknet.names import read_names
from pydarknet.paths import resolve_path

__all__ = ["DataOptions", "read_data_file", "read_data_names", "read_list", "resolve_path"]


class DataOptions(dict[str, str]):
    """A .data file's options; `path` and `lines` (key -> line number) let errors point at the line."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self.lines: dict[str, int] = {}


def read_data_file(path: str | Path) -> DataOptions:
    """Options of a `.data` file. As in Darknet's read_data_cfg, every blank inside a line is removed
    (so paths cannot contain spaces), `#` and `;` start comment lines, and the first of repeated keys
    wins (option_find returns the first match)."""
    path = resolve_path(path)
    options = DataOptions(path)
    for number, raw in enumerate(read_text(path, ".data file").splitlines(), start=1):
        line = "".join(raw.split())
        if not line or line[0] in "#;":
            continue
        key, sep, value = line.partition("=")
        # Darknet accepts a line without '=' (NULL value) and crashes later; reject it here.
        if not sep or not key or not value:
            raise DarknetError(f"expected key = value, got {raw.strip()!r}", path, number)
        if key not in options:
            options[key] = value
            options.lines[key] = number
    return options


def read_data_names(options: DataOptions, classes: int) -> list[str]:
    """The names= file of a .data file (Darknet's default data/names.list), at least `classes` lines.
    A names file that cannot be read is reported at the .data line that names it."""
    name = options.get("names", "data/names.list")
    try:
        return read_names(name, classes, relative_to=options.path)
    except DarknetError as err:
        if err.line is not None or "names" not in options.lines:
            raise
        raise DarknetError(f"names={name}: {err}", options.path, options.lines["names"]) from None


def read_list(path: str | Path) -> list[str]:
    """Non-blank lines of a list file, surrounding whitespace removed (Darknet's get_paths keeps
    them, so a stray trailing blank or `\\r` there makes an image unopenable)."""
    path = Path(path)
    return [s for s in (line.strip() for line in read_text(path, "list file").splitlines()) if s]
