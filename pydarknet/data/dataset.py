"""Torch datasets over Darknet image lists: detection (labels/*.txt) and classification (label
names found in the path).

Multi-scale training (`random=1`) changes the input size between batches. The size travels with
each index: `batch_sampler()` turns indices into `SampleKey(index, width, height, serial)` in the
main process, so `set_size()` reaches worker processes (persistent or not) without shared state,
and every batch has one size. Batches the DataLoader already prefetched keep the old size.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
from collections.abc import Iterator, Sequence
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import BatchSampler, Dataset, RandomSampler, Sampler, SequentialSampler

from pydarknet.data.augment import augment_detection, augment_detection_crop, fill_truth, random_distort_image
from pydarknet.data.datafile import read_list, resolve_path
from pydarknet.data.labels import LabelPolicy, label_path, read_labels
from pydarknet.errors import DarknetError
from pydarknet.image import letterbox_geometry, letterbox_image, load_image, resize_image
from pydarknet.names import read_names

logger = logging.getLogger(__name__)


LOADERS = {"crop": augment_detection_crop, "canvas": augment_detection}


class SampleKey(NamedTuple):
    """A dataset index with the input size to produce it at and a serial number that seeds it."""

    index: int
    width: int
    height: int
    serial: int


def collate(batch: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 3, h, w) images and (N, ...) truths."""
    images, truths = zip(*batch, strict=True)
    return torch.stack(images), torch.stack(truths)


class SizedBatchSampler(Sampler[list[SampleKey]]):
    """Batches of SampleKeys carrying the dataset's size at the moment each batch is drawn."""

    def __init__(self, dataset: ImageListDataset, sampler: Sampler[int], batch_size: int,
                 drop_last: bool = False) -> None:
        self.dataset = dataset
        self.batches = BatchSampler(sampler, batch_size, drop_last)
        self.serial = 0

    def __iter__(self) -> Iterator[list[SampleKey]]:
        for batch in self.batches:
            w, h = self.dataset.width, self.dataset.height
            yield [SampleKey(i, w, h, self.serial + k) for k, i in enumerate(batch)]
            self.serial += len(batch)

    def __len__(self) -> int:
        return len(self.batches)


