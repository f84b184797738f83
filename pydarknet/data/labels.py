"""Detection label files: where Darknet looks for them and what a valid line is.

A label line is `class cx cy w h`, all but the class relative to the image size. Darknet reads them
with `fscanf("%d %f %f %f %f")`, which silently desynchronises on a bad token; here each line is
checked and a bad one either stops (`policy="stop"`) or is dropped and reported (`"skip"`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np

from pydarknet.errors import DarknetError
from pydarknet.fileio import read_text

LabelPolicy = Literal["skip", "stop"]

# fill_truth_detection's find_replace calls, in order; each replaces only the FIRST occurrence.
_LABEL_REPLACEMENTS = (
    ("images", "labels"),
    ("JPEGImages", "labels"),
    ("raw", "labels"),
    (".jpg", ".txt"),
    (".png", ".txt"),
    (".JPG", ".txt"),
    (".JPEG", ".txt"),
)


class Labels(NamedTuple):
    boxes: np.ndarray  # (K, 5) float32 rows [class, cx, cy, w, h]
    problems: list[str]  # "file:line: message" for every dropped line or missing file


def label_path(image_path: str | Path) -> str:
    """Darknet's label file for an image path: pure string substitution, first occurrence only, so
    `a/images/b/images/x.jpg` -> `a/labels/b/images/x.txt`, and `.jpeg`/`.bmp` are not mapped."""
    path = str(image_path)
    for find, replace in _LABEL_REPLACEMENTS:
        path = path.replace(find, replace, 1)
    if not path.endswith(".txt"):
        raise DarknetError("no label path: Darknet maps only images/JPEGImages/raw dirs and "
                           ".jpg .png .JPG .JPEG extensions to labels/*.txt", image_path)
    return path


def _parse_line(fields: list[str], classes: int | None, class_only_classes: int | None = None) -> list[float]:
    if len(fields) != 5:
        raise ValueError(f"expected 5 fields 'class cx cy w h', got {len(fields)}")
    try:
        cls = int(fields[0])
    except ValueError:
        raise ValueError(f"class {fields[0]!r} is not an integer") from None
    values = []
    for name, text in zip(("cx", "cy", "w", "h"), fields[1:], strict=True):
        try:
            v = float(text)
        except ValueError:
            raise ValueError(f"{name} {text!r} is not a number") from None
        if not (math.isfinite(v) and 0.0 <= v <= 1.0):
            raise ValueError(f"{name}={text} is outside [0, 1] (coordinates are relative to the image)")
        values.append(v)
    # correct_boxes turns a box centred exactly at (0, 0) into a 999999 sentinel: with a WordTree region
    # that is combine9k's classification-only label; any other region would index out of bounds with it.
    only = values[0] == 0.0 and values[1] == 0.0
    if only and class_only_classes is None:
        raise ValueError("box centred at 0 0: Darknet treats it as invalid")
    bound = class_only_classes if only else classes
    if cls < 0 or (bound is not None and cls >= bound):
        raise ValueError(f"class {cls} must be{f' in [0, {bound})' if bound is not None else ' >= 0'}")
    return [float(cls), *values]


def read_labels(path: str | Path, policy: LabelPolicy = "skip", classes: int | None = None,
                class_only_classes: int | None = None) -> Labels:
    """Boxes of a label file. A missing file means no boxes plus a problem (pjreddie's read_boxes
    exits, later forks print "Can't open label file." and go on); a bad line raises a DarknetError
    naming file:line under "stop" and is dropped and reported under "skip". With `class_only_classes`,
    a line `class 0 0 w h` is a classification-only label (combine9k) with class below that bound."""
    if policy not in ("skip", "stop"):
        raise ValueError(f"label policy must be 'skip' or 'stop', not {policy!r}")
    path = Path(path)
    if not path.exists():
        return Labels(np.zeros((0, 5), np.float32), [f"{path}: no label file, image has no boxes"])
    text = read_text(path, "label file")
    rows: list[list[float]] = []
    problems: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        try:
            rows.append(_parse_line(fields, classes, class_only_classes))
        except ValueError as err:
            error = DarknetError(str(err), path, number)
            if policy == "stop":
                raise error from None
            problems.append(str(error))
    return Labels(np.array(rows, np.float32).reshape(-1, 5), problems)
