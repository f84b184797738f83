"""DDP over gloo/loopback: 2 processes give the weights 1 process gives on the same global batch."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from conftest import ROOT
from pydarknet.data.synthetic import make_shapes_dataset
from pydarknet.network import Darknet, build_network
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
max_batches=3
policy=constant

[convolutional]
batch_normalize=1
filters=8
size=3
stride=1
pad=1
activation=leaky

[maxpool]
size=2
stride=2

[convolutional]
batch_normalize=1
filters=16
size=3
stride=2
pad=1
activation=leaky

[maxpool]
size=2
stride=2

[convolutional]
size=1
stride=1
pad=1
filters=30
activation=linear

[region]
anchors = 1,1, 2,2, 3,3
bias_match=1
classes=5
coords=4
num=3
softmax=1
jitter=.2
rescore=1
object_scale=5
noobject_scale=1
class_scale=1
coord_scale=1
absolute=1
thresh = .6
random=0
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _data_file(tmp_path: Path, data: Path, name: str) -> Path:
    text = data.read_text().replace(str(data.parent / "backup"), str(tmp_path / name))
    path = tmp_path / f"{name}.data"
    path.write_text(text)
    return path


def train_one_and_two(tmp_path: Path, cfg_text: str) -> tuple[Darknet, Darknet, Darknet, str]:
    """`detector train` on the same 16 synthetic images, once in one process and once under torchrun with 2
    gloo processes: the networks at the start, after one process, after two, and the DDP run's stdout."""
    data = make_shapes_dataset(tmp_path / "shapes", n_train=16, n_valid=2, size=(64, 64), seed=3)
    cfg = tmp_path / "tiny.cfg"
    cfg.write_text(cfg_text)
    # torchrun runs the package directory as a script: put this checkout first on the path
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    common = ["-m", "pydarknet", "detector", "train", "--workers", "0", "--seed", "5"]
    single = [sys.executable, *common[:4], str(_data_file(tmp_path, data, "one")), str(cfg), *common[4:]]
    ddp = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr",
           "127.0.0.1", "--master_port", str(_free_port()), *common[1:4],
           str(_data_file(tmp_path, data, "two")), str(cfg), *common[4:]]
    for cmd in (single, ddp):
        run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr[-2000:]

    torch.manual_seed(5)  # the initial weights both runs started from (training seeds torch with --seed)
    start, one, two = build_network(cfg), build_network(cfg), build_network(cfg)
    load_weights(one, tmp_path / "one" / "tiny_final.weights")
    load_weights(two, tmp_path / "two" / "tiny_final.weights")
    return start, one, two, run.stdout


def assert_same_training(start: Darknet, one: Darknet, two: Darknet) -> int:
    """The two runs moved every tensor alike; returns how many tensors training changed."""
    assert one.seen == two.seen == 3 * 4
    changed = 0
    for name, a in one.state_dict().items():
        b, s = two.state_dict()[name].numpy(), start.state_dict()[name].numpy()
        if name == "_seen" or np.array_equal(a.numpy(), s):
            continue
        changed += 1
        # Only the order of float additions differs (all-reduce of per-rank sums vs one sum), and
        # three steps amplify that rounding: the runs must agree to 0.1% of what training changed.
        moved = np.abs(a.numpy() - s).max()
        assert np.abs(a.numpy() - b).max() <= 1e-3 * moved, name
    return changed


def test_two_gloo_processes_equal_one(tmp_path):
    start, one, two, stdout = train_one_and_two(tmp_path, CFG)
    assert stdout.count("Saved ") == 1  # only rank 0 prints
    assert assert_same_training(start, one, two) > 0