class ImageListDataset(Dataset):
    """Common part: the image list, the current size, per-sample RNGs, skipping unloadable images.

    With `seed`, sample `serial` of image `index` always gets the same augmentation, whichever
    worker makes it. Counters of skipped samples and label problems are shared with workers; each
    process logs (and counts) a given label problem once, but every skip is counted. Under
    `label_policy="stop"` an unreadable image raises too, instead of being replaced by another.
    """

    def __init__(self, images: str | Path | Sequence[str | Path], width: int, height: int,
                 label_policy: LabelPolicy = "skip", seed: int | None = None) -> None:
        if label_policy not in ("skip", "stop"):
            raise ValueError(f"label policy must be 'skip' or 'stop', not {label_policy!r}")
        self.list_path = Path(images) if isinstance(images, (str, Path)) else None
        self.paths = read_list(self.list_path) if self.list_path else [str(p) for p in images]
        if not self.paths:
            raise DarknetError("no images listed", self.list_path)
        self.set_size(width, height)
        self.label_policy = label_policy
        self.seed = seed
        self._serial = 0
        self._logged: set[str] = set()
        # A spawn-context lock also travels to spawn/forkserver DataLoader workers (a fork one can't).
        shared = mp.get_context("spawn")
        self._skipped = shared.Value("i", 0)
        self._label_problems = shared.Value("i", 0)

    def set_size(self, width: int, height: int) -> None:
        if width <= 0 or height <= 0:
            raise ValueError(f"input size must be positive, got {width}x{height}")
        self.width, self.height = width, height

    @property
    def skipped_images(self) -> int:
        return self._skipped.value

    @property
    def label_problems(self) -> int:
        return self._label_problems.value

    def batch_sampler(self, batch_size: int, shuffle: bool = True, drop_last: bool = False,
                      generator: torch.Generator | None = None) -> SizedBatchSampler:
        """The batch sampler to give a DataLoader (`batch_sampler=`) for multi-scale training."""
        if shuffle and generator is None and self.seed is not None:
            generator = torch.Generator().manual_seed(self.seed)
        sampler = RandomSampler(self, generator=generator) if shuffle else SequentialSampler(self)
        return SizedBatchSampler(self, sampler, batch_size, drop_last)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, key: int | SampleKey) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(key, SampleKey):
            index, w, h, serial = key
        else:
            index, w, h, serial = int(key), self.width, self.height, self._serial
            self._serial += 1
        rng = np.random.default_rng(None if self.seed is None else [self.seed, serial, index])
        for _ in range(len(self.paths)):
            try:
                image, truth = self.sample(self.paths[index], w, h, rng)
                return torch.from_numpy(image), torch.from_numpy(truth)
            except DarknetError as err:
                if self.label_policy == "stop":
                    raise
                self._add(self._skipped, 1)
                self._log(f"{err} (sample skipped)")
                index = int(rng.integers(len(self.paths)))
        raise DarknetError(f"no loadable sample after {len(self.paths)} tries", self.list_path)

    def sample(self, path: str, width: int, height: int,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def resolve(self, path: str) -> Path:
        return resolve_path(path, self.list_path)

    def _problems(self, problems: list[str]) -> None:
        # Counted and logged once per process: the same file comes back every epoch.
        new = [p for p in problems if self._log(p)]
        if new:
            self._add(self._label_problems, len(new))

    def _log(self, message: str) -> bool:
        if message in self._logged:
            return False
        self._logged.add(message)
        logger.warning("%s", message)
        return True

    @staticmethod
    def _add(counter: Synchronized, n: int) -> None:
        with counter.get_lock():
            counter.value += n


class DetectionDataset(ImageListDataset):
    """(image (3, h, w), truth (max_boxes, 5) rows [x, y, w, h, class]) per listed image.

    Training (`augment=True`) is load_data_detection: jitter, scale, placement, HSV, flip. Without
    augmentation the image is resized (or letterboxed) to the network size, boxes unshuffled.
    """

    def __init__(self, images: str | Path | Sequence[str | Path], width: int, height: int, *,
                 jitter: float = 0.2, hue: float = 0.0, saturation: float = 1.0, exposure: float = 1.0,
                 max_boxes: int = 30, label_policy: LabelPolicy = "skip", augment: bool = True,
                 letterbox: bool = False, classes: int | None = None, seed: int | None = None,
                 loader: str = "crop") -> None:
        """`loader`: "crop" = the YOLOv2-era jitter crop (default), "canvas" = the final commit's
        [.25, 2] scale on a grey canvas."""
        super().__init__(images, width, height, label_policy, seed)
        if loader not in LOADERS:
            raise ValueError(f"loader must be one of {sorted(LOADERS)}, not {loader!r}")
        self.loader = loader
        if not 0 <= jitter < 1:
            raise DarknetError(f"jitter={jitter} must be in [0, 1)")
        self.jitter, self.hue, self.saturation, self.exposure = jitter, hue, saturation, exposure
        self.max_boxes, self.augment, self.letterbox, self.classes = max_boxes, augment, letterbox, classes

    def sample(self, path: str, width: int, height: int,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        image, boxes = self.load(path)
        return self.transform(image, boxes, width, height, rng)

    def load(self, path: str) -> tuple[np.ndarray, np.ndarray]:
        """The image and its label rows [class, cx, cy, w, h]."""
        labels_file = self.resolve(label_path(path))  # fails early on an unmapped extension
        image = load_image(self.resolve(path))
        labels = read_labels(labels_file, self.label_policy, self.classes)
        self._problems(labels.problems)
        return image, labels.boxes

    def transform(self, image: np.ndarray, boxes: np.ndarray, width: int, height: int,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """The network input and (max_boxes, 5) truth: augmented for training, else resized or letterboxed."""
        if self.augment:
            return LOADERS[self.loader](image, boxes, width, height, jitter=self.jitter, hue=self.hue,
                                        saturation=self.saturation, exposure=self.exposure,
                                        max_boxes=self.max_boxes, rng=rng)
        if not self.letterbox:
            return resize_image(image, width, height), fill_truth(boxes, self.max_boxes)
        new_w, new_h = letterbox_geometry(image.shape[2], image.shape[1], width, height)
        dx, dy = (width - new_w) // 2, (height - new_h) // 2
        truth = fill_truth(boxes, self.max_boxes, -dx / width, -dy / height, new_w / width,
                           new_h / height)
        return letterbox_image(image, width, height), truth


def resize_min(image: np.ndarray, size: int) -> np.ndarray:
    """Darknet's resize_min: the shorter side becomes `size`, the other keeps the aspect (int division)."""
    _, h, w = image.shape
    new_w, new_h = (size, h * size // w) if w < h else (w * size // h, size)
    return image if (new_w, new_h) == (w, h) else resize_image(image, new_w, new_h)


class ClassificationDataset(ImageListDataset):
    """(image (3, h, w), truth (k,)) per listed image, for Darknet classifiers.

    The truth is Darknet's fill_truth: 1 for EVERY label name that occurs anywhere in the listed path
    string (strstr, directories included), so "cat" also matches ".../catalog/dog_1.jpg". Darknet
    only prints a warning for a path matching no label or several; here it is a DarknetError under
    "stop" and a skipped sample under "skip" (with one class, no match is a valid negative).
    Evaluation resizes the shorter side to the network size and centre-crops (validate_classifier);
    training picks the shorter side in [min_crop, max_crop], crops at random, flips and distorts HSV, as
    load_data_augment does. Simplified from Darknet's random_augment_image: no rotation (`angle`) or aspect
    (`aspect`) jitter, a resize then an integer crop instead of one bilinear sampling, and the shorter side
    never below the network size (where Darknet would sample zeros beyond the image).
    """

    def __init__(self, images: str | Path | Sequence[str | Path], labels: str | Path | Sequence[str],
                 width: int, height: int, *, augment: bool = False, min_crop: int | None = None,
                 max_crop: int | None = None, hue: float = 0.0, saturation: float = 1.0,
                 exposure: float = 1.0, label_policy: LabelPolicy = "skip", seed: int | None = None) -> None:
        super().__init__(images, width, height, label_policy, seed)
        labels_file = Path(labels) if isinstance(labels, (str, Path)) else None
        self.labels = read_names(labels_file) if labels_file else list(labels)
        for number, name in enumerate(self.labels, start=1):
            if not name:
                raise DarknetError("empty label name: it would match every path", labels_file, number)
        # Darknet's defaults: min_crop = w, max_crop = 2w.
        self.min_crop = min_crop if min_crop is not None else width
        self.max_crop = max_crop if max_crop is not None else 2 * width
        self.augment, self.hue, self.saturation, self.exposure = augment, hue, saturation, exposure

    def truth(self, path: str) -> np.ndarray:
        truth = np.array([name in path for name in self.labels], np.float32)
        count = int(truth.sum())
        if count != 1 and (len(self.labels) != 1 or count != 0):
            raise DarknetError(f"path matches {count} label names, expected exactly 1", path)
        return truth

    def sample(self, path: str, width: int, height: int,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        truth = self.truth(path)
        image = load_image(self.resolve(path))
        side = max(width, height)
        if self.augment:
            side = max(side, int(rng.integers(min(self.min_crop, self.max_crop),
                                              max(self.min_crop, self.max_crop) + 1)))
        image = resize_min(image, side)
        _, ih, iw = image.shape
        if self.augment:
            x, y = int(rng.integers(iw - width + 1)), int(rng.integers(ih - height + 1))
        else:
            x, y = (iw - width) // 2, (ih - height) // 2
        crop = image[:, y:y + height, x:x + width]
        if self.augment:
            if rng.integers(2):
                crop = crop[:, :, ::-1]
            crop = random_distort_image(crop, self.hue, self.saturation, self.exposure, rng)
        return np.ascontiguousarray(crop, dtype=np.float32), truth
