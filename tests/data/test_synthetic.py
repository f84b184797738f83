"""The synthetic shapes data set: Darknet layout, sane labels, determinism."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pydarknet.data.datafile import read_data_file, read_list
from pydarknet.data.labels import label_path, read_labels
from pydarknet.data.synthetic import SHAPES, make_shapes_dataset, make_shapes_image
from pydarknet.errors import DarknetError
from pydarknet.image import load_image


def test_layout_is_darknet_readable(tmp_path: Path) -> None:
    data = make_shapes_dataset(tmp_path / "shapes", n_train=12, n_valid=4, size=(96, 80), seed=1)
    options = read_data_file(data)
    assert options["classes"] == "5"
    assert read_list(options["names"]) == list(SHAPES)
    assert Path(options["backup"]).is_dir()
    train, valid = read_list(options["train"]), read_list(options["valid"])
    assert len(train) == 12 and len(valid) == 4 and not set(train) & set(valid)
    for path in train + valid:
        assert load_image(path).shape == (3, 80, 96)
        boxes, problems = read_labels(label_path(path), "stop", classes=5)
        assert problems == [] and 1 <= len(boxes) <= 4


def test_boxes_are_tight_and_apart() -> None:
    rng = np.random.default_rng(0)
    classes = list(SHAPES)
    seen = set()
    for _ in range(40):
        img, rows = make_shapes_image(128, 96, classes, rng)
        assert img.shape == (96, 128, 3) and img.dtype == np.uint8
        boxes = []
        for cls, cx, cy, w, h in rows:
            seen.add(cls)
            x0, x1 = round((cx - w / 2) * 128), round((cx + w / 2) * 128)
            y0, y1 = round((cy - h / 2) * 96), round((cy + h / 2) * 96)
            assert 0 <= x0 < x1 <= 128 and 0 <= y0 < y1 <= 96
            assert 0.07 * 96 * 2 - 2 <= max(x1 - x0, y1 - y0) <= 0.2 * 96 * 2 + 2
            boxes.append((x0, y0, x1, y1))
        for i, a in enumerate(boxes):  # at most light overlap between any two shapes
            for b in boxes[i + 1:]:
                inter = max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))
                smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
                assert inter <= 0.1 * smaller + 2 * max(a[2] - a[0], a[3] - a[1])
    assert seen == set(range(5))


def test_shape_pixels_contrast_inside_each_box() -> None:
    rng = np.random.default_rng(2)
    for _ in range(20):
        img, rows = make_shapes_image(96, 96, ["circle", "square"], rng, max_shapes=1)
        (cls, cx, cy, w, h), = rows
        centre = img[round(cy * 96) - 1:round(cy * 96) + 2, round(cx * 96) - 1:round(cx * 96) + 2]
        x0, x1 = round((cx - w / 2) * 96), round((cx + w / 2) * 96)
        outside = np.concatenate([img[:, :max(x0 - 3, 1)].reshape(-1, 3), img[:, x1 + 3:].reshape(-1, 3)])
        # the shape's colour stands out from the background it was drawn on
        assert np.abs(centre.reshape(-1, 3).mean(0) - outside.mean(0)).sum() > 60


def test_seed_determines_the_data(tmp_path: Path) -> None:
    a = make_shapes_dataset(tmp_path / "a", 3, 1, seed=7)
    b = make_shapes_dataset(tmp_path / "b", 3, 1, seed=7)
    c = make_shapes_dataset(tmp_path / "c", 3, 1, seed=8)
    text = [(d.parent / "labels" / "train" / "000002.txt").read_text() for d in (a, b, c)]
    assert text[0] == text[1] != text[2]


@pytest.mark.parametrize("name", ["raw_data", "my images", "x.png"])
def test_directories_breaking_darknet_rules_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(DarknetError, match="label path rule"):
        make_shapes_dataset(tmp_path / name, 1, 1)


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(DarknetError, match="classes must be distinct"):
        make_shapes_dataset(tmp_path / "d", 1, 1, classes=("circle", "hexagon"))
    with pytest.raises(DarknetError, match="too small"):
        make_shapes_dataset(tmp_path / "d", 1, 1, size=(16, 16))
