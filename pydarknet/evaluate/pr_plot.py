"""Precision-recall curve of one class as a PNG, drawn with OpenCV (no plotting library needed)."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np

from pydarknet.image import save_image

SIZE = (480, 400)  # width, height in pixels
_MARGIN = (60, 20, 20, 50)  # left, right, top, bottom
CURVE_BGR = (200, 90, 0)  # raw precision at each detection
ENVELOPE_BGR = (0, 0, 220)  # interpolated precision, the curve VOC2010+ AP integrates
_GRID_BGR = (225, 225, 225)
_TEXT_BGR = (0, 0, 0)
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def _to_pixels(recall: np.ndarray, precision: np.ndarray) -> np.ndarray:
    left, right, top, bottom = _MARGIN
    w, h = SIZE[0] - left - right, SIZE[1] - top - bottom
    x = left + np.clip(recall, 0, 1) * w
    y = top + (1 - np.clip(precision, 0, 1)) * h
    return np.round(np.stack([x, y], 1)).astype(np.int32)


def pr_curve_image(recall: np.ndarray, precision: np.ndarray, title: str) -> np.ndarray:
    """uint8 HWC BGR: axes with a .1 grid, the raw PR curve and its monotone envelope, a title."""
    img = np.full((SIZE[1], SIZE[0], 3), 255, np.uint8)
    for t in np.linspace(0, 1, 11):
        (x0, y0), (x1, y1) = _to_pixels(np.array([t, t]), np.array([0.0, 1.0]))
        cv2.line(img, (int(x0), int(y0)), (int(x1), int(y1)), _GRID_BGR, 1)
        (x0, y0), (x1, y1) = _to_pixels(np.array([0.0, 1.0]), np.array([t, t]))
        cv2.line(img, (int(x0), int(y0)), (int(x1), int(y1)), _GRID_BGR, 1)
        (x, y), = _to_pixels(np.array([t]), np.array([0.0]))
        cv2.putText(img, f"{t:.1f}", (int(x) - 10, int(y) + 16), _FONT, 0.35, _TEXT_BGR, 1, cv2.LINE_AA)
        (x, y), = _to_pixels(np.array([0.0]), np.array([t]))
        cv2.putText(img, f"{t:.1f}", (int(x) - 28, int(y) + 4), _FONT, 0.35, _TEXT_BGR, 1, cv2.LINE_AA)
    corners = _to_pixels(np.array([0.0, 1.0]), np.array([0.0, 1.0]))
    cv2.rectangle(img, tuple(int(v) for v in corners[0]), tuple(int(v) for v in corners[1]), _TEXT_BGR, 1)
    cv2.putText(img, "recall", (SIZE[0] // 2 - 20, SIZE[1] - 12), _FONT, 0.45, _TEXT_BGR, 1, cv2.LINE_AA)
    cv2.putText(img, "precision", (4, _MARGIN[2] - 6), _FONT, 0.4, _TEXT_BGR, 1, cv2.LINE_AA)
    for k, (label, colour) in enumerate((("precision", CURVE_BGR), ("interpolated (AP)", ENVELOPE_BGR))):
        x, y = SIZE[0] - 150, SIZE[1] - 22 + 13 * k
        cv2.line(img, (x, y - 4), (x + 16, y - 4), colour, 2)
        cv2.putText(img, label, (x + 22, y), _FONT, 0.35, _TEXT_BGR, 1, cv2.LINE_AA)
    cv2.putText(img, title, (_MARGIN[0] + 60, _MARGIN[2] - 6), _FONT, 0.42, _TEXT_BGR, 1, cv2.LINE_AA)
    if len(recall):
        # The envelope as VOC2010+ AP sees it: precision made non-increasing, drawn as steps.
        envelope = np.maximum.accumulate(np.asarray(precision)[::-1])[::-1]
        r = np.repeat(np.concatenate([[0.0], recall]), 2)[1:-1]
        steps = _to_pixels(r, np.repeat(envelope, 2))
        cv2.polylines(img, [steps], False, ENVELOPE_BGR, 1, cv2.LINE_AA)
        cv2.polylines(img, [_to_pixels(np.asarray(recall), np.asarray(precision))], False, CURVE_BGR, 2,
                      cv2.LINE_AA)
    return img


def safe_name(name: str) -> str:
    """A class name as a file name (9k names hold blanks, commas, slashes)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "class"


def save_pr_curve(path: str | Path, recall: np.ndarray, precision: np.ndarray, title: str) -> None:
    save_image(Path(path), pr_curve_image(recall, precision, title))
