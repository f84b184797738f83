"""A cfg that would need more memory than the machine has is refused in one line before any allocation."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

import pydarknet
from conftest import ROOT
from pydarknet import memory
from pydarknet.cli.main import main
from pydarknet.network import build_network

IMAGE = str(ROOT / "data" / "shapes.jpg")


def _edited(tmp_path: Path, cfg: str, **values: int) -> Path:
    """A copy of cfg/<cfg> with the first `key=` line of each key changed (the lines stay where they were)."""
    lines = (ROOT / "cfg" / cfg).read_text().splitlines()
    for key, value in values.items():
        index = next(i for i, line in enumerate(lines) if line.startswith(f"{key}="))
        lines[index] = f"{key}={value}"
    path = tmp_path / f"edited-{cfg}"
    path.write_text("\n".join(lines) + "\n")
    return path


def _refused(capsys: pytest.CaptureFixture, argv: list[str]) -> str:
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "Traceback" not in err
    return err


def test_huge_filters_refused_by_summary_detect_and_load(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    cfg = _edited(tmp_path, "shapes.cfg", filters=2000000000)  # the first conv: [convolutional] on line 26
    where = f"{cfg}:26: [convolutional] a 2000000000x3x3x3 parameter tensor"
    for argv in (["summary", str(cfg)], ["detect", str(cfg), str(ROOT / "models" / "shapes.weights"), IMAGE]):
        err = _refused(capsys, argv)
        assert err.startswith(f"pydarknet: {where} would take 216.0 GB, more than the ")
        assert re.search(r"the [\d.]+ [MGT]B of memory available\n$", err)
    with pytest.raises(pydarknet.DarknetError, match=re.escape(where)):
        pydarknet.load(cfg)


def test_huge_input_refused_by_summary_detect_and_load(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    cfg = _edited(tmp_path, "shapes.cfg", width=200000, height=200000)
    for argv in (["summary", str(cfg)], ["detect", str(cfg), str(ROOT / "models" / "shapes.weights"), IMAGE]):
        err = _refused(capsys, argv)
        assert f"{cfg}:26: [convolutional] the outputs of the layers up to this one " in err
        assert "(16x200000x200000 here, batch 1) would take 2.6 TB" in err
    with pytest.raises(pydarknet.DarknetError, match="would take 2.6 TB"):
        pydarknet.load(cfg)


def test_width_alone_counts_every_layers_output(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """yolov2 at width=200000: each output fits, all of them (as Darknet allocates them) do not."""
    monkeypatch.setattr(memory, "available_bytes", lambda: 16 * 10**9)
    cfg = _edited(tmp_path, "yolov2.cfg", width=200000)
    err = _refused(capsys, ["summary", str(cfg)])
    # conv 0 (32x608x200000, 15.6 GB) fits; with max 1's output (3.9 GB) the sum does not
    assert err == (f"pydarknet: {cfg}:33: [maxpool] the outputs of the layers up to this one "
                   "(32x304x100000 here, batch 1) would take 19.5 GB, more than the 16.0 GB of memory available\n")


def test_meta_builds_and_normal_cfgs_are_not_refused(tmp_path: Path) -> None:
    cfg = _edited(tmp_path, "shapes.cfg", filters=2000000000)
    with torch.device("meta"):  # shapes only: nothing is allocated
        assert build_network(cfg).layers[0].conv.weight.shape == (2000000000, 3, 3, 3)
    assert build_network(ROOT / "cfg" / "yolo9000.cfg").heads[-1][1].classes == 9418


def test_available_bytes_is_positive() -> None:
    available = memory.available_bytes()
    assert available is None or available > 0
    assert memory.format_bytes(216e9) == "216.0 GB" and memory.format_bytes(999) == "999 bytes"
