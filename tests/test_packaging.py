"""What the wheel carries (pyproject's package-data against the data dirs), and the version in one place."""

from __future__ import annotations

import os
from fnmatch import fnmatch
from pathlib import Path

import pytest

import pydarknet
from conftest import ROOT
from pydarknet.cli.main import main
from pydarknet.paths import ASSETS

tomllib = pytest.importorskip("tomllib")  # Python 3.11+
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
IMAGES = {".jpg", ".jpeg", ".png"}


def _shipped(directory: str, file: str) -> bool:
    patterns = PYPROJECT["tool"]["setuptools"]["package-data"].get(f"pydarknet.assets.{directory}", [])
    return any(fnmatch(file, pattern) for pattern in patterns)


def test_assets_link_to_the_root_directories() -> None:
    for directory in ("cfg", "data", "models"):
        link = ASSETS / directory
        assert link.is_symlink() and os.readlink(link) == f"../../{directory}"
        assert link.resolve() == (ROOT / directory).resolve()


@pytest.mark.parametrize("directory", ["cfg", "data", "models"])
def test_package_data_takes_every_file_but_the_sample_images(directory: str) -> None:
    files = sorted(p.name for p in (ROOT / directory).iterdir() if p.is_file())
    assert files
    for file in files:
        wanted = Path(file).suffix not in IMAGES or (directory, file) == ("data", "shapes.jpg")
        assert _shipped(directory, file) == wanted, f"{directory}/{file}"


def test_version_in_one_place(capsys: pytest.CaptureFixture) -> None:
    assert "version" not in PYPROJECT["project"] and "version" in PYPROJECT["project"]["dynamic"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "pydarknet.__version__"}
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out == f"pydarknet {pydarknet.__version__}\n"
