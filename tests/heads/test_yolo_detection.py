"""[yolo] detection on AlexeyAB's Darknet's numbers (tests/fixtures/yolo, its README's tolerances), on the
default inference path and the exact one: the network input from the image (plain resize or letterbox),
`get_network_boxes` before NMS (array positions, boxes, objectness, multi-label probs) and after the cfg's
NMS (Darknet's final array order), for every inference case of every fixture net."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import torch

import pydarknet
from conftest import YOLO_FIXTURES, cfg_for, yolo_infer_dirs
from pydarknet.detection import Candidates, Detection
from pydarknet.detector import Detector
from pydarknet.heads import Frame
from pydarknet.heads.yolo import YoloHead
from pydarknet.image import load_image

# README: boxes within 1e-4 x (1 + |ref|), probs (and objectness) within 1e-4; a class whose prob lies within
# 2e-3 of the threshold may be present on one side only.
BOX_TOL, PROB_TOL, EDGE = 1e-4, 1e-4, 2e-3
THRESH, NMS = 0.25, 0.45  # what the fixtures ran
# How pydarknet.load builds each path.
PATHS = {"default": {}, "exact": {"exact": True}}


@cache
def network(cfg: Path, path: str) -> pydarknet.Darknet:
    return pydarknet.load(cfg, cfg.parent / "net.weights", **PATHS[path])


def meta(infer_dir: Path) -> dict:
    return json.loads((infer_dir / "layers.json").read_text())


def image_path(infer_dir: Path) -> Path:
    return YOLO_FIXTURES / "data" / f"{infer_dir.name.split('_')[1]}.png"


def decode(infer_dir: Path, path: str, nms: float) -> Candidates:
    m = meta(infer_dir)
    detector = Detector(network(cfg_for(infer_dir), path), thresh=THRESH, nms=nms,
                        letterbox=True if m["letterbox"] else None)
    (outputs,) = detector.forward(np.load(infer_dir / "input.npy")[None])
    return detector.decode(outputs, Frame(m["image_w"], m["image_h"], m["net_w"], m["net_h"], bool(m["letterbox"])))


def assert_matches(ours: dict[int, Detection], ref: list[dict], what: str) -> None:
    """Darknet's entries (position -> box, objectness, probs) against ours."""
    t = np.float32(THRESH)
    assert set(ours) <= {e["pos"] for e in ref} | {p for p, d in ours.items() if max(d.probs) < t + EDGE}, what
    for e in ref:
        probs = dict(e["probs"])
        d = ours.get(e["pos"])
        if d is None:
            assert max(probs.values()) < t + EDGE, f"{what}: position {e['pos']} missing"
            continue
        ref_box = np.array([e["x"], e["y"], e["w"], e["h"]])
        assert (np.abs(np.array(d.bbox) - ref_box) / (1 + np.abs(ref_box))).max() <= BOX_TOL, (what, e["pos"])
        assert abs(d.objectness - e["objectness"]) <= PROB_TOL, (what, e["pos"])
        mine = dict(zip(d.classes, d.probs))
        for cls in set(mine) | set(probs):
            if cls in mine and cls in probs:
                assert abs(mine[cls] - probs[cls]) <= PROB_TOL, (what, e["pos"], cls)
            else:
                assert mine.get(cls, probs.get(cls)) < t + EDGE, (what, e["pos"], cls)


@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("infer_dir", yolo_infer_dirs(), ids=lambda d: f"{d.parent.name}/{d.name}")
def test_detections_before_and_after_nms(infer_dir, path):
    ref = json.loads((infer_dir / "detections.json").read_text())
    before = decode(infer_dir, path, 0)
    assert before.count == before.index.size and np.array_equal(before.index, np.arange(before.count))
    assert (before.objectness > np.float32(THRESH)).all()
    assert_matches({d.index: d for d in before.detections()}, ref["dets_pre_nms"], f"{infer_dir} before NMS")
    after = decode(infer_dir, path, NMS)
    # After NMS a detection's position is its row: Darknet's final array order.
    rows = np.unique(after.box)
    dets = after.detections()
    assert_matches(dict(zip(rows.tolist(), dets)), ref["dets_post_nms"], f"{infer_dir} after NMS")


