"""`models`: the names `detect` and `load` take, with their cfg, weights size and whether they are on disk."""

from __future__ import annotations

import argparse

from pydarknet.memory import format_bytes
from pydarknet.zoo import MODELS, Model, is_cached, weights_dir, weights_file


def _state(model: Model) -> str:
    if model.bundled:
        return "bundled"
    if is_cached(model):
        return "cached"
    part = weights_file(model).with_name(model.file + ".part")
    return "partly fetched (resumes)" if part.is_file() else "fetched on first use"


def _size(model: Model) -> str:
    size = weights_file(model).stat().st_size if model.bundled else max(model.sizes, default=0)
    return format_bytes(size) if size else "?"


def models(args: argparse.Namespace) -> int:
    rows = [("name", "cfg", "weights", "size", "")]
    rows += [(name, f"cfg/{m.cfg}" if m.cfg else "(weights only)", m.file, _size(m), _state(m))
             for name, m in MODELS.items()]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        print(("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[4]).rstrip())
    print(f"\nweights are cached in {weights_dir()} (set PYDARKNET_HOME to move it)")
    return 0
