"""COCO mAP@[.5:.95] through pycocotools, and the one-line message when pycocotools is missing."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest

import pydarknet
from conftest import ROOT
from pydarknet.cli.main import main
from pydarknet.data.synthetic import make_shapes_dataset
from pydarknet.errors import DarknetError
from pydarknet.evaluate.coco_eval import MISSING, coco_map, require_pycocotools
from pydarknet.evaluate.detector_map import evaluate_map

CFG, WEIGHTS = ROOT / "cfg" / "shapes.cfg", ROOT / "models" / "shapes.weights"


def test_coco_map_known_answers():
    pytest.importorskip("pycocotools")
    box = np.array([0.0, 0.0, 100.0, 100.0])
    shifted = box + [16, 0, 16, 0]  # IoU 84/116 = 0.724: a hit at IoU .5 ... .7, a miss at .75 ... .95
    truths = [{0: box[None], 1: box[None]}, {0: np.zeros((0, 4)), 1: np.zeros((0, 4))}]
    perfect = coco_map([[(0, .9, box), (1, .8, box)], []], truths, 2)
    assert perfect.map == pytest.approx(1) and perfect.per_class[0] == pytest.approx(1)
    assert math.isnan(perfect.per_class[1])  # no ground truth for class 1
    half = coco_map([[(0, .9, shifted), (1, .8, shifted)], []], truths, 2)
    assert half.map == pytest.approx(.5) and half.map50 == pytest.approx(1) and half.map75 == pytest.approx(0)
    none = coco_map([[], []], truths, 2)
    assert none.map == 0 and none.per_class[0] == 0 and math.isnan(none.per_class[1])


def test_coco_on_shapes_agrees_with_voc(tmp_path):
    pytest.importorskip("pycocotools")
    data = make_shapes_dataset(tmp_path / "shapes", n_train=0, n_valid=8, size=(128, 128), seed=11)
    net = pydarknet.load(CFG, WEIGHTS)
    valid = (tmp_path / "shapes" / "valid.txt").read_text().split()
    result = evaluate_map(net, valid, ["circle", "square", "triangle", "star", "cross"], relative_to=data,
                          progress=False, coco=True)
    # COCO's AP@.5 (101-point) and VOC's area AP@.5 differ only by interpolation.
    assert result.coco.map50 == pytest.approx(result.mean_ap, abs=.03)
    assert 0 < result.coco.map < result.coco.map50
    assert "COCO mAP@[.5:.95] = " in result.table() and "AP.5:.95" in result.table().splitlines()[0]


def test_missing_pycocotools_is_one_clear_line(monkeypatch, capsys):
    for name in ("pycocotools", "pycocotools.coco", "pycocotools.cocoeval"):
        monkeypatch.setitem(sys.modules, name, None)  # import now raises ImportError
    with pytest.raises(DarknetError, match="pip install 'pydarknet\\[coco\\]'"):
        require_pycocotools()
    assert main(["detector", "map", "any.data", str(CFG), str(WEIGHTS), "--coco"]) == 2
    err = capsys.readouterr().err
    assert err == f"pydarknet: {MISSING}\n"
