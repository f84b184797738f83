"""`summary` reproduces the layer table and BFLOPs Darknet prints for every full-size cfg."""

from __future__ import annotations

import pytest

from conftest import FIXTURES, ROOT
from pydarknet.network import build_network

SUMMARIES = sorted((FIXTURES / "summaries").glob("*.txt"))


@pytest.mark.parametrize("ref", SUMMARIES, ids=lambda p: p.stem)
def test_summary_equals_darknet(ref):
    net = build_network(ROOT / "cfg" / f"{ref.stem}.cfg")
    # Darknet also prints "mask_scale: Using default" while parsing [region]; not part of the table.
    expected = [line for line in ref.read_text().splitlines() if "Using default" not in line]
    assert net.summary().splitlines() == expected


@pytest.mark.parametrize("old,new", [("yolo-voc", "yolov2-voc"), ("tiny-yolo-voc", "yolov2-tiny-voc")])
def test_old_names_build_the_same_network(old, new):
    assert build_network(ROOT / "cfg" / f"{old}.cfg").shapes == build_network(ROOT / "cfg" / f"{new}.cfg").shapes
