"""AlexeyAB's detection data pipeline: boxes follow the pixels (coloured rectangles on generated images,
augmented, the pixels under each output box checked), and the geometry worked out by hand."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from pydarknet.cfg import parse_cfg_text
from pydarknet.data.alexeyab_augment import (
    Crop,
    Distortion,
    box_transform,
    draw_crop,
    fill_truth_detection,
    image_data_augmentation,
)
from pydarknet.data.alexeyab_dataset import AlexeyABDetectionDataset, head_train_options
from pydarknet.data.mosaic import Shifts, blend_truth, blend_truth_mosaic, mosaic_cut, paste_quadrant
from pydarknet.errors import DarknetError
from pydarknet.netconfig import CUTMIX, MIXUP, MOSAIC

# One colour per class (RGB), far from each other and from the backgrounds.
COLOURS = np.array([[230, 20, 20], [20, 230, 20], [20, 20, 230], [230, 230, 20], [230, 20, 230], [20, 230, 230],
                    [250, 140, 0], [140, 0, 250]], np.uint8)
BACKGROUND = (90, 90, 90)


def write_image(folder: Path, name: str, size: tuple[int, int], rects: list[tuple[int, int, int, int, int]]) -> str:
    """An image of `size` (w, h) with filled rectangles (class, x0, y0, x1, y1) and its Darknet label file."""
    w, h = size
    img = np.empty((h, w, 3), np.uint8)
    img[:] = BACKGROUND
    lines = []
    for cls, x0, y0, x1, y1 in rects:
        img[y0:y1, x0:x1] = COLOURS[cls]
        lines.append(f"{cls} {(x0 + x1) / 2 / w} {(y0 + y1) / 2 / h} {(x1 - x0) / w} {(y1 - y0) / h}")
    (folder / "images").mkdir(exist_ok=True)
    (folder / "labels").mkdir(exist_ok=True)
    path = folder / "images" / f"{name}.png"
    cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    (folder / "labels" / f"{name}.txt").write_text("\n".join(lines) + "\n")
    return str(path)


@pytest.fixture()
def images(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Four images, two classes each, different sizes and aspect ratios (in a folder whose path has no
    `images` before the last one: Darknet's label path replaces the first)."""
    tmp_path = tmp_path_factory.mktemp("set")
    return [
        write_image(tmp_path, "a", (200, 150), [(0, 20, 20, 90, 80), (1, 120, 60, 180, 140)]),
        write_image(tmp_path, "b", (120, 180), [(2, 10, 10, 60, 70), (3, 40, 100, 110, 170)]),
        write_image(tmp_path, "c", (160, 160), [(4, 30, 30, 130, 70), (5, 60, 90, 100, 150)]),
        write_image(tmp_path, "d", (240, 120), [(6, 10, 20, 100, 100), (7, 150, 10, 230, 60)]),
    ]


def boxes_px(truth: np.ndarray, w: int, h: int) -> list[tuple[int, float, float, float, float]]:
    rows = truth[truth[:, 2] > 0]
    return [(int(c), (x - bw / 2) * w, (y - bh / 2) * h, (x + bw / 2) * w, (y + bh / 2) * h)
            for x, y, bw, bh, c in rows]


def assert_boxes_follow_pixels(image: np.ndarray, truth: np.ndarray, margin: float = 2.0,
                               check_tight: bool = True) -> int:
    """Inside each box (less `margin` px) the pixels have the class's colour; just outside (where tight)
    they do not. Returns the boxes checked."""
    _, h, w = image.shape
    rgb = np.rint(image.transpose(1, 2, 0) * 255)
    checked = 0
    for cls, x0, y0, x1, y1 in boxes_px(truth, w, h):
        colour = COLOURS[cls].astype(np.float64)
        ix0, iy0, ix1, iy1 = int(np.ceil(x0 + margin)), int(np.ceil(y0 + margin)), int(x1 - margin), int(y1 - margin)
        if ix1 <= ix0 or iy1 <= iy0:
            continue
        inside = rgb[iy0:iy1, ix0:ix1].reshape(-1, 3)
        assert np.abs(inside - colour).max(1).mean() < 8, f"class {cls} box {x0:.1f},{y0:.1f},{x1:.1f},{y1:.1f}"
        if check_tight:
            # a line of pixels 3 px outside each side that lies in the image: not the box's colour there
            for side in (int(x0 - 3), int(np.ceil(x1 + 3))):
                if 0 <= side < w:
                    column = rgb[iy0:iy1, side]
                    assert np.abs(column - colour).max(1).min() > 40, f"class {cls}: box narrower than the pixels"
            for side in (int(y0 - 3), int(np.ceil(y1 + 3))):
                if 0 <= side < h:
                    row = rgb[side, ix0:ix1]
                    assert np.abs(row - colour).max(1).min() > 40, f"class {cls}: box shorter than the pixels"
        checked += 1
    return checked


