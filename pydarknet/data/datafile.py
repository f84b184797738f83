"""Darknet `.data` files (`key = value` lines) and the plain lists they name (image lists, names)."""

from __future__ import annotations

from pathlib import Path

from pydarknet.errors import DarknetError
from pydarknet.paths import resolve_path

__all__ = ["read_data_file", "read_list", "resolve_path"]


def _read_text(path: Path, what: str) -> str:
    try:
        return path.read_bytes().decode("utf-8", errors="replace")
    except IsADirectoryError:
        raise DarknetError(f"is a directory, expected {what}", path) from None
    except OSError as err:
        raise DarknetError(f"cannot read {what}: {err.strerror}", path) from None


def read_data_file(path: str | Path) -> dict[str, str]:
    """Options of a `.data` file. As in Darknet's read_data_cfg, every blank inside a line is removed
    (so paths cannot contain spaces), `#` and `;` start comment lines, and the first of repeated keys
    wins (option_find returns the first match)."""
    path = Path(path)
    options: dict[str, str] = {}
    for number, raw in enumerate(_read_text(path, "a .data file").splitlines(), start=1):
        line = "".join(raw.split())
        if not line or line[0] in "#;":
            continue
        key, sep, value = line.partition("=")
        # Darknet accepts a line without '=' (NULL value) and crashes later; reject it here.
        if not sep or not key or not value:
            raise DarknetError(f"expected key = value, got {raw.strip()!r}", path, number)
        options.setdefault(key, value)
    return options


def read_list(path: str | Path) -> list[str]:
    """Non-blank lines of a list file, surrounding whitespace removed (Darknet's get_paths keeps
    them, so a stray trailing blank or `\\r` there makes an image unopenable)."""
    path = Path(path)
    return [s for s in (line.strip() for line in _read_text(path, "a list file").splitlines()) if s]
