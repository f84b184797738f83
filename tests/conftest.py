"""Shared test helpers: where the fixtures live and how to iterate over them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import pydarknet

FIXTURES = Path(__file__).parent / "fixtures"
ROOT = Path(__file__).parent.parent
NETS = ["mini_voc", "mini_tiny", "mini_9k", "mini_cls"]


def infer_dirs(nets: list[str] = NETS) -> list[Path]:
    return sorted(d for net in nets for d in (FIXTURES / net).glob("infer_*"))


def cfg_for(infer_dir: Path) -> Path:
    """The fixture cfg whose input size matches this infer dir."""
    meta = json.loads((infer_dir / "layers.json").read_text())
    for cfg in sorted(infer_dir.parent.glob("net*.cfg")):
        text = cfg.read_text()
        if f"width={meta['net_w']}\n" in text and f"height={meta['net_h']}\n" in text:
            return cfg
    raise AssertionError(f"no cfg for {infer_dir}")


@pytest.fixture(autouse=True)
def _run_from_darknet_layout(monkeypatch: pytest.MonkeyPatch) -> None:
    # Fixture cfgs name data/9k.tree etc. relative to the working directory, as Darknet does.
    monkeypatch.chdir(ROOT)


def fixture_net(name: str) -> pydarknet.Darknet:
    return pydarknet.load(FIXTURES / name / "net.cfg", FIXTURES / name / "net.weights", exact=True)


def fixture_batch(net: pydarknet.Darknet, name: str, size: int) -> torch.Tensor:
    """`size` fixture inputs of the net's input size; mirrored copies where the fixture has fewer."""
    s = net.input_shape
    images = [a for a in (np.load(p) for p in sorted((FIXTURES / name).glob("infer_*/input.npy")))
              if a.shape == (s.c, s.h, s.w)]
    flips = [(), (2,), (1,), (1, 2)]
    picked = [np.flip(images[i % len(images)], flips[i // len(images)]) for i in range(size)]
    return torch.from_numpy(np.ascontiguousarray(np.stack(picked)))
