"""YOLO9000 joint training data (Darknet's `combine9k`): detection and classification-only images in one list.

Darknet's rule (final commit; data.c correct_boxes, region_layer.c forward_region_layer): a label line centred
exactly at (0, 0), `class 0 0 w h`, becomes a truth row of 999999s, and a WordTree region trains an image
with such a truth (x and y above 100000) as classification-only: the class, a WordTree index NOT mapped
through `map=`, is trained at the anchor and cell most confident for it, with no box and no object target.
Detection label files keep their COCO ids, which the region maps through `map=` (coco9k.map).

Darknet needs a label file for every image. Here an image without one whose path holds a name of the
.data file's `labels=` (9k.labels: WordNet synsets, as in ImageNet's directory and file names) gets the
truth the label file `<index> 0 0 0 0` would give it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pydarknet.data.dataset import DetectionDataset
from pydarknet.data.labels import label_path, read_labels
from pydarknet.image import load_image
from pydarknet.names import read_names

CLASS_ONLY = 999999.0  # correct_boxes' x, y, w and h for a label centred at (0, 0)


def synset_class(path: str, labels: Sequence[str]) -> int | None:
    """The index of the first label that occurs in `path` (strstr, as Darknet's classifier), or None."""
    return next((i for i, name in enumerate(labels) if name and name in path), None)


def with_class_only(truth: np.ndarray, classes: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
    """`truth` (max_boxes, 5) with a `999999 999999 999999 999999 class` row per class-only label in front.

    Darknet shuffles these rows among the boxes, and the region layer uses only the first of them (and none
    of the boxes). Putting them first, in random order when `rng` is given, trains the same class; unlike
    Darknet, a class-only row is never cut off behind `max_boxes` boxes."""
    if not len(classes):
        return truth
    if rng is not None:
        classes = rng.permutation(classes)
    rows = np.full((len(classes), 5), CLASS_ONLY, np.float32)
    rows[:, 4] = classes
    return np.concatenate([rows, truth])[:len(truth)]  # zero rows after the boxes keep ending the list


class Combine9kDataset(DetectionDataset):
    """DetectionDataset for a WordTree region: label files may hold classification-only lines
    (`class 0 0 w h`, class < `tree_classes`), and an image without a label file whose path holds one of
    `labels` is classification-only for the first such label. Box classes stay below `classes` (the
    length of `map=` when the region has one). The image is augmented as any detection image."""

    def __init__(self, images: str | Path | Sequence[str | Path], width: int, height: int, *, tree_classes: int,
                 labels: str | Path | Sequence[str] | None = None, **options) -> None:  # noqa: ANN003
        super().__init__(images, width, height, **options)
        self.tree_classes = tree_classes
        self.synsets = read_names(labels) if isinstance(labels, (str, Path)) else list(labels or [])

    def load(self, path: str) -> tuple[np.ndarray, np.ndarray]:
        labels_file = self.resolve(label_path(path))
        image = load_image(self.resolve(path))
        if not labels_file.exists():
            cls = synset_class(path, self.synsets)
            if cls is not None and cls < self.tree_classes:
                return image, np.array([[cls, 0, 0, 0, 0]], np.float32)
        labels = read_labels(labels_file, self.label_policy, self.classes, class_only_classes=self.tree_classes)
        self._problems(labels.problems)
        return image, labels.boxes

    def sample(self, path: str, width: int, height: int,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        image, rows = self.load(path)
        only = (rows[:, 1] == 0) & (rows[:, 2] == 0)
        image, truth = self.transform(image, rows[~only], width, height, rng)
        return image, with_class_only(truth, rows[only, 0], rng if self.augment else None)
