"""What AlexeyAB's `detector test` writes about its detections: draw_detections_v3's lines (with
`-ext_output` boxes) and detection_to_json's objects (`-out result.json`). pjreddie's lines are
`Detection.lines` (detection.py).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from pydarknet.detection import Detection, class_line

_F32 = np.float32
JSON_THRESH = _F32(0.005)  # detection_to_json's own threshold (get_network_boxes already applied -thresh)


def _shown(name: str) -> bool:
    """AlexeyAB hides classes whose name starts with dont_show from the printed text and the JSON."""
    return not name.startswith("dont_show")


def _best_class(det: Detection, names: Sequence[str], thresh: np.float32) -> int:
    """get_actual_detections: the first class with the highest prob > thresh (a dont_show class cannot be
    it), or -1."""
    best, best_prob = -1, thresh
    for cls, prob in zip(det.classes, det.probs):
        if _F32(prob) > best_prob and _shown(names[cls]):
            best, best_prob = cls, _F32(prob)
    return best


def _c_round(value: np.float32) -> float:
    """C's round(): halves away from zero."""
    return math.copysign(math.floor(abs(float(value)) + 0.5), float(value))


def _box_text(det: Detection, image_w: int, image_h: int) -> str:
    """`-ext_output`'s box in pixels of the image, rounded, not clamped."""
    x, y, w, h = (_F32(v) for v in det.bbox)
    two = _F32(2)
    left, top = _c_round((x - w / two) * _F32(image_w)), _c_round((y - h / two) * _F32(image_h))
    width, height = _c_round(w * _F32(image_w)), _c_round(h * _F32(image_h))
    return f"\t(left_x: {left:4.0f}   top_y: {top:4.0f}   width: {width:4.0f}   height: {height:4.0f})"


def draw_detections_v3_lines(dets: Sequence[Detection], names: Sequence[str], thresh: float,
                             image_size: tuple[int, int] | None = None) -> list[str]:
    """AlexeyAB's `draw_detections_v3` print for detections in array order (after NMS): the detections
    with a class over thresh, sorted by the left edge of their box (glibc's stable qsort), each as its best
    class's line, then a line for every other class over thresh in class order; `name: NN%`, and with
    `image_size` (width, height: `-ext_output`) the box in pixels."""
    f_thresh = _F32(thresh)
    selected = [(d, best) for d in dets if (best := _best_class(d, names, f_thresh)) >= 0]
    selected.sort(key=lambda s: _F32(s[0].bbox[0]) - _F32(s[0].bbox[2]) / _F32(2))
    lines = []
    for det, best in selected:
        box = _box_text(det, *image_size) if image_size is not None else ""
        probs = dict(zip(det.classes, det.probs))
        lines.append(class_line(names[best], probs[best]) + box)
        lines += [class_line(names[c], p) + box for c, p in probs.items() if _F32(p) > f_thresh and c != best]
    return lines


def detection_json(dets: Sequence[Detection], names: Sequence[str], frame_id: int, filename: str | None) -> str:
    """`detection_to_json`'s object for one image (detections in array order after NMS), byte for byte:
    every class prob over .005 of every detection, as relative center/size and confidence."""
    head = f'"filename":"{filename}", \n ' if filename is not None else ""
    objects = [f'  {{"class_id":{c}, "name":"{names[c]}", "relative_coordinates":{{"center_x":{d.bbox[0]:f}, '
               f'"center_y":{d.bbox[1]:f}, "width":{d.bbox[2]:f}, "height":{d.bbox[3]:f}}}, "confidence":{p:f}}}'
               for d in dets for c, p in zip(d.classes, d.probs) if _F32(p) > JSON_THRESH and _shown(names[c])]
    return f'{{\n "frame_id":{frame_id}, \n {head}"objects": [ \n' + ", \n".join(objects) + "\n ] \n}"


def detection_json_file(images: Sequence[str]) -> str:
    """The `-out` file of `detector test` around its images' objects: `[`, the objects joined by `, `, `]`."""
    return "[\n" + ", \n".join(images) + "\n]"
