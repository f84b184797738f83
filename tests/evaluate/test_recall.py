"""`detector recall`: Darknet's line format and arithmetic, by hand and against a naive re-statement."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

import pydarknet
from conftest import ROOT
from pydarknet.cli.main import main
from pydarknet.data.synthetic import make_shapes_dataset
from pydarknet.detector import Detector
from pydarknet.evaluate.recall import RecallCounter

CFG, WEIGHTS = ROOT / "cfg" / "shapes.cfg", ROOT / "models" / "shapes.weights"
LINE = re.compile(r"^([ \d]{4}\d) ([ \d]{4}\d) ([ \d]{4}\d)"  # "%5d %5d %5d"
                  r"\tRPs/Img: (\d+\.\d\d)\tIOU: (\d+\.\d\d)%\tRecall:(\d+\.\d\d)%$")


def t(rows: list) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


def test_counter_hand_made():
    counter = RecallCounter()
    boxes = t([[.5, .5, .2, .2], [.2, .2, .1, .1], [.8, .8, .1, .1]])
    objectness = t([.9, .0005, .5])  # the second is no proposal (<= .001)
    truth = t([[.5, .5, .2, .2], [.8, .8, .2, .2]])  # best IoUs 1 and .25
    assert counter.add(boxes, objectness, truth) == "    0     1     2\tRPs/Img: 2.00\tIOU: 62.50%\tRecall:50.00%"
    # The truth overlaps only boxes that are no proposals now; the live one misses it (IoU 0).
    line = counter.add(boxes, t([0, 0, .5]), t([[.2, .2, .1, .1]]))
    assert line == "    1     1     3\tRPs/Img: 1.50\tIOU: 41.67%\tRecall:33.33%"
    assert RecallCounter().add(boxes, objectness, t([]).reshape(0, 4)).endswith("IOU: -nan%\tRecall:-nan%")


def naive_recall(images: list[str]) -> tuple[int, int, float]:
    """Darknet's loops, one truth and one box at a time, in float64."""
    net = pydarknet.load(CFG, WEIGHTS)
    correct = total = 0
    iou_sum = 0.0
    detector = Detector(net, thresh=.001, nms=.4, command="recall")  # plain resize, do_nms_obj
    for image, found in zip(images, detector.run(images)):
        c = found.candidates
        proposals = [b for b, o in zip(c.boxes.astype(np.float64).tolist(), c.objectness.tolist()) if o > .001]
        label = image.replace("images", "labels").replace(".jpg", ".txt")
        for row in np.loadtxt(label, ndmin=2):
            tx, ty, tw, th = row[1:]
            best = 0.0
            for x, y, bw, bh in proposals:
                iw = min(x + bw / 2, tx + tw / 2) - max(x - bw / 2, tx - tw / 2)
                ih = min(y + bh / 2, ty + th / 2) - max(y - bh / 2, ty - th / 2)
                inter = iw * ih if iw > 0 and ih > 0 else 0.0
                iou = inter / (bw * bh + tw * th - inter)
                if iou > best:
                    best = iou
            iou_sum += best
            correct += best > .5
            total += 1
    return correct, total, iou_sum


def test_cli_recall_lines(tmp_path, capsys):
    data = make_shapes_dataset(tmp_path / "shapes", n_train=0, n_valid=5, size=(160, 120), seed=4)
    assert main(["detector", "recall", str(data), str(CFG), str(WEIGHTS)]) == 0
    captured = capsys.readouterr()
    assert captured.out == ""  # Darknet prints these on stderr
    lines = captured.err.splitlines()
    matches = [LINE.match(line) for line in lines]
    assert len(lines) == 5 and all(matches), lines
    assert [int(m.group(1)) for m in matches] == list(range(5))
    images = (tmp_path / "shapes" / "valid.txt").read_text().split()
    correct, total, iou_sum = naive_recall(images)
    last = matches[-1]
    assert (int(last.group(2)), int(last.group(3))) == (correct, total)
    assert float(last.group(5)) == pytest.approx(100 * iou_sum / total, abs=.011)
    assert last.group(6) == f"{100 * correct / total:.2f}"

