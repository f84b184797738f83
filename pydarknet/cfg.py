"""Darknet `.cfg` parsing: sections with their options, Darknet's defaults through typed getters.

Hand-written because Darknet's format is not INI: section names repeat, whitespace inside a
line is removed (`strip()` in Darknet drops every blank), `#`/`;` start comments.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from pydarknet.errors import DarknetError
from pydarknet.fileio import read_text
from pydarknet.paths import resolve_path

T = TypeVar("T")


class UnusedOptionWarning(UserWarning):
    """An option Darknet would ignore (Darknet prints `Unused field`)."""


C_INT = range(-(2**31), 2**31)  # Darknet keeps integer options in C ints


def _parse_int(raw: str) -> int | None:
    """Darknet reads integers with atoi, which accepts "3.0" as 3; a value like "abc" is a typo, not 0.
    None for text that is not a finite number."""
    try:
        return int(raw)
    except ValueError:
        value = _parse_float(raw)
        return None if value is None else int(value)


def _parse_float(raw: str) -> float | None:
    """The finite number in `raw`, else None."""
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


@dataclass
class Option:
    value: str
    line: int


@dataclass
class Section:
    """One `[kind]` block. Getters record which options were read, so leftovers can be reported."""

    kind: str
    file: str
    line: int
    options: dict[str, Option] = field(default_factory=dict)
    used: set[str] = field(default_factory=set)

    def error(self, message: str, key: str | None = None) -> DarknetError:
        line = self.options[key].line if key in self.options else self.line
        return DarknetError(f"[{self.kind}] {message}", self.file, line)

    def has(self, key: str) -> bool:
        return key in self.options

    def _raw(self, key: str) -> str | None:
        self.used.add(key)
        opt = self.options.get(key)
        return None if opt is None else opt.value

    def get_str(self, key: str, default: str | None = None) -> str | None:
        raw = self._raw(key)
        return default if raw is None else raw

    def get_int(self, key: str, default: int) -> int:
        raw = self._raw(key)
        if raw is None:
            return default
        value = _parse_int(raw)
        if value is None:
            raise self.error(f"{key}={raw!r} is not an integer", key)
        if value not in C_INT:
            raise self.error(f"{key}={raw!r} does not fit Darknet's 32-bit int", key)
        return value

    def get_float(self, key: str, default: float) -> float:
        raw = self._raw(key)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise self.error(f"{key}={raw!r} is not a number", key) from None
        if not math.isfinite(value):
            raise self.error(f"{key}={raw!r} is not a finite number", key)
        return value

    def get_list(self, key: str, kind: type = float) -> list | None:
        raw = self._raw(key)
        if raw is None:
            return None
        items = [s for s in raw.split(",") if s != ""]
        values = [_parse_int(s) if kind is int else _parse_float(s) for s in items]
        if any(v is None or (kind is int and v not in C_INT) for v in values):
            raise self.error(f"{key}={raw!r} is not a comma-separated list of numbers", key)
        return [kind(v) for v in values]

    def read_file(self, key: str, reader: Callable[[Path], T]) -> tuple[T | None, str | None]:
        """(reader(file), name) for the file the option names (found as `resolve_path` finds it), or
        (None, None) without the option; a file that cannot be read or parsed is reported at the cfg line
        naming it."""
        name = self.get_str(key)
        if name is None:
            return None, None
        try:
            return reader(resolve_path(name, self.file)), name
        except DarknetError as err:
            raise DarknetError(f"{key}={name}: {err}", self.file, self.options[key].line) from None

    def positive_int(self, key: str, default: int) -> int:
        value = self.get_int(key, default)
        if value <= 0:
            raise self.error(f"{key}={value} must be positive", key)
        return value

    def warn_unused(self) -> None:
        for key, opt in self.options.items():
            if key not in self.used:
                warnings.warn(
                    f"{self.file}:{opt.line}: Unused field: '{key} = {opt.value}'",
                    UnusedOptionWarning,
                    stacklevel=2,
                )


def parse_cfg_text(text: str, file: str = "<cfg>") -> list[Section]:
    """Parse cfg text into sections in file order (the first must be `[net]` or `[network]`)."""
    sections: list[Section] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = "".join(raw.split())
        if not line or line[0] in "#;":
            continue
        if line[0] == "[":
            if not line.endswith("]") or len(line) < 3:
                raise DarknetError(f"malformed section header {raw.strip()!r}", file, number)
            sections.append(Section(line[1:-1], file, number))
            continue
        if "=" not in line:
            raise DarknetError(f"expected key=value, got {raw.strip()!r}", file, number)
        if not sections:
            raise DarknetError("option before the first [section]", file, number)
        key, value = line.split("=", 1)
        if not key:
            raise DarknetError(f"empty option name in {raw.strip()!r}", file, number)
        # Darknet's option_find returns the first occurrence; keep it and ignore repeats.
        sections[-1].options.setdefault(key, Option(value, number))
    if not sections:
        raise DarknetError("empty cfg: no [net] section", file, 1)
    if sections[0].kind not in ("net", "network"):
        raise DarknetError("first section must be [net] or [network]", file, sections[0].line)
    return sections


def parse_cfg(path: str | Path) -> list[Section]:
    """Read and parse a `.cfg` file (found as `resolve_path` finds it); any problem is a DarknetError naming
    the file."""
    path = resolve_path(path)
    text = read_text(path, "cfg file")
    if "\0" in text:
        raise DarknetError("not a text cfg file (contains NUL bytes)", path)
    return parse_cfg_text(text, str(path))


def write_cfg(sections: list[Section]) -> str:
    """Serialise sections back to cfg text (the round-trip partner of parse_cfg_text)."""
    blocks = []
    for sec in sections:
        lines = [f"[{sec.kind}]"] + [f"{k}={o.value}" for k, o in sec.options.items()]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"
