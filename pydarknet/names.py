"""Class names: files, and the default set for a class count (Darknet's `detect` hard-codes coco)."""

from __future__ import annotations

from pathlib import Path

from pydarknet.errors import DarknetError
from pydarknet.fileio import read_text
from pydarknet.paths import ASSETS, resolve_path

DEFAULT_NAMES = {20: "data/voc.names", 80: "data/coco.names", 9418: "data/9k.names",
                 1000: "data/imagenet.shortnames.list"}


def read_names(path: str | Path, classes: int | None = None, relative_to: str | Path | None = None) -> list[str]:
    """Lines of a names file; with `classes`, the file must have at least that many lines."""
    resolved = resolve_path(path, relative_to)
    names = read_text(resolved, "names file").splitlines()
    if classes is not None and len(names) < classes:
        raise DarknetError(f"has {len(names)} names but the model has {classes} classes", resolved,
                           len(names) + 1)
    return names


def default_names(classes: int) -> list[str]:
    """Names picked by class count (20 voc, 80 coco, 9418 9k, 1000 imagenet), else `class<i>`."""
    file = DEFAULT_NAMES.get(classes)
    if file is None:
        return [f"class{i}" for i in range(classes)]
    return read_names(ASSETS / file, classes)[:classes]
