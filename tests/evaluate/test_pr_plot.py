"""Precision-recall PNGs: the curve is where it should be, and `detector map --pr-dir` writes one per class."""

from __future__ import annotations

import cv2
import numpy as np

from conftest import ROOT
from pydarknet.cli.main import main
from pydarknet.data.synthetic import make_shapes_dataset
from pydarknet.evaluate.pr_plot import CURVE_BGR, ENVELOPE_BGR, SIZE, _to_pixels, pr_curve_image, safe_name


def near(img: np.ndarray, recall: float, precision: float, colour: tuple[int, int, int]) -> bool:
    (x, y), = _to_pixels(np.array([recall]), np.array([precision]))
    patch = img[y - 2:y + 3, x - 2:x + 3].reshape(-1, 3).astype(int)
    return bool((np.abs(patch - colour).sum(1) < 60).any())


def test_curve_and_envelope_pixels():
    recall, precision = np.array([.5, .5, 1.0]), np.array([1.0, .5, .6])
    img = pr_curve_image(recall, precision, "x")
    assert img.shape == (SIZE[1], SIZE[0], 3) and img.dtype == np.uint8
    assert near(img, .75, .55, CURVE_BGR)  # on the raw segment (.5, .5) -> (1, .6)
    assert near(img, .75, .6, ENVELOPE_BGR)  # the interpolated precision there is .6
    assert near(img, .25, 1.0, ENVELOPE_BGR)
    assert not near(img, .25, .25, CURVE_BGR) and not near(img, .25, .25, ENVELOPE_BGR)


def test_safe_name():
    assert safe_name("pole vault, sport/x") == "pole_vault_sport_x"
    assert safe_name("..") == "class"


def test_cli_writes_a_png_per_class(tmp_path, capsys):
    data = make_shapes_dataset(tmp_path / "shapes", n_train=0, n_valid=4, size=(128, 128), seed=2)
    out = tmp_path / "pr"
    args = ["detector", "map", str(data), str(ROOT / "cfg" / "shapes.cfg"), str(ROOT / "models" / "shapes.weights"),
            "--pr-dir", str(out)]
    assert main(args) == 0
    assert "5 PNGs" in capsys.readouterr().out
    pngs = sorted(out.glob("*.png"))
    assert [p.name for p in pngs] == ["pr_0_circle.png", "pr_1_square.png", "pr_2_triangle.png", "pr_3_star.png",
                                      "pr_4_cross.png"]
    for p in pngs:
        img = cv2.imread(str(p))
        assert img is not None and img.shape == (SIZE[1], SIZE[0], 3)
        assert (np.abs(img.astype(int) - CURVE_BGR).sum(2) < 60).any()  # a curve was drawn
