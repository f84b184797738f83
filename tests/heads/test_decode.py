"""Region output -> boxes/probs -> do_nms_sort -> printed lines, against Darknet's dumps and CLI stdout.

Infer dirs without a stored region output (`infer_person_*`) get it from our network forward instead,
so their numbers carry the network's float32 differences (~1e-6): they are compared with tolerances,
the printed lines still exactly.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import torch

import pydarknet
from conftest import cfg_for, infer_dirs
from pydarknet.boxes import nms_sort
from pydarknet.detection import Candidates, darknet_lines
from pydarknet.heads import Frame
from pydarknet.heads.region import correct_region_boxes
from pydarknet.image import letterbox_geometry
from pydarknet.names import read_names

NETS = ["mini_voc", "mini_tiny", "mini_9k"]
NAMES = {"mini_voc": "data/voc.names", "mini_tiny": "data/voc.names", "mini_9k": "data/9k.names"}
# Boxes: Darknet's -Ofast build divides the letterbox ratios with RCPPS + one Newton step (gcc does that for
# vectorized float division), e.g. 32.f/32 = 0.99999994: up to 2 ulp off a correctly rounded result.
BOX_RTOL = 4e-7


@cache
def case(infer_dir: Path):
    """(region head, meta, region output (C, H, W), whether the output is Darknet's own)."""
    net = pydarknet.load(cfg_for(infer_dir), infer_dir.parent / "net.weights")
    meta = json.loads((infer_dir / "layers.json").read_text())
    npz = infer_dir / "outputs.npz"
    head = net.heads[-1][1]
    if npz.exists():
        stored = np.load(npz)
        last = sorted(k for k in stored.files if k.startswith("layer_"))[-1]
        return head, meta, torch.from_numpy(stored[last]), True
    with torch.no_grad():
        out = net(torch.from_numpy(np.load(infer_dir / "input.npy"))[None])[0]
    return head, meta, out, False


def frame(meta: dict) -> Frame:
    return Frame(meta["image_w"], meta["image_h"], meta["net_w"], meta["net_h"], letterbox=True)


def decode(infer_dir: Path, thresh: float, hier_thresh: float = 0.5, class_map: np.ndarray | None = None):
    head, meta, out, _ = case(infer_dir)
    return head.candidates(out, frame(meta), thresh, hier_thresh, class_map)


def dense_probs(c: Candidates, classes: int) -> np.ndarray:
    """The (boxes x classes) prob matrix Darknet fills, from the candidates."""
    probs = np.zeros((c.count, classes), np.float32)
    probs[c.index[c.box], c.cls] = c.prob
    return probs


def dirs(stored_only: bool = False) -> list:
    found = [d for d in infer_dirs(NETS) if not stored_only or (d / "outputs.npz").exists()]
    return [pytest.param(d, id=f"{d.parent.name}/{d.name}") for d in found]


@pytest.mark.parametrize("infer_dir", dirs())
def test_boxes_and_probs_match_dets_pre_nms(infer_dir):
    head, meta, out, exact = case(infer_dir)
    ref = np.load(infer_dir / "dets_pre_nms.npz")
    c = decode(infer_dir, 0.25)
    # Every box (also those whose objectness is not over thresh, which the candidates leave out).
    every, scale, _ = head.decode_dense(out[None])
    boxes = correct_region_boxes(every[0].numpy(), frame(meta))
    objectness = np.where(scale[0].numpy() > np.float32(0.25), scale[0].numpy(), 0)
    assert c.index.tolist() == np.flatnonzero(objectness).tolist()
    np.testing.assert_array_equal(c.boxes, boxes[c.index])
    probs = dense_probs(c, head.classes)
    want = ref["boxes_xywh_obj"]
    if exact:
        np.testing.assert_allclose(boxes, want[:, :4], rtol=BOX_RTOL, atol=0)
        np.testing.assert_array_equal(objectness, want[:, 4])
        np.testing.assert_array_equal(probs, ref["probs"])
    else:
        np.testing.assert_allclose(boxes, want[:, :4], rtol=1e-4, atol=0)
        np.testing.assert_allclose(objectness, want[:, 4], atol=1e-5, rtol=0)
        differ = (probs != 0) != (ref["probs"] != 0)
        near = np.abs(np.maximum(probs, ref["probs"]) - 0.25) < 1e-4
        assert not (differ & ~near).any()
        np.testing.assert_allclose(probs[~differ], ref["probs"][~differ], atol=1e-5, rtol=0)


def tree_buffer(head, out: torch.Tensor) -> np.ndarray:  # noqa: ANN001
    """The whole (C, H, W) region output as get_network_boxes leaves it for a tree."""
    p, (_, h, w) = head.params, out.shape
    entries = head.tree_entries(out, np.arange(p.n * h * w))  # (boxes, entries)
    return entries.reshape(p.n, h * w, -1).transpose(0, 2, 1).reshape(-1, h, w)


@pytest.mark.parametrize("infer_dir", [d for d in dirs(True) if d.values[0].parent.name == "mini_9k"])
def test_tree_output_is_darknet_buffer_after_get_network_boxes(infer_dir):
    head, _, out, _ = case(infer_dir)
    want = np.load(infer_dir / "outputs.npz")["region_after_get_network_boxes"]
    np.testing.assert_array_equal(tree_buffer(head, out), want)


@pytest.mark.parametrize("infer_dir", dirs())
@pytest.mark.parametrize(("thresh", "stdout"),
                         [(0.25, "cli_stdout_thresh0.25.txt"), (0.5, "cli_stdout_default.txt")])
def test_printed_lines_equal_darknet_cli(infer_dir, thresh, stdout):
    res = nms_sort(decode(infer_dir, thresh), 0.45)
    names = read_names(NAMES[infer_dir.parent.name])
    expected = (infer_dir / stdout).read_text().splitlines()[1:]  # line 0: "...: Predicted in X seconds."
    assert darknet_lines(res.detections(), names) == expected


@pytest.mark.parametrize("infer_dir", dirs())
def test_detections_equal_dets_post_nms(infer_dir):
    _, _, _, exact = case(infer_dir)
    res = nms_sort(decode(infer_dir, 0.25), 0.45)
    dets = res.detections()
    post = json.loads((infer_dir / "detections.json").read_text())["dets_post_nms"]
    assert [d.index for d in dets] == [p["index"] for p in post]
    # `pos` is the place in Darknet's whole array: the candidates are its front, in its order.
    assert [res.index[p["pos"]].item() for p in post] == [p["index"] for p in post]
    names = read_names(NAMES[infer_dir.parent.name])
    for d, p in zip(dets, post, strict=True):
        assert d.classes == [q["class"] for q in p["probs"]]
        assert d.label(names) == ", ".join(q["name"] for q in p["probs"])
        # detections.json prints floats with %.9g: exact float32 round trip.
        want = np.float32([p["x"], p["y"], p["w"], p["h"]])
        probs = np.float32([q["prob"] for q in p["probs"]])
        if exact:
            np.testing.assert_allclose(np.float32(d.bbox), want, rtol=BOX_RTOL, atol=0)
            np.testing.assert_array_equal(np.float32(d.probs), probs)
            assert np.float32(d.objectness) == np.float32(p["objectness"])
        else:
            np.testing.assert_allclose(np.float32(d.bbox), want, rtol=1e-4, atol=0)
            np.testing.assert_allclose(np.float32(d.probs), probs, atol=1e-5, rtol=0)


def test_letterbox_size_and_pixel_boxes():
    assert letterbox_geometry(768, 576, 96, 96) == (96, 72)
    assert letterbox_geometry(768, 576, 48, 32) == (42, 32)
    assert letterbox_geometry(773, 512, 128, 96) == (128, 84)
    boxes = np.float32([[0.5, 0.5, 0.25, 0.5]])
    rel = correct_region_boxes(boxes, Frame(768, 576, 96, 96, letterbox=True))
    np.testing.assert_allclose(rel, np.float32([[0.5, 0.5, 0.25, 0.5 * 96 / 72]]), rtol=1.3e-6)
    px = correct_region_boxes(boxes, Frame(768, 576, 96, 96, letterbox=True, relative=False))
    np.testing.assert_allclose(px, rel * np.float32([768, 576, 768, 576]), rtol=1.3e-6)
    assert np.array_equal(correct_region_boxes(boxes, Frame(768, 576, 96, 96, letterbox=False)), boxes)


def test_tree_with_map_gives_mapped_class_probs():
    infer_dir = infer_dirs(["mini_9k"])[0]
    head, _, out, _ = case(infer_dir)
    c = decode(infer_dir, 0.25, class_map=head.class_map)
    absolute = tree_buffer(head, out).reshape(head.params.n, 5 + head.classes, -1)
    scale = absolute[:, 4].reshape(-1, 1)
    want = scale * absolute[:, 5 + head.class_map].transpose(0, 2, 1).reshape(-1, 80)
    np.testing.assert_array_equal(dense_probs(c, 80), np.where(want > np.float32(0.25), want, 0))
