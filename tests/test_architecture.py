"""The house rules that keep the package in shape: dependencies point one way, and no function asks its
callers for more than eight positional parameters."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from conftest import ROOT

PACKAGE = ROOT / "pydarknet"
# package part -> the parts it must not import (not even for type hints)
FORBIDDEN = {
    "layers": {"train", "export", "cli", "evaluate", "data", "detector", "demo"},
    "heads": {"train", "export", "cli", "evaluate", "data", "detector", "demo"},
    "network": {"train", "export", "cli", "evaluate", "data"},
    "weights": {"train", "export", "cli", "evaluate", "data"},
    "boxes": {"train", "export", "cli", "evaluate", "data", "heads", "detector"},
    "detection": {"train", "export", "cli", "evaluate", "data", "heads", "detector"},
    "train": {"export", "cli"},
    "data": {"train", "export", "cli", "evaluate"},
    "evaluate": {"train", "export", "cli"},
}


def modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "assets" not in p.parts)


def part(path: Path) -> str:
    rel = path.relative_to(PACKAGE).parts
    return rel[0] if len(rel) > 1 else path.stem


def imported_parts(path: Path) -> set[tuple[str, int]]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        for name in names:
            if name.startswith("pydarknet."):
                found.add((name.split(".")[1], node.lineno))
    return found


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_dependencies_point_one_way(path: Path) -> None:
    forbidden = FORBIDDEN.get(part(path), set())
    wrong = sorted((name, line) for name, line in imported_parts(path) if name in forbidden)
    assert not wrong, f"{path.relative_to(ROOT)} imports {wrong}"


def test_the_rule_sees_an_import() -> None:
    assert ("train", 1) not in imported_parts(PACKAGE / "layers" / "conv.py")
    assert any(name == "layers" for name, _ in imported_parts(PACKAGE / "network.py"))


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_at_most_eight_positional_parameters(path: Path) -> None:
    long = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            positional = [a.arg for a in node.args.posonlyargs + node.args.args if a.arg not in ("self", "cls")]
            if len(positional) > 8:
                long.append(f"{node.name} ({len(positional)})")
    assert not long, f"{path.relative_to(ROOT)}: {long}"
