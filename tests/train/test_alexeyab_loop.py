"""AlexeyAB's `detector train` around the step: checkpoint names, `random=` resizing, the chart, and the loop
wired to its data pipeline and the [yolo] delta."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from pydarknet.data.datafile import DataOptions
from pydarknet.errors import DarknetError
from pydarknet.heads.yolo import YoloHead
from pydarknet.train.chart import OFFSET, SIZE, TrainChart
from pydarknet.train.loop import (
    TrainOptions,
    alexeyab_multiscale_size,
    alexeyab_save_every,
    checkpoint_names,
    train_detector,
)


def test_alexeyab_checkpoint_names():
    assert checkpoint_names("yolov4", 100, "alexeyab") == ["yolov4_last.weights"]
    assert checkpoint_names("yolov4", 150, "alexeyab") == []
    assert checkpoint_names("yolov4", 1000, "alexeyab") == ["yolov4_1000.weights", "yolov4_last.weights"]
    assert checkpoint_names("yolov4", 200, "alexeyab", ema=True) == ["yolov4_last.weights", "yolov4_ema.weights"]
    assert checkpoint_names("y", 30, "alexeyab", every=10, last_every=5) == ["y_30.weights", "y_last.weights"]
    assert checkpoint_names("y", 30, "alexeyab", every=10, last_every=10) == ["y_30.weights"]  # no _last
    assert checkpoint_names("y", 100) == ["y.backup", "y_100.weights"]  # pjreddie's stay


def test_save_intervals_from_the_data_file(tmp_path: Path):
    options = DataOptions(tmp_path / "x.data")
    assert alexeyab_save_every(500500, options) == (10000, 100)
    assert alexeyab_save_every(6000, options) == (1000, 100)
    options.update(saveweights="500", savelast="50")
    assert alexeyab_save_every(6000, options) == (500, 50)
    options["savelast"], options.lines["savelast"] = "x", 3
    with pytest.raises(DarknetError, match="savelast=x must be a positive integer") as err:
        alexeyab_save_every(6000, options)
    assert err.value.line == 3


def test_random_resize_sizes_as_alexeyab_computes_them():
    rng = np.random.default_rng(0)
    sizes = {alexeyab_multiscale_size(rng, 416, 416, 1.0, 32, False, 0, 10000) for _ in range(2000)}
    # factor in [1/1.4, 1.4], size round(f*416/32 + 1)*32: 320..608; a factor below 1 never exceeds 416
    assert {w for w, _ in sizes} == set(range(320, 609, 32)) and all(w == h for w, h in sizes)
    assert alexeyab_multiscale_size(rng, 416, 416, 1.0, 32, True, 0, 10000) == (608, 608)  # first resize
    assert alexeyab_multiscale_size(rng, 416, 416, 1.0, 32, False, 9901, 10000) == (608, 608)  # last 100
    assert alexeyab_multiscale_size(rng, 416, 416, 1.2, 32, True, 0, 10000) == (544, 544)  # round(16.6)
    wide = {alexeyab_multiscale_size(rng, 512, 256, 1.0, 64, False, 0, 10000) for _ in range(500)}
    assert all(w % 64 == 0 and h % 64 == 0 and 448 <= w <= 768 and 256 <= h <= 448 for w, h in wide)


def test_chart_plots_loss_and_map_and_saves_every_hundred(tmp_path: Path):
    chart = TrainChart(max_batches=1000, max_loss=20.0)
    chart.add(500, 10.0)  # x = 60 + 940*.5, y = 940*(1 - 10/20)
    b, g, r = chart.image[470, OFFSET + 470]
    assert (b, g, r) == (255, 0, 0)  # CV_RGB(0, 0, 255): blue
    chart.add(500, 5.0, map_value=0.5)
    chart.add(600, 5.0, map_value=0.75)
    line = chart.image[int(940 * 0.375) - 1:int(940 * 0.375) + 2, OFFSET + 517]  # halfway along the mAP line
    assert (line[:, 2] > 200).any() and (line[:, 0] < 100).any()  # red
    assert [chart.due(i) for i in (1, 99, 100, 101, 199, 200, 999)] == [False, False, True, False, False, True, True]
    chart.save(tmp_path / "out" / "chart.png")
    png = cv2.imread(str(tmp_path / "out" / "chart.png"))
    assert png.shape == (SIZE, SIZE, 3) and (png[705, OFFSET + 564] == (255, 0, 0)).all()  # loss 5 at 600


CFG = """[net]
batch=4
subdivisions=2
width=64
height=48
channels=3
learning_rate=0.001
burn_in=2
max_batches=6
policy=sgdr
mosaic=1
hue=.1
saturation=1.5
exposure=1.5
ema_alpha=0.9

[convolutional]
filters=8
size=3
stride=2
pad=1
activation=leaky

[convolutional]
filters=21
size=1
stride=1
activation=linear

[yolo]
mask=0,1,2
anchors=8,10, 16,20, 30,28
num=3
classes=2
jitter=.3
resize=1.5
random=1
max=40
"""


@pytest.fixture()
def yolo_sizes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """The input sizes the [yolo] layer sees."""
    sizes: list[tuple[int, int]] = []
    forward = YoloHead.forward

    def recording(self: YoloHead, x: torch.Tensor) -> torch.Tensor:
        sizes.append((x.shape[3], x.shape[2]))
        return forward(self, x)

    monkeypatch.setattr(YoloHead, "forward", recording)
    return sizes


def test_alexeyab_loop_uses_its_pipeline_names_and_resizing(tmp_path: Path, yolo_sizes):
    from pydarknet.data.synthetic import make_shapes_dataset

    data = make_shapes_dataset(tmp_path / "set", n_train=6, n_valid=1, size=(64, 64), classes=("circle", "square"))
    data.write_text(data.read_text() + "savelast=2\nsaveweights=4\n")
    cfg = tmp_path / "tiny.cfg"
    cfg.write_text(CFG)
    final = train_detector(data, cfg, opts=TrainOptions(workers=0, progress=False))
    backup = final.parent
    assert final.name == "tiny_final.weights"
    names = sorted(p.name for p in backup.iterdir())
    assert names == ["chart_tiny.png", "tiny_4.weights", "tiny_ema.weights", "tiny_final.weights",
                     "tiny_last.weights"]
    # random=1: the first resize is the largest, round(1.4*64/32 + 1)*32 = 128 x round(1.4*48/32 + 1)*32 = 96
    assert yolo_sizes[0] == (128 // 2, 96 // 2)  # the [yolo] sees the stride-2 conv's output


def test_map_schedule_of_detector_train_map():
    from pydarknet.train.map_schedule import MapSchedule

    # 5000 images, 64 per iteration: every 4*5000//64 = 312 iterations, not before burn_in=1000
    schedule = MapSchedule(train_images=5000, full_batch=64, burn_in=1000, max_batches=6000)
    assert schedule.next_at() == 1000 and not schedule.due(999) and schedule.due(1000)
    assert schedule.record(1000, 0.30, "yolov4") == ["yolov4_best.weights"]
    assert schedule.next_at() == 1312
    assert schedule.record(1312, 0.25, "yolov4") == []
    assert schedule.record(1624, 0.30, "yolov4") == ["yolov4_best.weights"]  # ties refresh it
    small = MapSchedule(train_images=100, full_batch=64, burn_in=0, max_batches=250, start=20)
    assert small.next_at() == 120  # at least every 100 iterations
    assert small.due(250) and not small.due(119)  # and at the last iteration
