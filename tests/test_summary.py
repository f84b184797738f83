"""`summary` reproduces the layer table and BFLOPs Darknet prints for every full-size cfg: pjreddie's for
the v2-era cfgs, AlexeyAB's for the [yolo] family (and for the yolo fixture mini nets)."""

from __future__ import annotations

import warnings

import pytest

from conftest import FIXTURES, ROOT, YOLO_FIXTURES
from pydarknet.network import build_network

SUMMARIES = sorted((FIXTURES / "summaries").glob("*.txt"))
MINI_SUMMARIES = sorted(YOLO_FIXTURES.glob("mini_*/darknet_summary.txt"))
# Lines Darknet prints while parsing that are not the table: pjreddie's [region] default notice, AlexeyAB's
# detector banner and its average output size.
NOT_TABLE = ("mask_scale: Using default", " OpenCV isn't used", "avg_outputs = ")


def table(ref) -> list[str]:  # noqa: ANN001
    return [line for line in ref.read_text().splitlines() if not line.startswith(NOT_TABLE)]


def quiet_build(cfg):  # noqa: ANN001, ANN201
    with warnings.catch_warnings():  # [net] options of the full-size cfgs pydarknet does not read yet
        warnings.simplefilter("ignore")
        return build_network(cfg)


@pytest.mark.parametrize("ref", SUMMARIES, ids=lambda p: p.stem)
def test_summary_equals_darknet(ref):
    net = quiet_build(ROOT / "cfg" / f"{ref.stem}.cfg")
    assert net.summary().splitlines() == table(ref)


@pytest.mark.parametrize("ref", MINI_SUMMARIES, ids=lambda p: p.parent.name)
def test_mini_yolo_summary_equals_darknet(ref):
    net = build_network(ref.parent / "net.cfg")
    assert net.dialect == "alexeyab"
    assert net.summary().splitlines() == table(ref)


def test_every_yolo_family_cfg_has_a_table():
    alexeyab = {p.stem for p in (ROOT / "cfg").glob("yolov[347]*.cfg")}
    assert len(alexeyab) == 11 and alexeyab <= {p.stem for p in SUMMARIES}


@pytest.mark.parametrize("old,new", [("yolo-voc", "yolov2-voc"), ("tiny-yolo-voc", "yolov2-tiny-voc")])
def test_old_names_build_the_same_network(old, new):
    assert build_network(ROOT / "cfg" / f"{old}.cfg").shapes == build_network(ROOT / "cfg" / f"{new}.cfg").shapes
