"""Detection and classification datasets: samples, validation geometry, workers, bad inputs."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from pydarknet.data.dataset import ClassificationDataset, DetectionDataset, SampleKey, collate
from pydarknet.errors import DarknetError
from pydarknet.image import letterbox_image, load_image, resize_image


def write_image(path: Path, w: int, h: int, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    cv2.imwrite(str(path), img)


@pytest.fixture
def detection_set(tmp_path: Path) -> Path:
    """16 PNGs of varying size with 1-3 boxes each, listed in train.txt by absolute path."""
    lines = []
    for i in range(16):
        image = tmp_path / "images" / f"{i:02d}.png"
        write_image(image, 40 + 4 * i, 60 - 2 * i, i)
        label = tmp_path / "labels" / f"{i:02d}.txt"
        label.parent.mkdir(exist_ok=True)
        label.write_text("".join(f"{(i + k) % 5} {0.2 + 0.25 * k} 0.5 0.15 {0.1 + 0.1 * k}\n"
                                 for k in range(1 + i % 3)))
        lines.append(f"{image}\n")
    (tmp_path / "train.txt").write_text("".join(lines))
    return tmp_path / "train.txt"


def test_training_sample_layout(detection_set: Path) -> None:
    ds = DetectionDataset(detection_set, 64, 48, jitter=.2, hue=.1, saturation=1.5, exposure=1.5, seed=0)
    assert len(ds) == 16
    image, truth = ds[4]
    assert image.shape == (3, 48, 64) and image.dtype == torch.float32
    assert truth.shape == (30, 5) and truth.dtype == torch.float32
    assert 0 <= image.min() and image.max() <= 1
    boxes = truth[truth[:, 2] > 0]
    assert 1 <= len(boxes) <= 2 and not truth[len(boxes):].any()
    assert ((boxes[:, :4] >= 0) & (boxes[:, :4] <= 1)).all()
    assert set(boxes[:, 4].tolist()) <= {4.0, 0.0}


def test_validation_resize_keeps_labels(detection_set: Path) -> None:
    ds = DetectionDataset(detection_set, 64, 48, augment=False)
    image, truth = ds[5]
    path = detection_set.parent / "images" / "05.png"
    np.testing.assert_array_equal(image.numpy(), resize_image(load_image(path), 64, 48))
    # unshuffled, unchanged: label rows [class, cx, cy, w, h] become [cx, cy, w, h, class]
    expected = [[0.2, 0.5, 0.15, 0.1, 0], [0.45, 0.5, 0.15, 0.2, 1], [0.7, 0.5, 0.15, 0.3, 2]]
    np.testing.assert_allclose(truth[:3].numpy(), expected, atol=1e-6)
    assert not truth[3:].any()


def test_validation_letterbox_moves_boxes(tmp_path: Path) -> None:
    image_path = tmp_path / "images" / "wide.png"
    write_image(image_path, 80, 40, 0)
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "wide.txt").write_text("3 0.25 0.5 0.5 0.5\n")
    ds = DetectionDataset([image_path], 64, 64, augment=False, letterbox=True)
    image, truth = ds[0]
    np.testing.assert_array_equal(image.numpy(), letterbox_image(load_image(image_path), 64, 64))
    # 80x40 -> 64x32 centred at rows 16..48: y and h shrink to the band, x and w are unchanged
    np.testing.assert_allclose(truth[0].numpy(), [0.25, 0.5, 0.5, 0.25, 3], atol=1e-6)


def loader(ds: DetectionDataset, workers: int, **kwargs: object) -> DataLoader:
    return DataLoader(ds, batch_sampler=ds.batch_sampler(2, generator=torch.Generator().manual_seed(1)),
                      num_workers=workers, collate_fn=collate, **kwargs)


def test_set_size_reaches_persistent_workers(detection_set: Path) -> None:
    ds = DetectionDataset(detection_set, 64, 64, seed=0)
    dl = loader(ds, 2, persistent_workers=True, prefetch_factor=1)
    sizes = [tuple(x.shape[2:]) for x, _ in dl]
    assert sizes == [(64, 64)] * 8
    ds.set_size(96, 32)
    sizes = [tuple(x.shape[2:]) for x, _ in dl]  # a new epoch draws every batch after set_size
    assert sizes == [(32, 96)] * 8
    shapes = []
    for n, (x, y) in enumerate(dl):
        assert y.shape == (2, 30, 5)
        shapes.append(tuple(x.shape[2:]))
        if n == 0:
            ds.set_size(64, 32)  # mid-epoch: batches already prefetched keep the old size
    assert shapes[0] == (32, 96) and shapes[-1] == (32, 64) and len(shapes) == 8


def test_seeded_samples_do_not_depend_on_workers(detection_set: Path) -> None:
    ds = DetectionDataset(detection_set, 64, 48, hue=.1, saturation=1.5, exposure=1.5, seed=3)
    single = list(loader(ds, 0))
    multi = list(loader(ds, 2))
    assert len(single) == len(multi) == 8
    for (xa, ya), (xb, yb) in zip(single, multi, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    key = SampleKey(3, 64, 48, 0)
    assert torch.equal(ds[key][0], ds[key][0])
    assert not torch.equal(ds[key][0], ds[SampleKey(3, 64, 48, 1)][0])


def test_bad_image_is_skipped_and_counted_across_workers(detection_set: Path) -> None:
    bad = detection_set.parent / "images" / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    paths = [str(bad)] + detection_set.read_text().split()[:3]
    ds = DetectionDataset(paths, 32, 32, seed=0)
    image, truth = ds[0]
    assert image.shape == (3, 32, 32)
    assert ds.skipped_images == 1
    batches = list(DataLoader(ds, batch_size=2, num_workers=2, collate_fn=collate))
    assert sum(len(x) for x, _ in batches) == 4
    assert ds.skipped_images == 2  # the worker's skip is seen by the main process
    with pytest.raises(DarknetError, match="cannot read image") as err:
        DetectionDataset(paths, 32, 32, label_policy="stop")[0]
    assert err.value.file == str(bad)


def test_label_problems_follow_the_policy(detection_set: Path) -> None:
    label = detection_set.parent / "labels" / "00.txt"
    label.write_text("0 0.5 0.5 0.2 0.2\n7 0.5 0.5 0.2\n")
    ds = DetectionDataset(detection_set, 32, 32, augment=False)
    assert ds[0][1][:, 2].gt(0).sum() == 1 and ds.label_problems == 1
    with pytest.raises(DarknetError) as err:
        DetectionDataset(detection_set, 32, 32, augment=False, label_policy="stop")[0]
    assert (err.value.file, err.value.line) == (str(label), 2)
    with pytest.raises(DarknetError, match="class 0 must be"):
        label.write_text("0 0.5 0.5 0.2 0.2\n")
        DetectionDataset(detection_set, 32, 32, augment=False, label_policy="stop", classes=0)[0]


def test_constructor_checks(tmp_path: Path, detection_set: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    with pytest.raises(DarknetError, match="no images listed"):
        DetectionDataset(empty, 32, 32)
    with pytest.raises(DarknetError, match="jitter"):
        DetectionDataset(detection_set, 32, 32, jitter=1.0)


@pytest.fixture
def classification_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Paths relative to the working directory, as Darknet opens them: labels are matched against
    the path as listed, and the test's tmp dir name ("...classification...") contains "cat"."""
    monkeypatch.chdir(tmp_path)
    paths = []
    for i, name in enumerate(["cat_1.png", "dog_2.png", "cat_3.png", "fish_4.png"]):
        write_image(tmp_path / "imgs" / name, 50 + 10 * i, 40, i)
        paths.append(f"imgs/{name}")
    return paths