def dataset(paths: list[str], size: tuple[int, int] = (96, 64), **kw) -> AlexeyABDetectionDataset:
    return AlexeyABDetectionDataset(paths, *size, classes=8, max_boxes=20, seed=3, **kw)


@pytest.mark.parametrize("options", [
    {"jitter": 0.0},
    {"jitter": 0.3},
    {"jitter": 0.3, "flip": False},
    {"jitter": 0.2, "resize": 1.5},
    {"jitter": 0.1, "resize": 0.6},
    {"jitter": 0.3, "letter_box": True},
])
def test_boxes_follow_the_pixels_of_single_images(images, options):
    data = dataset(images, **options)
    checked = 0
    for k in range(24):
        image, truth = data[k % len(images)]
        checked += assert_boxes_follow_pixels(image.numpy(), truth.numpy())
    assert checked > 24  # most boxes survive the crops


def test_boxes_follow_the_pixels_of_mosaics(images):
    data = dataset(images, (128, 96), jitter=0.3, mixup=MOSAIC, mosaic_bound=True)
    mosaics = 0
    for k in range(24):
        image, truth = data[k % len(images)]
        # a mosaic shows classes of several images; a single image at most two
        mosaics += len({int(c) // 2 for c in truth[truth[:, 2] > 0, 4]}) > 1
        assert_boxes_follow_pixels(image.numpy(), truth.numpy(), check_tight=False)
    assert 4 < mosaics < 24  # mosaic for about half of the samples


def test_mixup_blends_two_images_and_keeps_both_box_lists(images):
    data = dataset(images, mixup=MIXUP, jitter=0.0)
    blended = 0
    for k in range(16):
        image, truth = data[k % len(images)]
        rgb = image.numpy().transpose(1, 2, 0) * 255
        boxes = boxes_px(truth.numpy(), 96, 64)
        blended += len({cls // 2 for cls, *_ in boxes}) > 1
        for cls, x0, y0, x1, y1 in boxes:
            inside = rgb[int(y0) + 2:int(y1) - 2, int(x0) + 2:int(x1) - 2].reshape(-1, 3)
            if len(inside):
                # half the class colour plus half of whatever the other image shows there (0..255)
                other = 2 * inside - COLOURS[cls]
                assert ((other > -8) & (other < 263)).all(1).mean() > 0.9
    assert blended > 2


def test_resize_and_flip_geometry_by_hand():
    # 100x50 image, crop 10 px off the left (pleft) and add 30 px padding on the right (pright = -30):
    # swidth = 100 - 10 + 30 = 120; a box [20, 60] x [10, 30] lands at (20-10)/120 .. (60-10)/120 of the width.
    crop = Crop(pleft=10, ptop=0, pright=-30, pbot=0, swidth=120, sheight=50, flip=False)
    dx, dy, sx, sy = box_transform(crop, 100, 50)
    assert (dx, dy) == pytest.approx((10 / 120, 0.0)) and (sx, sy) == pytest.approx((100 / 120, 1.0))
    boxes = np.array([[0, 0.4, 0.4, 0.4, 0.4]], np.float32)  # x 20..60, y 10..30 of 100x50
    truth, min_side = fill_truth_detection(boxes, 5, crop, 100, 50, 120, 50, np.random.default_rng(0))
    assert truth[0, :4] == pytest.approx([(10 + 50) / 2 / 120, 0.4, 40 / 120, 0.4], abs=1e-6)
    assert min_side == 20  # 40/120 of 120 px wide, 0.4 of 50 px high: 20 px
    mirrored = Crop(10, 0, -30, 0, 120, 50, True)
    flipped, _ = fill_truth_detection(boxes, 5, mirrored, 100, 50, 120, 50, np.random.default_rng(0))
    assert flipped[0, 0] == pytest.approx(1 - truth[0, 0], abs=1e-6)


def test_padding_is_the_mean_colour_and_the_crop_is_resized():
    img = np.zeros((50, 100, 3), np.uint8)
    img[:, :50] = (200, 100, 0)  # mean colour: (100, 50, 0)
    crop = Crop(pleft=0, ptop=-50, pright=0, pbot=0, swidth=100, sheight=100, flip=False)
    out = image_data_augmentation(img, 100, 100, crop, Distortion(), np.zeros((1, 5), np.float32),
                                  np.random.default_rng(0))
    rgb = np.rint(out.transpose(1, 2, 0) * 255)
    assert (rgb[:45, 10] == (100, 50, 0)).all()  # the 50 added rows on top
    assert (rgb[55:, 10] == (200, 100, 0)).all() and (rgb[55:, 90] == 0).all()


def test_letter_box_keeps_the_aspect_ratio():
    # A 200x100 image into a 64x64 network: 50 rows of padding above and below (no jitter).
    crop = draw_crop(np.random.default_rng(0), 200, 100, 64, 64, jitter=0.0, resize=1.0, letter_box=True,
                     flip=False)
    assert (crop.pleft, crop.pright, crop.ptop, crop.pbot, crop.swidth, crop.sheight) == (0, 0, -50, -50, 200, 200)
    # a wide network: the tall image gets padding at the sides
    crop = draw_crop(np.random.default_rng(0), 100, 100, 128, 64, jitter=0.0, resize=1.0, letter_box=True,
                     flip=False)
    assert (crop.pleft, crop.pright, crop.swidth) == (-50, -50, 200)


def test_resize_draws_stay_in_alexeyabs_ranges():
    rng = np.random.default_rng(1)
    grow = dict(jitter=0.0, resize=2.0, letter_box=False, flip=False)
    sizes = np.array([draw_crop(rng, 100, 100, 64, 64, **grow).swidth for _ in range(400)])
    # resize=2: each side moves by up to ow*(1 - 2)/2 = -50 (bigger) .. ow*(1 - 1/2)/2 = 25 (smaller)
    assert sizes.min() >= 100 - 2 * 25 and sizes.max() <= 100 + 2 * 50
    assert sizes.min() < 70 and sizes.max() > 160
    shrink = dict(jitter=0.0, resize=0.5, letter_box=False, flip=False)
    down = np.array([draw_crop(rng, 100, 100, 64, 64, **shrink).swidth for _ in range(200)])
    assert down.min() >= 100 and down.max() <= 200  # resize < 1: the crop only grows (objects shrink)


def test_jitter_moves_each_side_by_up_to_jitter():
    rng = np.random.default_rng(2)
    crops = [draw_crop(rng, 200, 100, 64, 64, jitter=0.3, resize=1.0, letter_box=False, flip=True) for _ in range(300)]
    lefts = np.array([c.pleft for c in crops])
    tops = np.array([c.ptop for c in crops])
    assert lefts.min() >= -60 and lefts.max() <= 60 and lefts.min() < -50 and lefts.max() > 50
    assert tops.min() >= -30 and tops.max() <= 30
    assert 100 < sum(c.flip for c in crops) < 200


def test_mosaic_cut_points_and_quadrant_copy():
    rng = np.random.default_rng(0)
    cuts = np.array([mosaic_cut(rng, 100, 50) for _ in range(500)])
    assert cuts[:, 0].min() == 20 and cuts[:, 0].max() == 80 and cuts[:, 1].min() == 10 and cuts[:, 1].max() == 40
    canvas = np.zeros((1, 50, 100), np.float32)
    image = np.arange(50 * 100, dtype=np.float32).reshape(1, 50, 100)
    no_shift = Shifts(0, 0, 0, 0)
    paste_quadrant(canvas, image, 0, 30, 20, no_shift)  # top-left shows the image's part next to the cut
    assert canvas[0, 0, 0] == image[0, 50 - 20, 100 - 30] and canvas[0, 19, 29] == image[0, 49, 99]
    paste_quadrant(canvas, image, 3, 30, 20, Shifts(5, 4, 0, 0))  # bottom-right, padding shifted away
    assert canvas[0, 20, 30] == image[0, 4, 5]


def test_blend_truth_mosaic_clips_to_the_canvas_or_the_quadrant():
    # One box of the top-left image (part 0) centred in it, 40x20 px of a 100x50 network, cut at (60, 30):
    # the quadrant shows x 40..100, y 20..50 of the image, so the box (30..70, 15..35) moves to -10..30, -5..15.
    new = np.zeros((3, 5), np.float32)
    new[0] = (0.5, 0.5, 0.4, 0.4, 7)
    truth = np.zeros((3, 5), np.float32)
    blend_truth_mosaic(truth, new, 0, 60, 30, Shifts(0, 0, 0, 0), 100, 50, mosaic_bound=False)
    # clipped at the canvas edge only: x 0..30, y 0..15
    assert truth[0] == pytest.approx([0.15, 0.15, 0.3, 0.3, 7], abs=1e-6)
    truth = np.zeros((3, 5), np.float32)
    new[0] = (0.75, 0.8, 0.3, 0.4, 7)  # 60..90 x 30..50 -> 20..50 x 10..30: inside, unchanged
    blend_truth_mosaic(truth, new, 0, 60, 30, Shifts(0, 0, 0, 0), 100, 50, mosaic_bound=False)
    assert truth[0] == pytest.approx([0.35, 0.4, 0.3, 0.4, 7], abs=1e-6)
    # A right shift of 10 px shows the image up to x = 90 at the cut: the box 60..100 lands at 30..70, past
    # the cut at 60. Without mosaic_bound it stays (clipped to the canvas only), with it it ends at the cut.
    new[0] = (0.8, 0.8, 0.4, 0.4, 7)
    truth = np.zeros((3, 5), np.float32)
    blend_truth_mosaic(truth, new, 0, 60, 30, Shifts(0, 0, 10, 0), 100, 50, mosaic_bound=False)
    assert truth[0] == pytest.approx([0.5, 0.4, 0.4, 0.4, 7], abs=1e-6)
    truth = np.zeros((3, 5), np.float32)
    blend_truth_mosaic(truth, new, 0, 60, 30, Shifts(0, 0, 10, 0), 100, 50, mosaic_bound=True)
    assert truth[0] == pytest.approx([0.45, 0.4, 0.3, 0.4, 7], abs=1e-6)
    # a box that ends up outside the canvas is not kept
    new[0] = (0.1, 0.1, 0.1, 0.1, 7)
    truth = np.zeros((3, 5), np.float32)
    blend_truth_mosaic(truth, new, 0, 60, 30, Shifts(0, 0, 0, 0), 100, 50, mosaic_bound=False)
    assert (truth == 0).all()


def test_blend_truth_appends_while_slots_last():
    truth = np.zeros((3, 5), np.float32)
    truth[0] = (0.5, 0.5, 0.1, 0.1, 1)
    more = np.zeros((3, 5), np.float32)
    more[:3] = [(0.2, 0.2, 0.1, 0.1, 2), (0.3, 0.3, 0.1, 0.1, 3), (0.4, 0.4, 0.1, 0.1, 4)]
    blend_truth(truth, more)
    assert truth[:, 4].tolist() == [1, 2, 3]


def test_small_boxes_are_dropped_after_the_cut_to_max_boxes():
    boxes = np.array([[0, 0.5, 0.5, 0.001, 0.5], [1, 0.5, 0.5, 0.5, 0.5]], np.float32)
    crop = Crop(0, 0, 0, 0, 100, 100, False)
    truth, _ = fill_truth_detection(boxes, 5, crop, 100, 100, 64, 64, np.random.default_rng(0))
    assert truth[:, 4].tolist()[:1] == [1] and (truth[1:] == 0).all()  # under one network pixel: gone


def test_options_from_the_last_yolo_section_and_bad_combinations(images):
    sections = parse_cfg_text("[net]\nwidth=32\nheight=32\nchannels=3\n[yolo]\nclasses=3\njitter=.1\n"
                              "[yolo]\nclasses=5\njitter=.3\nresize=1.5\nrandom=1\nmax=90\n")
    opts = head_train_options(sections)
    assert (opts.classes, opts.jitter, opts.resize, opts.random, opts.max_boxes) == (5, 0.3, 1.5, 1.0, 90)
    with pytest.raises(DarknetError, match="resize=0 must be positive") as err:
        head_train_options(parse_cfg_text("[net]\n[yolo]\nresize=0\n"))
    assert err.value.line == 3
    with pytest.raises(DarknetError, match="needs a \\[yolo\\] layer"):
        head_train_options(parse_cfg_text("[net]\n[region]\n"))
    with pytest.raises(DarknetError, match="letter_box=1 and mosaic=1"):
        dataset(images, mixup=MOSAIC, letter_box=True)
    with pytest.warns(UserWarning, match="cutmix"):
        assert dataset(images, mixup=CUTMIX).mixup == 0
