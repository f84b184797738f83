"""Paths in commands and inside cfg/.data files: the working directory first (Darknet), then the package's data."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import pydarknet
from conftest import ROOT
from pydarknet.cli.main import main
from pydarknet.data.datafile import read_data_file, read_data_names
from pydarknet.network import build_network
from pydarknet.paths import ASSETS, resolve_path


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_assets_hold_darknets_layout() -> None:
    for name in ("cfg/yolo9000.cfg", "cfg/voc.data", "data/9k.tree", "data/9k.names", "data/9k.labels",
                 "data/coco9k.map", "data/inet9k.map", "data/coco.names", "models/shapes.weights",
                 "data/shapes.jpg"):
        assert (ASSETS / name).is_file(), name


def test_the_readme_commands_run_from_another_directory(elsewhere: Path, capsys: pytest.CaptureFixture) -> None:
    code = main(["detect", "cfg/shapes.cfg", "models/shapes.weights", "data/shapes.jpg", "--names",
                 "data/shapes.names"])
    out = capsys.readouterr().out.splitlines()
    assert code == 0 and out[0].startswith("data/shapes.jpg: Predicted") and "star: 93%" in out
    assert (elsewhere / "predictions.jpg").is_file()
    assert main(["summary", "cfg/yolo9000.cfg"]) == 0  # names data/9k.tree
    assert "Floating Point Operations: 49.06 Bn" in capsys.readouterr().out
    assert main(["wordtree", "dog"]) == 0
    assert "n02084071" in capsys.readouterr().out


def test_a_users_cfg_finds_the_bundled_tree(elsewhere: Path) -> None:
    """A cfg outside the package naming `tree=data/9k.tree` (relative to the working directory, where it
    is not) gets the package's WordTree."""
    (elsewhere / "my.cfg").write_text((ROOT / "cfg" / "yolo9000.cfg").read_text())
    with torch.device("meta"):
        net = build_network("my.cfg")
    assert net.heads[-1][1].tree.n == 9418


def test_data_file_and_its_names_from_another_directory(elsewhere: Path) -> None:
    options = read_data_file("cfg/voc.data")
    assert options.path == ASSETS / "cfg" / "voc.data"
    assert read_data_names(options, 20)[:2] == ["aeroplane", "bicycle"]


def test_the_working_directory_wins(elsewhere: Path) -> None:
    (elsewhere / "data").mkdir()
    (elsewhere / "data" / "voc.names").write_text("".join(f"mine{i}\n" for i in range(20)))
    assert resolve_path("data/voc.names") == Path("data/voc.names")
    assert read_data_names(read_data_file("cfg/voc.data"), 20)[0] == "mine0"
    assert resolve_path("data/none.names") == Path("data/none.names")  # missing: the name as given


def test_a_missing_path_is_reported_as_given(elsewhere: Path) -> None:
    with pytest.raises(pydarknet.DarknetError, match=r"^cfg/nothing\.cfg: cannot read cfg"):
        pydarknet.load("cfg/nothing.cfg")
