"""Where files named in commands and inside cfg/.data files are looked for.

Darknet opens them relative to the working directory. pydarknet then tries the referring file's
directory and its parent, and last the package's own data (`ASSETS`: Darknet's `cfg/`, `data/` and
`models/` layout shipped inside the package), so `cfg/yolo9000.cfg` and the `data/9k.tree` it names
are found from any directory after a plain `pip install`.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

# pip installs packages unpacked, so this is a real directory (in a checkout: links to the root dirs).
ASSETS = Path(str(files("pydarknet") / "assets"))


def resolve_path(name: str | Path, relative_to: str | Path | None = None) -> Path:
    """The first existing candidate for `name`, else `name` itself (so errors show what was given)."""
    path = Path(name)
    if path.is_absolute() or path.exists():
        return path
    bases = []
    if relative_to is not None:
        ref = Path(relative_to).resolve()
        bases += [ref.parent, ref.parent.parent]
    bases.append(ASSETS)
    for base in bases:
        if (base / path).exists():
            return base / path
    return path