def test_fixtures_cover_every_nms_kind_and_both_geometries():
    dirs = yolo_infer_dirs()
    kinds = {net.layers[i].params.nms_kind for d in dirs for net in [network(cfg_for(d), "exact")]
             for i, _ in net.heads}
    assert kinds == {"default", "greedynms", "diounms"}
    assert {meta(d)["letterbox"] for d in dirs} == {0, 1}
    assert sum(len(json.loads((d / "detections.json").read_text())["dets_post_nms"]) for d in dirs) > 200


@pytest.mark.parametrize("infer_dir", yolo_infer_dirs(["mini_v3", "mini_v4tiny"]),
                         ids=lambda d: f"{d.parent.name}/{d.name}")
def test_network_input_from_the_image(infer_dir):
    """The PNG of Darknet's decoded pixels -> exactly Darknet's network input (resize, or -letter_box)."""
    m = meta(infer_dir)
    detector = Detector(network(cfg_for(infer_dir), "exact"), letterbox=True if m["letterbox"] else None)
    assert detector.letterbox == bool(m["letterbox"])
    assert np.array_equal(detector.network_input(load_image(image_path(infer_dir))), np.load(infer_dir / "input.npy"))


def test_api_detect_equals_the_fixture():
    """`net.detect` on the image file: Darknet's post-NMS detections (the API's order is the array's)."""
    infer_dir = YOLO_FIXTURES / "mini_v4tiny" / "infer_person"
    dets = network(cfg_for(infer_dir), "default").detect(image_path(infer_dir), thresh=THRESH, nms=NMS)
    ref = json.loads((infer_dir / "detections.json").read_text())["dets_post_nms"]
    assert_matches(dict(zip((e["pos"] for e in ref), dets)), ref, "net.detect")
    assert len(dets) == len(ref)


def test_exact_path_folds_batchnorm_like_darknet():
    """AlexeyAB's detector folds BatchNorm into the conv in double before inference; the exact network's
    eval forward does the same, its training forward does not (Darknet trains unfolded)."""
    net = network(cfg_for(YOLO_FIXTURES / "mini_v3" / "infer_dog"), "exact")
    conv = net.layers[0]
    x = torch.from_numpy(np.load(YOLO_FIXTURES / "mini_v3" / "infer_dog" / "input.npy"))[None]
    bn = conv.bn
    std = torch.sqrt(bn.running_var.double() + 1e-5)
    w = (conv.conv.weight.double() * (bn.weight.double() / std).view(-1, 1, 1, 1)).float()
    b = (bn.bias.double() - bn.weight.double() * bn.running_mean.double() / std).float()
    with torch.no_grad():
        folded = conv.act(torch.nn.functional.conv2d(x, w, b, conv.conv.stride, conv.conv.padding))
        assert torch.equal(conv(x), folded)
        unfolded = conv.act(bn(conv.conv(x)))
    assert not torch.equal(folded, unfolded) and torch.allclose(folded, unfolded, atol=1e-5)


def test_heads_follow_alexeyab_per_command():
    net = network(cfg_for(YOLO_FIXTURES / "mini_v7" / "infer_dog"), "exact")
    head = net.heads[-1][1]
    assert isinstance(head, YoloHead) and head.params.nms_kind == "diounms"
    assert [head.letterbox(c) for c in ("test", "valid", "recall", "demo")] == [False] * 4
    head.net_letter_box = True  # [net] letter_box=1
    try:
        assert [head.letterbox(c) for c in ("test", "valid", "recall", "demo")] == [True, True, False, True]
    finally:
        head.net_letter_box = False
    assert head.nms("recall").__name__ == "nms_obj"
    nms = head.nms("test")  # box_diounms with the float beta_nms
    assert nms.func.__name__ == "nms_diou_sort" and nms.keywords == {"beta": float(np.float32(0.6))}
    assert head.demo_frames(3) == 1
    with pytest.raises(ValueError, match="net_size"):  # the delta (heads/yolo_loss.py) needs the input size
        head.delta(torch.zeros(1, 3, 2, 2), torch.zeros(1, 1, 5), 0)
