"""VOC2010+ area AP vs VOC2007 11-point AP on a hand-made case with a known answer; `detector map` output."""

from __future__ import annotations

import re

import numpy as np
import pytest

from conftest import ROOT
from pydarknet.cli.main import main
from pydarknet.data.synthetic import make_shapes_dataset
from pydarknet.evaluate.detector_map import MapResult
from pydarknet.evaluate.voc_map import average_precision, evaluate_class


def hand_made() -> tuple[list, dict]:
    """Two truths (one per image); detections by score: hit, miss, hit.
    precision [1, 1/2, 2/3], recall [1/2, 1/2, 1]."""
    box = np.array([10.0, 10.0, 50.0, 50.0])
    truths = {0: box[None], 1: box[None]}
    dets = [(0, .9, box), (1, .8, box + 100), (1, .7, box + 1)]
    return dets, truths


def test_area_and_eleven_point_ap_known_answer():
    dets, truths = hand_made()
    c = evaluate_class(dets, truths, 0.5)
    assert np.allclose(c.precision, [1, 1 / 2, 2 / 3]) and np.allclose(c.recall, [.5, .5, 1])
    # Area: recall 0->.5 at interpolated precision 1, .5->1 at 2/3.
    assert c.ap == pytest.approx(.5 * 1 + .5 * 2 / 3)
    # 11-point: recall thresholds 0, .1, ..., .5 see precision 1; .6, ..., 1 see 2/3.
    assert average_precision(c.recall, c.precision, eleven_point=True) == pytest.approx((6 + 5 * 2 / 3) / 11)
    # A stricter IoU turns the second hit (IoU 0.92) into a miss.
    assert evaluate_class(dets, truths, 0.95).ap == pytest.approx(.5)


def test_table_reports_both():
    dets, truths = hand_made()
    result = MapResult([evaluate_class(dets, truths, .5), evaluate_class([], {0: np.zeros((0, 4))}, .5)],
                       ["a", "b"], .5)
    table = result.table()
    assert "mean average precision (mAP@.5) = 0.833333, or 83.33 %" in table  # class b has no truths
    assert "VOC2007 11-point mAP@.5 = 0.848485, or 84.85 %" in table
    assert re.search(r"^ +a +83\.33% +84\.85% +2 +3$", table, re.M)


def test_cli_map(tmp_path, capsys):
    data = make_shapes_dataset(tmp_path / "shapes", n_train=0, n_valid=6, size=(128, 128), seed=5)
    args = ["detector", "map", str(data), str(ROOT / "cfg" / "shapes.cfg"), str(ROOT / "models" / "shapes.weights")]
    assert main(args + ["-iou", ".9"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["class", "AP", "AP07", "truths", "dets"]
    strict = float(re.search(r"mAP@\.9\) = ([\d.]+)", out).group(1))
    assert re.search(r"VOC2007 11-point mAP@\.9 = [\d.]+", out)
    assert main(args) == 0
    loose = float(re.search(r"mAP@\.5\) = ([\d.]+)", capsys.readouterr().out).group(1))
    assert 0 <= strict < loose <= 1
