"""DDP for the [yolo] family: 2 gloo processes give the weights 1 process gives on the same global batch
(AlexeyAB's pipeline with mosaic, two [yolo] heads, route groups, an upsample, loss_scale)."""

from __future__ import annotations

from test_distributed import assert_same_training, train_one_and_two

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


def test_two_gloo_processes_equal_one_for_yolo(tmp_path):
    start, one, two, _ = train_one_and_two(tmp_path, CFG)
    assert assert_same_training(start, one, two) >= 10
