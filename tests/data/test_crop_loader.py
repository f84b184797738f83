"""The YOLOv2-era jitter-crop loader: geometry of crop_image and of the truth it produces."""

from __future__ import annotations

import numpy as np

from pydarknet.data.augment import augment_detection_crop, crop_image


def test_crop_image_repeats_the_border_outside():
    im = np.arange(12, dtype=np.float32).reshape(1, 3, 4)
    out = crop_image(im, -1, 1, 6, 3)
    assert out.shape == (1, 3, 6)
    np.testing.assert_array_equal(out[0, 0], [4, 4, 5, 6, 7, 7])
    np.testing.assert_array_equal(out[0, 2], [8, 8, 9, 10, 11, 11])  # rows past the bottom repeat the last


def test_truth_follows_the_object_through_crop_resize_and_flip():
    im = np.full((3, 100, 200), 0.2, np.float32)
    im[:, 40:60, 120:160] = 1.0  # a white box: cx .7, cy .5, w .2, h .2
    boxes = np.array([[3, 0.7, 0.5, 0.2, 0.2]], np.float32)
    for seed in range(20):
        image, truth = augment_detection_crop(im, boxes, 64, 64, jitter=0.2, hue=0.0, saturation=1.0, exposure=1.0,
                                              max_boxes=30, rng=np.random.default_rng(seed))
        x, y, w, h, cls = truth[0]
        assert cls == 3 and truth[1, 0] == 0
        bright = image[0] > 0.6
        cols, rows = np.nonzero(bright.any(0))[0], np.nonzero(bright.any(1))[0]
        # resize_image blends one pixel at each edge: the truth is within 1.5 px of the bright block
        assert abs(x * 64 - (cols[0] + cols[-1] + 1) / 2) <= 1.5
        assert abs(y * 64 - (rows[0] + rows[-1] + 1) / 2) <= 1.5
        assert abs(w * 64 - (cols[-1] - cols[0] + 1)) <= 2
        assert abs(h * 64 - (rows[-1] - rows[0] + 1)) <= 2
