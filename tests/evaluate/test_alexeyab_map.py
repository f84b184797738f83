"""AlexeyAB's `detector map` report on hand-made detections whose AP is worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from pydarknet.boxes import box_iou_alexeyab
from pydarknet.errors import DarknetError
from pydarknet.evaluate.alexeyab_map import ImageResult, alexeyab_map

T1, T2, T3 = (0.3, 0.3, 0.2, 0.2), (0.7, 0.7, 0.2, 0.2), (0.5, 0.5, 0.4, 0.4)
FAR = (0.9, 0.1, 0.1, 0.1)


def image(dets: list[tuple[tuple, float, int]], truths: list[tuple[int, tuple]], classes: int = 2,
          difficult: list[tuple[int, tuple]] | None = None) -> ImageResult:
    probs = np.zeros((len(dets), classes), np.float32)
    for k, (_, p, c) in enumerate(dets):
        probs[k, c] = p
    rows = np.array([[c, *b] for c, b in truths], np.float32).reshape(-1, 5)
    hard = None if difficult is None else np.array([[c, *b] for c, b in difficult], np.float32).reshape(-1, 5)
    return ImageResult(np.array([b for b, _, _ in dets], np.float32).reshape(-1, 4), probs, rows, hard)


def example() -> list[ImageResult]:
    """Ranked by probability: .9 TP (T1), .8 FP (far), .7 TP (T3, IoU .75), .6 FP (T1 again), .1 TP (T2)."""
    a = image([(T1, 0.9, 0), (FAR, 0.8, 0), (T1, 0.6, 0), (T2, 0.1, 0)], [(0, T1), (0, T2)])
    b = image([((0.5, 0.5, 0.4, 0.3), 0.7, 0)], [(0, T3)])
    return [a, b]


@pytest.mark.parametrize(("points", "ap"), [
    # precision/recall after each rank: (1, 1/3) (.5, 1/3) (2/3, 2/3) (.5, 2/3) (.6, 1)
    (0, 1 / 3 * 1 + 1 / 3 * 2 / 3 + 1 / 3 * 0.6),
    (11, (4 * 1 + 3 * 2 / 3 + 4 * 0.6) / 11),  # recall >= 0 .. .3: 1; .4 .. .6: 2/3; .7 .. 1: .6
    (101, (34 * 1 + 33 * 2 / 3 + 34 * 0.6) / 101),
])
def test_ap_by_hand(points, ap):
    report = alexeyab_map(example(), classes=2, points=points)
    assert report.ap[0] == pytest.approx(ap, rel=1e-12) and report.ap[1] == 0
    assert report.mean_ap == pytest.approx(ap / 2, rel=1e-12)  # classes without boxes count, as in Darknet


def test_threshold_counts_and_the_printed_report():
    report = alexeyab_map(example(), classes=2, conf_thresh=0.25)
    # above .25: .9 TP, .8 FP, .6 FP (T1 already found in that image), .7 TP; .1 is under the threshold
    assert (report.tp, report.fp, report.truths, report.detections) == ([2, 0], [2, 0], [3, 0], 5)
    assert report.avg_iou == pytest.approx((1 + 0.75) / 4)  # divided by TP + FP, as Darknet does
    lines = report.lines(["cat", "dog"])
    ap = (1 / 3 + 2 / 9 + 0.2) * 100
    assert lines == [
        "",
        " detections_count = 5, unique_truth_count = 3  ",
        f"class_id = 0, name = cat, ap = {ap:.2f}%   \t (TP = 2, FP = 2) ",
        "class_id = 1, name = dog, ap = 0.00%   \t (TP = 0, FP = 0) ",
        "",
        " for conf_thresh = 0.25, precision = 0.50, recall = 0.67, F1-score = 0.57 ",
        " for conf_thresh = 0.25, TP = 2, FP = 2, FN = 1, average IoU = 43.75 % ",
        "",
        " IoU threshold = 50 %, used Area-Under-Curve for each unique Recall ",
        f" mean average precision (mAP@0.50) = {ap / 200:f}, or {ap / 2:.2f} % ",
    ]
    assert alexeyab_map(example(), 2, iou_thresh=0.8, points=101).lines(["a", "b"])[-2:] == [
        " IoU threshold = 80 %, used 101 Recall-points ",
        f" mean average precision (mAP@0.80) = {alexeyab_map(example(), 2, 0.8, points=101).mean_ap:f}, or "
        f"{alexeyab_map(example(), 2, 0.8, points=101).mean_ap * 100:.2f} % ",
    ]


def test_iou_thresh_is_strict_and_picks_the_best_box_of_the_class():
    # IoU .75 with T3 is not > .75
    report = alexeyab_map([image([((0.5, 0.5, 0.4, 0.3), 0.9, 0)], [(0, T3)], 1)], 1, iou_thresh=0.75)
    assert report.tp == [0] and report.ap == [0.0]
    # two boxes of the class overlap the detection; it matches the better one, leaving the other for later
    near = (0.52, 0.5, 0.4, 0.4)
    report = alexeyab_map([image([(T3, 0.9, 0), (near, 0.8, 0)], [(0, near), (0, T3)], 1)], 1)
    assert report.ap == [1.0] and report.tp == [2]
    # a box of another class does not match
    report = alexeyab_map([image([(T3, 0.9, 0)], [(1, T3)])], 2)
    assert report.ap == [0.0, 0.0] and report.fp == [1, 0]


def test_an_earlier_low_probability_detection_takes_the_box_at_the_threshold():
    # Darknet checks the detections before it in the image, whatever their probability: the .9 one is a false
    # positive at the threshold, yet the true positive of the ranked AP.
    report = alexeyab_map([image([(T1, 0.1, 0), (T1, 0.9, 0)], [(0, T1)], 1)], 1, conf_thresh=0.25)
    assert (report.tp, report.fp) == ([0], [1]) and report.ap == [1.0]
    assert report.lines(["x"])[4] == " for conf_thresh = 0.25, precision = 0.00, recall = 0.00, F1-score = -nan "


def test_difficult_boxes_drop_the_detection_but_count_it_at_the_threshold():
    img = image([(T1, 0.9, 0), (T2, 0.8, 0)], [(0, T1)], 1, difficult=[(0, T2)])
    report = alexeyab_map([img], 1)
    assert report.detections == 1 and report.ap == [1.0]  # the difficult match is not in the curve
    assert (report.tp, report.fp) == ([1], [1])


def test_empty_and_bad_inputs():
    report = alexeyab_map([image([], [(0, T1)], 1)], 1)
    assert report.ap == [0.0] and report.detections == 0
    assert report.lines(["a"])[4] == " for conf_thresh = 0.25, precision = -nan, recall = 0.00, F1-score = -nan "
    with pytest.raises(DarknetError, match="-points 1"):
        alexeyab_map([], 1, points=1)
    with pytest.raises(DarknetError, match="class outside"):
        alexeyab_map([image([], [(3, T1)])], 2)


def test_box_iou_matches_darknets_formula():
    boxes = np.array([T3, (0.5, 0.5, 0.4, 0.3), FAR], np.float32)
    iou = box_iou_alexeyab(boxes[:, None], np.array([T3], np.float32)[None])
    assert iou[:, 0].tolist() == pytest.approx([1.0, 0.75, 0.0])
    assert iou.dtype == np.float32
