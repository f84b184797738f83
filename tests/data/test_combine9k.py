"""YOLO9000 joint training data (combine9k): a list mixing COCO detection images with ImageNet
classification-only images gives Darknet's truth rows, and the region delta for a classification-only image
is Darknet's (checked against a numpy re-statement of forward_region_layer's class-only branch)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from conftest import FIXTURES, ROOT
from pydarknet.cli.main import main
from pydarknet.data.combine9k import CLASS_ONLY, Combine9kDataset, synset_class, with_class_only
from pydarknet.data.labels import read_labels
from pydarknet.errors import DarknetError
from pydarknet.network import build_network
from pydarknet.train.trainer import Trainer

LABELS = (ROOT / "data" / "9k.labels").read_text().split()
BIRD, DOG = LABELS.index("n01503061"), LABELS.index("n02084071")  # 6527, 6912
COCO_DOG = 16  # coco9k.map sends COCO id 16 to tree id 6912


def write_image(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.random.default_rng(seed).integers(0, 256, (40, 56, 3), dtype=np.uint8))


@pytest.fixture
def mixed_list(tmp_path: Path) -> Path:
    """Two COCO-style detection images, an ImageNet image with a class-only label file (Darknet's form)
    and one without a label file whose synset is in its path."""
    images = [tmp_path / "coco" / "images" / "a.jpg", tmp_path / "coco" / "images" / "b.jpg",
              tmp_path / "inet" / "n01503061" / "n01503061_7.JPEG", tmp_path / "inet" / "n02084071" / "x_1.JPEG"]
    for seed, image in enumerate(images):
        write_image(image, seed)
    (tmp_path / "coco" / "labels").mkdir()
    (tmp_path / "coco" / "labels" / "a.txt").write_text(f"{COCO_DOG} 0.5 0.5 0.4 0.6\n1 0.25 0.3 0.2 0.2\n")
    (tmp_path / "coco" / "labels" / "b.txt").write_text("0 0.6 0.4 0.3 0.5\n")
    (tmp_path / "inet" / "n01503061" / "n01503061_7.txt").write_text(f"{BIRD} 0 0 0 0\n")
    (tmp_path / "train.list").write_text("".join(f"{p}\n" for p in images))
    return tmp_path / "train.list"


def test_class_only_label_lines() -> None:
    assert synset_class("/x/n02084071/n02084071_5.JPEG", LABELS) == DOG
    assert synset_class("/x/coco/images/a.jpg", LABELS) is None


def test_read_labels_class_only_bounds(tmp_path: Path) -> None:
    f = tmp_path / "l.txt"
    f.write_text(f"{DOG} 0 0 0.5 0.5\n{COCO_DOG} 0.5 0.5 0.1 0.1\n")
    rows = read_labels(f, "stop", classes=80, class_only_classes=9418).boxes
    np.testing.assert_array_equal(rows, np.float32([[DOG, 0, 0, 0.5, 0.5], [COCO_DOG, 0.5, 0.5, 0.1, 0.1]]))
    with pytest.raises(DarknetError, match="centred at 0 0"):  # without a WordTree it stays an error
        read_labels(f, "stop", classes=80)
    f.write_text("9418 0 0 0 0\n")
    with pytest.raises(DarknetError, match=r"l.txt:1: class 9418 must be in \[0, 9418\)"):
        read_labels(f, "stop", classes=80, class_only_classes=9418)
    f.write_text("80 0.5 0.5 0.1 0.1\n")  # a box class indexes map=: below its 80 lines
    with pytest.raises(DarknetError, match=r"class 80 must be in \[0, 80\)"):
        read_labels(f, "stop", classes=80, class_only_classes=9418)


def test_truth_rows_are_darknets(mixed_list: Path) -> None:
    ds = Combine9kDataset(mixed_list, 48, 32, tree_classes=9418, labels=ROOT / "data" / "9k.labels", classes=80,
                          augment=False, label_policy="stop")
    truths = [ds[i][1].numpy() for i in range(4)]
    # Detection images: fill_truth_detection rows x, y, w, h, class with COCO ids (the region maps them).
    np.testing.assert_allclose(truths[0][:3], [[0.5, 0.5, 0.4, 0.6, COCO_DOG], [0.25, 0.3, 0.2, 0.2, 1], [0] * 5],
                               atol=1e-6)
    np.testing.assert_allclose(truths[1][:2], [[0.6, 0.4, 0.3, 0.5, 0], [0] * 5], atol=1e-6)
    # Classification-only: correct_boxes' 999999s and the 9k index, unmapped; nothing after it.
    for truth, cls in ((truths[2], BIRD), (truths[3], DOG)):
        np.testing.assert_array_equal(truth[0], [CLASS_ONLY] * 4 + [cls])
        assert not truth[1:].any() and truth.shape == (30, 5)
    # Training augmentation moves the boxes but never the class-only row.
    train = Combine9kDataset(mixed_list, 48, 32, tree_classes=9418, labels=ROOT / "data" / "9k.labels",
                             classes=80, jitter=.2, hue=.1, saturation=1.5, exposure=1.5, seed=3)
    image, truth = train[2]
    assert image.shape == (3, 32, 48)
    np.testing.assert_array_equal(truth[0].numpy(), [CLASS_ONLY] * 4 + [BIRD])


def test_with_class_only_puts_them_first() -> None:
    truth = np.zeros((4, 5), np.float32)
    truth[:3] = [[0.5, 0.5, 0.1, 0.1, 3]] * 3
    out = with_class_only(truth, np.array([7.0]))
    np.testing.assert_array_equal(out[:, 4], [7, 3, 3, 3])  # cut to max boxes, the class-only row kept
    assert (out[0, :4] == CLASS_ONLY).all()


def _tree_parents() -> np.ndarray:
    return np.array([int(line.split()[1]) for line in (ROOT / "data" / "9k.tree").read_text().splitlines()])


def _group(parents: np.ndarray, node: int) -> range:
    """Darknet's group of `node`: the run of consecutive lines with its parent."""
    lo, hi = node, node
    while lo > 0 and parents[lo - 1] == parents[node]:
        lo -= 1
    while hi + 1 < len(parents) and parents[hi + 1] == parents[node]:
        hi += 1
    return range(lo, hi + 1)


def expected_class_only_delta(out: np.ndarray, cls: int, n: int, noobject_scale: float,
                              class_scale: float) -> np.ndarray:
    """forward_region_layer (final commit) for an image whose truth is class-only, from the activated output
    (n, 5 + classes, cells): noobject delta everywhere, then at the anchor/cell where obj * P(cls along its
    path) is largest (first on ties): objectness delta 0 and delta_region_class along the WordTree path."""
    parents = _tree_parents()
    path = [cls]
    while parents[path[-1]] >= 0:
        path.append(int(parents[path[-1]]))
    delta = np.zeros_like(out)
    delta[:, 4] = np.float32(noobject_scale) * (0 - out[:, 4])
    prob = out[:, 4].copy()
    for node in path:
        prob = prob * out[:, 5 + node]
    a, c = np.unravel_index(np.argmax(prob), prob.shape)  # n = anchor*w*h + cell: anchor-major, first max
    delta[a, 4, c] = 0
    for node in path:
        for member in _group(parents, node):
            delta[a, 5 + member, c] = np.float32(class_scale) * (0 - out[a, 5 + member, c])
        delta[a, 5 + node, c] = np.float32(class_scale) * (1 - out[a, 5 + node, c])
    return delta


def test_class_only_region_delta_by_hand(mixed_list: Path) -> None:
    net = build_network(FIXTURES / "mini_9k" / "net.cfg")
    net.load_weights(FIXTURES / "mini_9k" / "net.weights")
    ds = Combine9kDataset(mixed_list, 48, 32, tree_classes=9418, labels=ROOT / "data" / "9k.labels", classes=80,
                          augment=False)
    images, truth = (torch.stack(t) for t in zip(*(ds[i] for i in range(4))))
    net.seen = 0  # below 12800 detection images get the anchor prior; class-only images must not
    with torch.no_grad():
        out = net.eval()(images)
    (delta,), cost = Trainer(net)._deltas([out], truth)
    region = net.heads[-1][1].params
    n, entries = region.n, 5 + region.classes
    out_np = out.numpy().reshape(4, n, entries, -1)
    delta_np = delta.numpy().reshape(4, n, entries, -1)
    for b, cls in ((2, BIRD), (3, DOG)):
        expected = expected_class_only_delta(out_np[b], cls, n, region.noobject_scale, region.class_scale)
        np.testing.assert_array_equal(delta_np[b, :, :4], 0)  # no box, no prior
        np.testing.assert_allclose(delta_np[b], expected, rtol=1e-6, atol=0)
        assert np.count_nonzero(delta_np[b, :, 5:]) >= 2 * 5  # the whole path, with its groups
    # The detection image is a detection: the dog's mapped tree id (6912) is trained at its box, coords move.
    det = delta_np[0]
    assert det[:, :4].any()
    a, c = np.argwhere(det[:, 5 + DOG] > 0)[0]
    assert det[a, 5 + DOG, c] == pytest.approx(region.class_scale * (1 - out_np[0, a, 5 + DOG, c]))
    assert cost == pytest.approx(float((delta.double() ** 2).sum()), rel=1e-6)


def test_detector_train_mixes_both_kinds(mixed_list: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """`detector train` on a WordTree cfg reads class-only label lines (an error for other regions)."""
    data = tmp_path / "combine9k.data"
    data.write_text(f"classes=9418\ntrain={mixed_list}\nlabels=data/9k.labels\nbackup={tmp_path / 'backup'}\n")
    cfg = FIXTURES / "mini_9k" / "net.cfg"
    code = main(["detector", "train", str(data), str(cfg), "--workers", "0", "--max-batches", "3",
                 "--label-policy", "stop", "--darknet-log"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert [line.split(":")[0] for line in out.out.splitlines() if line[:1].isdigit()] == ["1", "2", "3"]
    assert (tmp_path / "backup" / "net_final.weights").exists()
