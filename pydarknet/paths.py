"""Where files named inside cfg/.data files are looked for.

Darknet opens them relative to the working directory; pydarknet also tries the referring file's
directory, its parent and the repository root, so the bundled cfgs work from any directory.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def resolve_path(name: str | Path, relative_to: str | Path | None = None) -> Path:
    """The first existing candidate for `name`, else `name` itself (so errors show what was given)."""
    path = Path(name)
    if path.is_absolute() or path.exists():
        return path
    bases = []
    if relative_to is not None:
        ref = Path(relative_to).resolve()
        bases += [ref.parent, ref.parent.parent]
    bases.append(ROOT)
    for base in bases:
        if (base / path).exists():
            return base / path
    return path
