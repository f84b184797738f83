"""AlexeyAB's printed detections (draw_detections_v3, detection_to_json) on hand-made detections: the
orders, ties, thresholds, dont_show names and C's rounding that the fixtures do not all reach."""

from __future__ import annotations

import json

from pydarknet.alexeyab_text import detection_json, detection_json_file, draw_detections_v3_lines
from pydarknet.detection import Detection

NAMES = [f"c{i}" for i in range(8)]


def det(x: float, w: float, classes: dict[int, float], index: int = 0) -> Detection:
    return Detection((x, 0.5, w, 0.25), 0.9, sorted(classes), [classes[c] for c in sorted(classes)], index)


def test_sorted_by_left_edge_stable_best_class_first():
    dets = [det(0.5, 0.25, {3: 0.3, 7: 0.5}), det(0.25, 0.25, {1: 0.6}), det(0.4375, 0.125, {2: 0.4, 5: 0.4, 6: 0.3})]
    # Left edges: .375, .125, .375 (the first and third tie: array order kept, as glibc's merge sort does).
    assert draw_detections_v3_lines(dets, NAMES, 0.25) == [
        "c1: 60%", "c7: 50%", "c3: 30%", "c2: 40%", "c5: 40%", "c6: 30%"]


def test_threshold_and_dont_show():
    names = NAMES[:4] + ["dont_show_me", *NAMES[5:]]
    dets = [det(0.1, 0.1, {4: 0.9, 1: 0.3}), det(0.2, 0.1, {4: 0.9}), det(0.3, 0.1, {2: 0.25, 3: 0.26})]
    # A dont_show class is never the best one (only printed after another best class); probs must be > thresh.
    assert draw_detections_v3_lines(dets, names, 0.25) == ["c1: 30%", "dont_show_me: 90%", "c3: 26%"]


def test_ext_output_rounds_half_away_from_zero_and_does_not_clamp():
    # Left edge (0.125 - 0.25) * 4 = -0.5 -> -1 (C's round); top (0.5 - 0.125) * 2 = 0.75 -> 1.
    line, = draw_detections_v3_lines([det(0.125, 0.5, {0: 0.5})], NAMES, 0.25, (4, 2))
    assert line == "c0: 50%\t(left_x:   -1   top_y:    1   width:    2   height:    1)"
    line, = draw_detections_v3_lines([det(3.0, 2.0, {0: 0.5})], NAMES, 0.25, (1000, 10))
    assert line == "c0: 50%\t(left_x: 2000   top_y:    4   width: 2000   height:    3)"


def test_json_every_class_over_its_own_threshold():
    names = NAMES[:2] + ["dont_show"] + NAMES[3:]
    dets = [det(0.5, 0.2, {0: 0.004, 1: 0.75, 2: 0.9}), det(0.25, 0.5, {6: 0.5})]
    text = detection_json(dets, names, 3, "img.jpg")
    assert text.startswith('{\n "frame_id":3, \n "filename":"img.jpg", \n "objects": [ \n  {"class_id":1, "name":"c1", '
                           '"relative_coordinates":{"center_x":0.500000, "center_y":0.500000, "width":0.200000, '
                           '"height":0.250000}, "confidence":0.750000}, \n  {"class_id":6')
    parsed = json.loads(detection_json_file([text, detection_json([], names, 4, None)]))
    assert [o["class_id"] for o in parsed[0]["objects"]] == [1, 6]
    assert parsed[1] == {"frame_id": 4, "objects": []}