def test_classification_truth_from_path(classification_set: list[str]) -> None:
    ds = ClassificationDataset(classification_set[:3], ["dog", "cat"], 32, 32)
    image, truth = ds[0]
    assert truth.tolist() == [0, 1] and ds[1][1].tolist() == [1, 0]
    # evaluation: shorter side to 32, centre crop (validate_classifier_single)
    full = resize_image(load_image(classification_set[0]), 40, 32)
    np.testing.assert_array_equal(image.numpy(), full[:, :, 4:36])
    # one class: no match is a valid negative
    assert ClassificationDataset(classification_set[1:2], ["cat"], 16, 16)[0][1].tolist() == [0]


def test_classification_path_matching_several_labels(classification_set: list[str]) -> None:
    # strstr on the whole path: "imgs" is in every path, so cat_1 matches both labels
    with pytest.raises(DarknetError, match="matches 2 label names"):
        ClassificationDataset(classification_set, ["cat", "imgs"], 16, 16, label_policy="stop")[0]
    ds = ClassificationDataset(classification_set, ["cat", "dog"], 16, 16, seed=0)
    assert ds[3][1].sum() == 1 and ds.skipped_images >= 1  # fish matches nothing: replaced


def test_classification_augment_and_labels_file(tmp_path: Path, classification_set: list[str]) -> None:
    names = tmp_path / "labels.txt"
    names.write_text("cat\ndog\nfish\n")
    ds = ClassificationDataset(classification_set, names, 24, 24, augment=True, hue=.1,
                               saturation=1.5, exposure=1.5, seed=1)
    images = [ds[3][0] for _ in range(3)]
    assert all(x.shape == (3, 24, 24) for x in images)
    assert not torch.equal(images[0], images[1])
    assert ds[3][1].tolist() == [0, 0, 1]
    names.write_text("cat\n\ndog\n")
    with pytest.raises(DarknetError, match="empty label name") as err:
        ClassificationDataset(classification_set, names, 24, 24)
    assert err.value.line == 2
