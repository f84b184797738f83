"""DDP for the [yolo] family: 2 gloo processes give the weights 1 process gives on the same global batch
(AlexeyAB's pipeline with mosaic, two [yolo] heads, route groups, an upsample, loss_scale)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import torch

from conftest import ROOT
from pydarknet.data.synthetic import make_shapes_dataset
from pydarknet.network import build_network
from pydarknet.weights import load_weights

CFG = """[net]
batch=4
subdivisions=2
width=64
height=64
channels=3
momentum=0.9
decay=0.0005
learning_rate=0.001
burn_in=2
max_batches=3
policy=steps
steps=2
scales=.5
mosaic=1
loss_scale=4

[convolutional]
batch_normalize=1
filters=8
size=3
stride=2
pad=1
activation=leaky

[convolutional]
batch_normalize=1
filters=16
size=3
stride=2
pad=1
activation=mish

[route]
layers=-1
groups=2
group_id=1

[convolutional]
batch_normalize=1
filters=8
size=3
stride=1
pad=1
activation=leaky

[route]
layers=-1,-3

[maxpool]
size=2
stride=2

[convolutional]
size=1
stride=1
pad=1
filters=30
activation=linear

[yolo]
mask=3,4,5
anchors=6,8, 12,10, 14,24, 28,20, 30,40, 50,52
classes=5
num=6
scale_x_y=1.05
iou_loss=ciou
iou_normalizer=0.07
iou_thresh=0.213
max=20

[route]
layers=-4

[upsample]
stride=2

[convolutional]
size=1
stride=1
pad=1
filters=30
activation=linear

[yolo]
mask=0,1,2
anchors=6,8, 12,10, 14,24, 28,20, 30,40, 50,52
classes=5
num=6
scale_x_y=1.05
iou_loss=ciou
iou_normalizer=0.07
iou_thresh=0.213
max=20
"""


def _data_file(tmp_path, data, name):  # noqa: ANN001, ANN202
    text = data.read_text().replace(str(data.parent / "backup"), str(tmp_path / name))
    path = tmp_path / f"{name}.data"
    path.write_text(text)
    return path


def test_two_gloo_processes_equal_one_for_yolo(tmp_path):
    from test_distributed import _free_port

    data = make_shapes_dataset(tmp_path / "shapes", n_train=16, n_valid=2, size=(64, 64), seed=3)
    cfg = tmp_path / "tiny.cfg"
    cfg.write_text(CFG)
    # torchrun runs the package directory as a script: put this checkout first on the path
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}
    common = ["-m", "pydarknet", "detector", "train", "--workers", "0", "--seed", "5"]
    single = [sys.executable, *common[:4], str(_data_file(tmp_path, data, "one")), str(cfg), *common[4:]]
    run = subprocess.run(single, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    ddp = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr",
           "127.0.0.1", "--master_port", str(_free_port()), *common[1:4],
           str(_data_file(tmp_path, data, "two")), str(cfg), *common[4:]]
    run = subprocess.run(ddp, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]

    torch.manual_seed(5)  # the initial weights both runs started from (training seeds torch with --seed)
    start, one, two = build_network(cfg), build_network(cfg), build_network(cfg)
    load_weights(one, tmp_path / "one" / "tiny_final.weights")
    load_weights(two, tmp_path / "two" / "tiny_final.weights")
    assert one.seen == two.seen == 3 * 4
    changed = 0
    for name, a in one.state_dict().items():
        b, s = two.state_dict()[name].numpy(), start.state_dict()[name].numpy()
        if name == "_seen" or np.array_equal(a.numpy(), s):
            continue
        changed += 1
        # only the order of float additions differs (all-reduce of per-rank sums vs one sum)
        moved = np.abs(a.numpy() - s).max()
        assert np.abs(a.numpy() - b).max() <= 1e-3 * moved, name
    assert changed >= 10
