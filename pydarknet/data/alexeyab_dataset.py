"""The training set of a [yolo]-family cfg, sample by sample as AlexeyAB's load_data_detection makes it:
one augmented image, or (when the cfg asks for it, half of the time) a mosaic of four or a blend of two.

Darknet decides "mosaic or not" once per loader thread's share of a batch; here each sample decides alone,
with the same probability.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from pydarknet.cfg import Section
from pydarknet.data.alexeyab_augment import (
    Crop,
    Distortion,
    draw_crop,
    fill_truth_detection,
    image_data_augmentation,
)
from pydarknet.data.dataset import ImageListDataset
from pydarknet.data.labels import LabelPolicy, label_path, read_labels
from pydarknet.data.mosaic import Shifts, blend_images, blend_truth, blend_truth_mosaic, mosaic_cut, paste_quadrant
from pydarknet.errors import DarknetError
from pydarknet.image import decode_image_file
from pydarknet.netconfig import CUTMIX, MIXUP, MOSAIC, MOSAIC_CUTMIX, NetConfig

HEAD_KINDS = ("yolo", "gaussian_yolo")


@dataclass
class HeadTrainOptions:
    """The training options AlexeyAB's train_detector takes from the last detection layer."""

    classes: int = 20
    jitter: float = 0.2
    resize: float = 1.0  # > 1: the crop is scaled by up to this factor either way; < 1: down only
    random: float = 0.0  # multi-scale: 0 off, 1 = sizes up to 1.4x, else up to this factor
    max_boxes: int = 200


def head_train_options(sections: list[Section]) -> HeadTrainOptions:
    """classes, jitter, resize, random and max of the cfg's last [yolo] (or [gaussian_yolo]) section."""
    heads = [s for s in sections if s.kind in HEAD_KINDS]
    if not heads:
        raise sections[0].error("detector train of an AlexeyAB cfg needs a [yolo] layer")
    sec = heads[-1]
    opts = HeadTrainOptions(sec.positive_int("classes", 20), sec.get_float("jitter", 0.2),
                            sec.get_float("resize", 1.0), sec.get_float("random", 0.0), sec.positive_int("max", 200))
    for key, value in (("jitter", opts.jitter), ("random", opts.random)):
        if value < 0:
            raise sec.error(f"{key}={value:g} must not be negative", key)
    if opts.resize <= 0:
        raise sec.error(f"resize={opts.resize:g} must be positive", "resize")
    return opts


