"""`detector map` for AlexeyAB-dialect networks prints validate_detector_map's report, through the Detector
pipeline: the trained shapes model, made an AlexeyAB cfg by a no-op `[route] groups=1` (its BatchNorm then
divides by sqrt(var + 1e-5): the detections barely move), scored on held-out images."""

from __future__ import annotations

import re

import pytest

from conftest import ROOT
from pydarknet.cli.main import main
from pydarknet.data.synthetic import make_shapes_dataset
from pydarknet.evaluate.alexeyab_detector_map import map_report
from pydarknet.network import build_network

WEIGHTS = ROOT / "models" / "shapes.weights"


@pytest.fixture()
def alexeyab_shapes(tmp_path):  # noqa: ANN001, ANN201
    text = (ROOT / "cfg" / "shapes.cfg").read_text()
    head = text.rindex("[convolutional]")
    cfg = tmp_path / "shapes-ab.cfg"
    cfg.write_text(text[:head] + "[route]\nlayers=-1\ngroups=1\ngroup_id=0\n\n" + text[head:])
    data = make_shapes_dataset(tmp_path / "shapes", n_train=0, n_valid=24, size=(128, 128), seed=5)
    return data, cfg


def _number(pattern: str, text: str) -> float:
    return float(re.search(pattern, text, re.M).group(1))


def test_detector_map_prints_alexeyabs_report(alexeyab_shapes, capsys):
    data, cfg = alexeyab_shapes
    assert build_network(cfg).dialect == "alexeyab"
    args = ["detector", "map", str(data), str(cfg), str(WEIGHTS)]
    assert main(args) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[1].startswith(" detections_count = ") and "unique_truth_count = " in lines[1]
    names = ["circle", "square", "triangle", "star", "cross"]
    for k, name in enumerate(names):
        assert re.search(rf"^class_id = {k}, name = {name}, ap = [\d.]+%   \t \(TP = \d+, FP = \d+\) $", out, re.M)
    assert re.search(r"^ for conf_thresh = 0\.25, precision = [\d.]+, recall = [\d.]+, F1-score = [\d.]+ $", out, re.M)
    assert " IoU threshold = 50 %, used Area-Under-Curve for each unique Recall " in lines
    loose = _number(r"^ mean average precision \(mAP@0\.50\) = ([\d.]+), or [\d.]+ % $", out)
    assert loose > 0.8  # the trained model (.997 on 300 images with pjreddie's BatchNorm)

    assert main(args + ["-iou_thresh", "0.9", "-points", "11", "-thresh", "0.5"]) == 0
    out = capsys.readouterr().out
    assert " IoU threshold = 90 %, used 11 Recall-points " in out.splitlines()
    assert re.search(r"^ for conf_thresh = 0\.50, ", out, re.M)
    strict = _number(r"^ mean average precision \(mAP@0\.90\) = ([\d.]+)", out)
    assert 0 <= strict < loose


def test_report_from_python_equals_the_cli(alexeyab_shapes, capsys):
    import pydarknet

    data, cfg = alexeyab_shapes
    report, names = map_report(pydarknet.load(cfg, WEIGHTS), data, points=101, progress=False)
    assert main(["detector", "map", str(data), str(cfg), str(WEIGHTS), "-points", "101"]) == 0
    assert capsys.readouterr().out.splitlines() == report.lines(names)


def test_names_must_match_the_classes(alexeyab_shapes, capsys):
    data, cfg = alexeyab_shapes
    names = data.parent / "shapes.names"
    names.write_text(names.read_text() + "extra\n")
    assert main(["detector", "map", str(data), str(cfg), str(WEIGHTS)]) == 2
    assert "names= has 6 names, the network's last detection layer has classes=5" in capsys.readouterr().err
