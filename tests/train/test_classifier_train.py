"""`classifier train`: Darknet's softmax gradient, its epoch checkpoints, learning a small synthetic set
through the CLI, resuming at the checkpoint's iteration, and `classifier valid`."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from pydarknet.cli.main import main
from pydarknet.network import build_network
from pydarknet.train.classifier import EpochCheckpoints
from pydarknet.train.trainer import Trainer

LABELS = ["square", "circle", "triangle"]  # test names must not contain these: tmp_path holds the test name

CFG = """[net]
batch=8
subdivisions=1
width=24
height=24
channels=3
momentum=0.9
decay=0.0005
learning_rate=0.02
max_batches=1000
policy=constant
min_crop=24
max_crop=30
hue=.05
saturation=1.5
exposure=1.5

[convolutional]
filters=8
size=3
stride=1
pad=1
activation=leaky

[maxpool]
size=2
stride=2

[convolutional]
filters=16
size=3
stride=1
pad=1
activation=leaky

[maxpool]
size=2
stride=2

[convolutional]
filters=3
size=1
stride=1
pad=1
activation=linear

[avgpool]

[softmax]
groups=1

[cost]
type=sse
"""


def make_set(root: Path, n: int = 30, seed: int = 0) -> Path:
    """n 28x28 PNGs named <label>_<i>.png: a filled square, circle or triangle on a dark background, in
    a colour whose dominant channel also follows the class; returns the .data file."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        label = LABELS[i % 3]
        img = np.full((28, 28, 3), rng.integers(0, 50, 3), np.uint8)
        colour = [int(c) for c in rng.integers(0, 100, 3)]
        colour[i % 3] = int(rng.integers(180, 256))
        r = int(rng.integers(8, 11))
        cx, cy = (int(v) for v in rng.integers(r + 2, 28 - r - 2, 2))
        if label == "square":
            cv2.rectangle(img, (cx - r, cy - r), (cx + r, cy + r), colour, -1)
        elif label == "circle":
            cv2.circle(img, (cx, cy), r, colour, -1)
        else:
            cv2.fillPoly(img, [np.array([[cx, cy - r], [cx - r, cy + r], [cx + r, cy + r]], np.int32)], colour)
        path = root / "imgs" / f"{label}_{i:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), img)
        paths.append(f"{path}\n")
    (root / "train.list").write_text("".join(paths))
    (root / "labels.txt").write_text("\n".join(LABELS) + "\n")
    data = root / "shapes.data"
    data.write_text(f"classes=3\ntrain={root / 'train.list'}\nvalid={root / 'train.list'}\n"
                    f"labels={root / 'labels.txt'}\nbackup={root / 'backup'}\ntop=2\n")
    (root / "tiny.cfg").write_text(CFG)
    return data


def test_softmax_gradient_reaches_the_logits_as_darknets(tmp_path: Path) -> None:
    """softmax_x_ent's delta (truth - p), doubled by the [cost] layer's own, is what backward_softmax_layer
    hands to the layer below: the gradient at the logits is 2 (p - truth), not softmax's Jacobian times it."""
    (tmp_path / "tiny.cfg").write_text(CFG)
    net = build_network(tmp_path / "tiny.cfg").train()
    outs = net.layer_outputs(torch.rand(4, 3, 24, 24))
    logits, probs = outs[net.output_index - 1], outs[net.output_index]
    logits.retain_grad()
    truth = torch.eye(3)[[0, 1, 2, 1]]
    (delta,), cost = Trainer(net)._deltas([probs], truth)
    probs.backward(-delta)
    p = probs.detach().numpy()
    np.testing.assert_allclose(logits.grad.flatten(1).numpy(), 2 * (p - truth.numpy()), rtol=1e-6, atol=1e-7)
    # Darknet prints the mean of the two layers' costs: softmax's cross-entropy and [cost]'s sum of squares.
    xent = float(-np.log(p[[0, 1, 2, 3], [0, 1, 2, 1]]).sum())
    sse = float(((truth.numpy() - p) ** 2).sum())
    assert cost == pytest.approx((xent + sse) / 2, rel=1e-5)


def test_epoch_checkpoint_schedule() -> None:
    names = EpochCheckpoints("tiny", images=30, seen=0)
    assert [names(i, 8 * i) for i in range(1, 5)] == [[], [], [], ["tiny_1.weights"]]  # seen 32 >= 30
    assert names(8, 64) == ["tiny_2.weights"] and names(9, 72) == []
    assert names(1000, 8000) == ["tiny_266.weights", "tiny.backup"]  # backup every 1000 updates
    assert EpochCheckpoints("tiny", 30, seen=304)(39, 312) == []  # resumed in epoch 10


def _iterations(stdout: str) -> list[tuple[int, float, float]]:
    """(iteration, epoch, loss) of Darknet's lines `i, epoch: loss, avg avg, ...`."""
    rows = []
    for line in stdout.splitlines():
        if line[:1].isdigit() and " avg, " in line:
            head, _, rest = line.partition(": ")
            i, epoch = head.split(", ")
            rows.append((int(i), float(epoch), float(rest.split(",")[0])))
    return rows


def test_cli_learns_then_resumes(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = make_set(tmp_path)
    cfg, backup = tmp_path / "tiny.cfg", tmp_path / "backup"
    assert main(["classifier", "train", str(data), str(cfg), "--workers", "0", "--max-batches", "40",
                 "--darknet-log"]) == 0
    rows = _iterations(capsys.readouterr().out)
    assert [r[0] for r in rows] == list(range(1, 41))
    assert rows[-1][1] == pytest.approx(320 / 30, abs=1e-3)  # epochs = seen / images listed
    first, last = np.mean([r[2] for r in rows[:8]]), np.mean([r[2] for r in rows[-8:]])
    assert last < 0.5 * first, (first, last)
    # <cfg>_<epoch>.weights at every epoch (seen 320 of 30 images: 10), <cfg>.weights at the end.
    assert sorted(p.name for p in backup.iterdir()) == sorted(
        ["tiny.weights", *(f"tiny_{e}.weights" for e in range(1, 11))])

    assert main(["classifier", "valid", str(data), str(cfg), str(backup / "tiny.weights")]) == 0
    last_line = capsys.readouterr().out.strip().splitlines()[-1]  # "29: top 1: x, top 2: y"
    top1 = float(last_line.split("top 1: ")[1].split(",")[0])
    assert top1 >= 0.8, last_line  # chance is 1/3

    # tiny_10.weights was written after update 38 (seen 304): resuming continues at 39 in epoch 10.
    assert main(["classifier", "train", str(data), str(cfg), str(backup / "tiny_10.weights"), "--workers", "0",
                 "--max-batches", "43", "--darknet-log"]) == 0
    rows = _iterations(capsys.readouterr().out)
    assert [r[0] for r in rows] == [39, 40, 41, 42, 43]
    assert rows[0][1] == pytest.approx(312 / 30, abs=1e-3)
    assert (backup / "tiny_11.weights").exists()  # seen 336 after update 42


def test_data_file_and_cfg_mismatch(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = make_set(tmp_path, n=3)
    data.write_text(data.read_text().replace("classes=3", "classes=4"))
    (tmp_path / "labels.txt").write_text("\n".join([*LABELS, "star"]) + "\n")
    assert main(["classifier", "train", str(data), str(tmp_path / "tiny.cfg"), "--workers", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("shapes.data:1: classes=4 but the network outputs 3 values") and "\n" not in err