def load_image_rgb8(path: str | Path) -> np.ndarray:
    """load_image_mat_cv: cv::imread(IMREAD_COLOR), so EXIF orientation applied, grey or alpha to 3 channels,
    16 bits to 8, then RGB: (h, w, 3) uint8."""
    return cv2.cvtColor(decode_image_file(path, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


class AlexeyABDetectionDataset(ImageListDataset):
    """(image (3, h, w) float32, truth (max_boxes, 5) rows [x, y, w, h, class]) per sample.

    `mixup` is the [net] code (NetConfig.mixup): MIXUP blends two images, MOSAIC tiles four, each in half of
    the samples. cutmix is not supported for detection (AlexeyAB ignores it there, with a message)."""

    def __init__(self, images: str | Path | Sequence[str | Path], width: int, height: int, *, classes: int,
                 max_boxes: int = 200, jitter: float = 0.2, resize: float = 1.0, flip: bool = True,
                 hue: float = 0.0, saturation: float = 1.0, exposure: float = 1.0, blur: int = 0,
                 gaussian_noise: int = 0, mixup: int = 0, letter_box: bool = False, mosaic_bound: bool = False,
                 label_policy: LabelPolicy = "skip", seed: int | None = None) -> None:
        super().__init__(images, width, height, label_policy, seed)
        if mixup in (CUTMIX, MOSAIC_CUTMIX):
            warnings.warn("cutmix=1 is not supported for detection (only for classifiers): ignored",
                          stacklevel=2)
            mixup = 0 if mixup == CUTMIX else MOSAIC
        if mixup == MOSAIC and letter_box:
            raise DarknetError("letter_box=1 and mosaic=1 cannot be combined (AlexeyAB's Darknet stops too)")
        self.classes, self.max_boxes, self.mixup = classes, max_boxes, mixup
        self.jitter, self.resize, self.flip, self.letter_box = jitter, resize, flip, letter_box
        self.hue, self.saturation, self.exposure = hue, saturation, exposure
        self.blur, self.gaussian_noise, self.mosaic_bound = blur, gaussian_noise, mosaic_bound

    @classmethod
    def from_config(cls, images: str | Path | Sequence[str | Path], cfg: NetConfig, head: HeadTrainOptions,
                    cfg_path: str | Path, label_policy: LabelPolicy = "skip",
                    seed: int | None = None) -> AlexeyABDetectionDataset:
        """The set train_detector loads for a cfg: [net] augmentation options and the last head's."""
        try:
            return cls(images, cfg.width, cfg.height, classes=head.classes, max_boxes=head.max_boxes,
                       jitter=head.jitter, resize=head.resize, flip=cfg.flip, hue=cfg.hue,
                       saturation=cfg.saturation, exposure=cfg.exposure, blur=cfg.blur,
                       gaussian_noise=cfg.gaussian_noise, mixup=cfg.mixup, letter_box=cfg.letter_box,
                       mosaic_bound=cfg.mosaic_bound, label_policy=label_policy, seed=seed)
        except DarknetError as err:
            if err.file is not None:
                raise
            raise DarknetError(err.message, cfg_path) from None

    def load(self, path: str) -> tuple[np.ndarray, np.ndarray]:
        """The uint8 RGB image and its label rows [class, cx, cy, w, h]."""
        labels_file = self.resolve(label_path(path))
        image = load_image_rgb8(self.resolve(path))
        labels = read_labels(labels_file, self.label_policy, self.classes)
        self._problems(labels.problems)
        return image, labels.boxes

    def augment(self, image: np.ndarray, boxes: np.ndarray, w: int, h: int, rng: np.random.Generator,
                mosaic_part: int | None = None) -> tuple[np.ndarray, np.ndarray, Crop]:
        """One image through load_data_detection's loop body: (input, truth, its crop)."""
        oh, ow = image.shape[:2]
        crop = draw_crop(rng, ow, oh, w, h, jitter=self.jitter, resize=self.resize, letter_box=self.letter_box,
                         flip=self.flip, mosaic_part=mosaic_part)
        distortion = Distortion.draw(rng, self.hue, self.saturation, self.exposure, self.blur, self.gaussian_noise)
        truth, min_side = fill_truth_detection(boxes, self.max_boxes, crop, ow, oh, w, h, rng)
        pixels = image_data_augmentation(image, w, h, crop, distortion.capped(min_side), truth, rng)
        return pixels, truth, crop

    def sample(self, path: str, width: int, height: int,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        mixup = self.mixup if rng.integers(2) else 0
        if mixup == 0:
            pixels, truth, _ = self.augment(*self.load(path), width, height, rng)
            return pixels, truth
        parts = 4 if mixup == MOSAIC else 2
        paths = [path] + [self.paths[i] for i in rng.integers(len(self.paths), size=parts - 1)]
        if mixup == MIXUP:
            first, truth, _ = self.augment(*self.load(paths[0]), width, height, rng)
            second, more, _ = self.augment(*self.load(paths[1]), width, height, rng)
            blend_truth(truth, more)
            return blend_images(first, second), truth
        cut_x, cut_y = mosaic_cut(rng, width, height)
        canvas = np.zeros((3, height, width), np.float32)
        truth = np.zeros((self.max_boxes, 5), np.float32)
        for part, p in enumerate(paths):
            image, boxes = self.load(p)
            pixels, boxes_truth, crop = self.augment(image, boxes, width, height, rng, mosaic_part=part)
            shifts = Shifts.of(crop, image.shape[1], image.shape[0], width, height, cut_x, cut_y)
            paste_quadrant(canvas, pixels, part, cut_x, cut_y, shifts)
            blend_truth_mosaic(truth, boxes_truth, part, cut_x, cut_y, shifts, width, height,
                               mosaic_bound=self.mosaic_bound)
        return canvas, truth
