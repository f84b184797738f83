"""Nothing is lost: SIGKILL during a checkpoint write or a step leaves every checkpoint complete,
training resumes at the checkpoint's iteration, and a NaN loss stops with one line, checkpoints intact."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pydarknet.data.synthetic import make_shapes_dataset
from pydarknet.network import build_network
from pydarknet.weights import load_weights

CFG = """[net]
batch=4
subdivisions=1
width=32
height=32
channels=3
momentum=0.9
decay=0.0005
learning_rate={lr}
max_batches=100000
policy=constant

[convolutional]
batch_normalize=1
filters=4
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
filters=20
activation=linear

[region]
anchors = 1,1, 2,2
classes=5
coords=4
num=2
softmax=1
jitter=.2
rescore=1
object_scale=5
noobject_scale=1
class_scale=1
coord_scale=1
thresh=.6
"""

# Runs training with fsync made to hang once the 100-batch checkpoints exist, so that a kill lands
# while the 200-batch checkpoint is being written (its temporary file complete, not yet renamed).
HANG_IN_WRITE = """
import os, sys, time
import pydarknet.fileio as w
real_fsync = os.fsync
def fsync(fd):
    if os.path.exists(sys.argv[-1]):
        print("WRITING", flush=True)
        time.sleep(600)
    real_fsync(fd)
w.os.fsync = fsync
from pydarknet.cli.main import main
sys.exit(main(sys.argv[1:-1]))
"""


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture()
def setup(tmp_path):
    data = make_shapes_dataset(tmp_path / "set", n_train=12, n_valid=2, size=(32, 32), seed=2)
    cfg = tmp_path / "tiny.cfg"
    cfg.write_text(CFG.format(lr=0.001))
    return data, cfg, tmp_path / "set" / "backup"


def train_cmd(data, cfg, weights=None, *extra):
    start = [str(weights)] if weights else []
    return [sys.executable, "-m", "pydarknet", "detector", "train", str(data), str(cfg), *start, "--workers", "0",
            *extra]


def assert_all_complete(backup: Path, cfg: Path) -> None:
    for f in backup.iterdir():
        if f.name.startswith("."):  # a temporary file a kill left behind; never a checkpoint name
            continue
        load_weights(build_network(cfg), f)  # raises unless the file is exactly complete


def test_kill_during_checkpoint_write_then_resume(setup):
    data, cfg, backup = setup
    marker = backup / "tiny_100.weights"
    proc = subprocess.Popen([sys.executable, "-c", HANG_IN_WRITE, *train_cmd(data, cfg)[3:], str(marker)],
                            stdout=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:
            if line.startswith("WRITING"):
                break
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    # The kill hit the write of the 200-batch checkpoint: its name does not exist, the previous is intact.
    assert not (backup / "tiny_200.weights").exists()
    assert sha(backup / "tiny.backup") == sha(marker)
    assert_all_complete(backup, cfg)

    resumed = subprocess.run(train_cmd(data, cfg, str(backup / "tiny.backup"), "--max-batches", "103",
                                       "--darknet-log"), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    iterations = [int(line.split(":")[0]) for line in resumed.stdout.splitlines() if line[:1].isdigit()]
    assert iterations == [101, 102, 103]
    assert not list(backup.glob(".*.tmp")), "stale temporary files are cleaned up on start"


def test_kill_during_step_leaves_checkpoints_intact(setup):
    data, cfg, backup = setup
    proc = subprocess.Popen(train_cmd(data, cfg), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 240
        while not (backup / "tiny_100.weights").exists() and time.time() < deadline:
            time.sleep(0.2)
        time.sleep(0.5)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(30)
    assert (backup / "tiny_100.weights").exists()
    assert_all_complete(backup, cfg)


def test_nan_loss_stops_with_one_line_and_keeps_checkpoint(setup):
    data, cfg, backup = setup
    assert subprocess.run(train_cmd(data, cfg, None, "--max-batches", "100"), capture_output=True,
                          timeout=300).returncode == 0
    before = sha(backup / "tiny.backup")
    wild = cfg.with_name("wild.cfg")
    wild.write_text(CFG.format(lr=1e30))
    run = subprocess.run(train_cmd(data, wild, str(backup / "tiny.backup"), "--max-batches", "150"),
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "loss is" in lines[0] and "Traceback" not in run.stderr
    assert sha(backup / "tiny.backup") == before
