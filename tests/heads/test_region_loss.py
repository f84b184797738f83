"""Region training delta, cost and stats equal Darknet's (GPU semantics) on the fixtures and by hand."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from pydarknet.errors import DarknetError
from pydarknet.heads.region import gpu_backward_scale
from pydarknet.heads.region_loss import region_delta
from pydarknet.wordtree import Tree, read_map, read_tree

FIXTURES = Path(__file__).parents[1] / "fixtures"
ROOT = Path(__file__).parents[2]  # the cfgs name data/9k.tree etc. relative to the repository root
REGION_LAYER = {"mini_voc": 17, "mini_tiny": 10, "mini_9k": 12}
RUNS = ["train_gpusem", "train_gpusem_seen12800"]
LINE = "Region Avg IOU: {:f}, Class: {:f}, Obj: {:f}, No Obj: {:f}, Avg Recall: {:f},  count: {:d}"


def _region_options(cfg: Path) -> dict[str, str]:
    section = cfg.read_text().split("[region]")[1].split("\n[")[0]
    pairs = (line.split("=", 1) for line in section.splitlines() if "=" in line)
    return {k.strip(): v.strip() for k, v in pairs}


def _fixture_case(net: str, run: str) -> tuple[torch.Tensor, torch.Tensor, dict, dict]:
    opts = _region_options(FIXTURES / net / "net.cfg")
    meta = json.loads((FIXTURES / net / run / "cost.json").read_text())
    # Only train_gpusem stores the input, truth and (for mini_9k) the outputs: the seen12800 run has the
    # same weights and input, so its forward pass is identical (BN uses batch statistics either way).
    outputs = np.load(FIXTURES / net / "train_gpusem" / "train_outputs.npz")
    output = torch.from_numpy(outputs[f"layer_{REGION_LAYER[net]:03d}"])
    truth = torch.from_numpy(np.load(FIXTURES / net / "train_gpusem" / "train_truth.npy"))
    kwargs = dict(
        biases=torch.tensor([float(v) for v in opts["anchors"].split(",")]), n=int(opts["num"]),
        classes=int(opts["classes"]), coords=int(opts["coords"]), seen=meta["seen_during_forward"],
        thresh=float(opts["thresh"]), rescore=bool(int(opts["rescore"])),
        bias_match=bool(int(opts["bias_match"])), softmax=bool(int(opts["softmax"])),
        tree=read_tree(ROOT / opts["tree"]) if "tree" in opts else None,
        map=read_map(ROOT / opts["map"]) if "map" in opts else None,
        coord_scale=float(opts["coord_scale"]), object_scale=float(opts["object_scale"]),
        noobject_scale=float(opts["noobject_scale"]), class_scale=float(opts["class_scale"]))
    return output, truth, kwargs, meta


@pytest.mark.parametrize("net", list(REGION_LAYER))
@pytest.mark.parametrize("run", RUNS)
def test_region_delta_matches_darknet(net, run):
    output, truth, kwargs, meta = _fixture_case(net, run)
    delta, cost, stats = region_delta(output, truth, **kwargs)
    ref = np.load(FIXTURES / net / run / "region_delta.npy")
    # Measured: bit-identical, except mini_9k's seen<12800 prior h entries (1 ulp: its -Ofast build gets
    # log(ratio) = -2^-23 where the ratio is exactly 1). No atol: a zero in the reference must be a zero here.
    np.testing.assert_allclose(delta.numpy(), ref, rtol=1e-4, atol=0)
    np.testing.assert_allclose(cost, meta["region_cost"], rtol=1e-4)  # Darknet sums float32 squares
    line = (FIXTURES / net / run / "darknet_stdout.txt").read_text().strip()
    keys = ("Avg IOU", "Class", "Obj", "No Obj", "Avg Recall", "count")
    assert LINE.format(*(stats[k] for k in keys)) == line


@pytest.mark.parametrize("net", ["mini_voc", "mini_tiny"])
@pytest.mark.parametrize("run", RUNS)
def test_gpu_backward_scale_gives_delta_into_last_conv(net, run):
    output, truth, kwargs, _ = _fixture_case(net, run)
    n, coords, classes = kwargs["n"], kwargs["coords"], kwargs["classes"]
    ref_delta = np.load(FIXTURES / net / run / "region_delta.npy")
    into_conv = np.load(FIXTURES / net / run / "delta_into_last_conv.npy")
    # What the file holds, literally: the region delta times the logistic derivative on x, y, obj (the
    # -Ofast build evaluates `delta *= (1-y)*y` as (delta*y)*(1-y)); the linear conv's gradient is 1.
    y = output.numpy().reshape(2, n, coords + 1 + classes, -1)
    d, into = ref_delta.reshape(y.shape), into_conv.reshape(y.shape)
    logistic, rest = [0, 1, coords], [e for e in range(coords + 1 + classes) if e not in (0, 1, coords)]
    np.testing.assert_array_equal(into[:, :, logistic], (d[:, :, logistic] * y[:, :, logistic])
                                  * (1 - y[:, :, logistic]))
    np.testing.assert_array_equal(into[:, :, rest], d[:, :, rest])

    delta, _, _ = region_delta(output, truth, **kwargs)
    ours = (delta * gpu_backward_scale(output, n, coords, classes)).numpy()
    # One scale factor (1-y)*y cannot reproduce that multiplication order: at most 1 ulp apart.
    np.testing.assert_allclose(ours, into_conv, rtol=1e-6, atol=0)


def test_gpu_backward_scale_background_and_masks():
    y = torch.rand(1, 2 * (6 + 1 + 3), 2, 2)
    scale = gpu_backward_scale(y, 2, 6, 3, background=True).reshape(1, 2, 10, 4)
    v = y.reshape(1, 2, 10, 4)
    logistic = [0, 1, 4, 5]  # x, y and the mask entries; obj (entry 6) is raw with background
    assert torch.equal(scale[:, :, logistic], (1 - v[:, :, logistic]) * v[:, :, logistic])
    assert torch.equal(scale[:, :, [2, 3, 6, 7, 8, 9]], torch.ones(1, 2, 6, 4))


def _small_tree(tmp_path: Path) -> Tree:
    # 0 and 1 are roots (group 0); 2, 3 are children of 0 (group 1); 4 is the child of 1 (group 2).
    path = tmp_path / "small.tree"
    path.write_text("a -1\nb -1\nc 0\nd 0\ne 1\n")
    return read_tree(path)


def test_classification_only_truth_by_hand(tmp_path):
    tree = _small_tree(tmp_path)
    n, classes, coords = 2, 5, 4
    out = np.full((2, n, coords + 1 + classes, 2), 0.3, np.float32)  # (batch, anchor, entry, cell), 2x1 grid
    out[:, :, 4] = [[1.0, 0.25], [0.75, 1.0]]  # objectness per anchor, cell
    out[:, 0, 5:, 0] = [0.5, 0.5, 0.25, 0.75, 1]  # P(3) = p3*p0 = .375, times obj 1 -> .375
    out[:, 0, 5:, 1] = [0.75, 0.25, 0.5, 0.5, 1]  # .375 * .25
    out[:, 1, 5:, 0] = [0.25, 0.75, 0.5, 0.5, 1]  # .125 * .75
    out[:, 1, 5:, 1] = [0.5, 0.5, 0.25, 0.75, 1]  # .375: ties with anchor 0 cell 0, the first wins
    truth = np.zeros((2, 30, 5), np.float32)
    # Image 0: a normal box first (ignored: the image trains only the class), then two class-only labels
    # (only the first is used). Image 1 has no truths.
    truth[0, :3] = [[0.25, 0.5, 0.5, 0.5, 4], [200000, 200000, 0.1, 0.1, 3], [200000, 200000, 0.1, 0.1, 4]]
    delta, cost, stats = region_delta(
        torch.from_numpy(out.reshape(2, -1, 1, 2)), torch.from_numpy(truth), torch.tensor([1.0, 1, 2, 2]),
        n, classes, coords, seen=20000, thresh=0.6, rescore=True, bias_match=True, softmax=True, tree=tree,
        map=np.full(5, 4),  # not applied to class-only labels
        coord_scale=1, object_scale=5, noobject_scale=0.5, class_scale=2)

    expected = np.zeros_like(out)
    expected[:, :, 4] = -0.5 * out[:, :, 4]  # noobject_scale * (0 - obj) everywhere, in both images
    expected[0, 0, 4, 0] = 0  # ... except the chosen slot's
    expected[0, 0, 5:, 0] = [2 * (1 - 0.5), 2 * (0 - 0.5), 2 * (0 - 0.25), 2 * (1 - 0.75), 0]  # path 3 -> 0
    np.testing.assert_array_equal(delta.numpy().reshape(out.shape), expected)
    assert cost == pytest.approx(float((expected.astype(np.float64) ** 2).sum()), rel=1e-12)
    assert stats["count"] == 0 and math.isnan(stats["Avg IOU"]) and math.isnan(stats["Obj"])
    assert stats["Class"] == 0.375  # p3 * p0 at the chosen slot, over class_count = 1
    assert stats["No Obj"] == (1 + 0.25 + 0.75 + 1) / 8  # image 0 does not add, but counts in w*h*n*batch


# A literal transliteration of forward_region_layer (loop by loop, float32 scalars, C's double exp/log) to
# check write-order effects the fixtures do not exercise: several truths in one cell, logistic classes.
def _reference(out, truth, biases, n, classes, coords, seen, thresh, rescore, bias_match, softmax, tree, map,
               coord_scale, object_scale, noobject_scale, class_scale, background):
    f, f64 = np.float32, np.float64
    batch, _, h, w = out.shape
    x = out.reshape(batch, n, coords + 1 + classes, h * w)
    delta = np.zeros_like(x)
    biases = biases.astype(f)

    def get_box(b, a, i, j):
        v = x[b, a, :4, j * w + i]
        return ((f(i) + v[0]) / f(w), (f(j) + v[1]) / f(h), f(np.exp(f64(v[2])) * f64(biases[2 * a]) / w),
                f(np.exp(f64(v[3])) * f64(biases[2 * a + 1]) / h))

    def iou(p, q):
        def overlap(x1, w1, x2, w2):
            return min(x1 + w1 / f(2), x2 + w2 / f(2)) - max(x1 - w1 / f(2), x2 - w2 / f(2))
        ow, oh = overlap(p[0], p[2], q[0], q[2]), overlap(p[1], p[3], q[1], q[3])
        inter = f(0) if ow < 0 or oh < 0 else ow * oh
        return inter / (p[2] * p[3] + q[2] * q[3] - inter)

    def box_delta(t, b, a, i, j, scale):
        cell = j * w + i
        pred = get_box(b, a, i, j)
        tx, ty = t[0] * f(w) - f(i), t[1] * f(h) - f(j)
        tw = f(np.log(f64(t[2] * f(w) / biases[2 * a])))
        th = f(np.log(f64(t[3] * f(h) / biases[2 * a + 1])))
        delta[b, a, :4, cell] = [f(scale) * (tv - x[b, a, e, cell]) for e, tv in enumerate((tx, ty, tw, th))]
        return iou(pred, t)

    def class_delta(b, a, cell, cls, stats):
        p, d = x[b, a, coords + 1:, cell], delta[b, a, coords + 1:, cell]
        s = f(class_scale)
        if tree is not None:
            pred = f(1)
            while cls >= 0:
                pred *= p[cls]
                g = tree.group[cls]
                for k in range(tree.group_offset[g], tree.group_offset[g] + tree.group_size[g]):
                    d[k] = s * (f(0) - p[k])
                d[cls] = s * (f(1) - p[cls])
                cls = tree.parent[cls]
            stats["cat"] += pred
        elif d[0] and not softmax:
            d[cls] = s * (f(1) - p[cls])
        else:
            for k in range(classes):
                d[k] = s * (f(k == cls) - p[k])
            stats["cat"] += p[cls]

    st = dict(iou=0.0, cat=0.0, obj=0.0, anyobj=0.0, recall=0, count=0, class_count=0)
    for b in range(batch):
        truths = []
        for t in range(30):
            if not truth[b, t, 0]:
                break
            truths.append(truth[b, t])
        special = [t for t in truths if tree is not None and t[0] > 100000 and t[1] > 100000]
        if special:
            cls = int(special[0][4])
            probs = []
            for a in range(n):
                for cell in range(h * w):
                    delta[b, a, coords, cell] = f(noobject_scale) * (f(0) - x[b, a, coords, cell])
                    p, c = f(1), cls
                    while c >= 0:
                        p, c = p * x[b, a, coords + 1 + c, cell], tree.parent[c]
                    probs.append(x[b, a, coords, cell] * p)
            best = int(np.argmax(probs)) if max(probs) > 0 else 0
            delta[b, best // (h * w), coords, best % (h * w)] = 0
            class_delta(b, best // (h * w), best % (h * w), cls, st)
            st["class_count"] += 1
            continue
        for j in range(h):
            for i in range(w):
                for a in range(n):
                    pred, cell = get_box(b, a, i, j), j * w + i
                    best_iou = max([f(0)] + [v for v in (iou(pred, t) for t in truths) if v > 0])
                    obj = x[b, a, coords, cell]
                    st["anyobj"] += obj
                    delta[b, a, coords, cell] = f(noobject_scale) * (f(background) - obj)
                    if best_iou > f(thresh):
                        delta[b, a, coords, cell] = 0
                    if seen < 12800:  # Darknet's -Ofast build: l.biases/l.w as a reciprocal multiply
                        prior = (f(f64(i + 0.5) / w), f(f64(j + 0.5) / h), biases[2 * a] * (f(1) / f(w)),
                                 biases[2 * a + 1] * (f(1) / f(h)))
                        box_delta(prior, b, a, i, j, 0.01)
        for t in truths:
            i, j = int(t[0] * f(w)), int(t[1] * f(h))
            best_iou, best_n = f(0), 0
            for a in range(n):
                pred = get_box(b, a, i, j)
                if bias_match:
                    pred = (pred[0], pred[1], biases[2 * a] / f(w), biases[2 * a + 1] / f(h))
                v = iou((f(0), f(0), pred[2], pred[3]), (f(0), f(0), t[2], t[3]))
                if v > best_iou:
                    best_iou, best_n = v, a
            v = box_delta(t, b, best_n, i, j, f(coord_scale) * (f(2) - t[2] * t[3]))
            cell = j * w + i
            st["recall"] += int(v > 0.5)
            st["iou"] += v
            obj = x[b, best_n, coords, cell]
            st["obj"] += obj
            target = f(0) if background else v if rescore else f(1)
            delta[b, best_n, coords, cell] = f(object_scale) * (target - obj)
            cls = int(t[4]) if map is None else int(map[int(t[4])])
            class_delta(b, best_n, cell, cls, st)
            st["count"] += 1
            st["class_count"] += 1
    return delta.reshape(out.shape), st


CONFIGS = {
    "softmax": dict(softmax=True, tree=False, bias_match=True, rescore=True, background=False, seen=2),
    "logistic_classes": dict(softmax=False, tree=False, bias_match=False, rescore=False, background=False,
                             seen=12802),
    "background": dict(softmax=True, tree=False, bias_match=False, rescore=True, background=True, seen=64),
    "tree": dict(softmax=True, tree=True, bias_match=True, rescore=True, background=False, seen=2),
}


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("seed", range(3))
def test_matches_literal_darknet_loops(name, seed, tmp_path):
    cfg = CONFIGS[name]
    rng = np.random.default_rng(seed)
    tree = _small_tree(tmp_path) if cfg["tree"] else None
    n, classes, coords, h, w, batch = 3, 5, 4, 2, 3, 4
    raw = rng.normal(0, 2, (batch, n, coords + 1 + classes, h * w)).astype(np.float32)
    out = raw.copy()
    out[:, :, [0, 1, 4]] = 1 / (1 + np.exp(-raw[:, :, [0, 1, 4]]))
    if cfg["softmax"] and tree is None:
        e = np.exp(raw[:, :, 5:] - raw[:, :, 5:].max(2, keepdims=True))
        out[:, :, 5:] = e / e.sum(2, keepdims=True)
    elif tree is None:  # logistic classes, some exactly 0 or 1 so that `delta[index] == 0` happens
        out[:, :, 5:] = 1 / (1 + np.exp(-10 * raw[:, :, 5:]))
        out[:, :, 5] = np.where(rng.random(out[:, :, 5].shape) < 0.3, 1.0, out[:, :, 5])
    else:
        for g in range(tree.groups):
            sl = slice(5 + tree.group_offset[g], 5 + tree.group_offset[g] + tree.group_size[g])
            e = np.exp(raw[:, :, sl] - raw[:, :, sl].max(2, keepdims=True))
            out[:, :, sl] = e / e.sum(2, keepdims=True)
    out = out.astype(np.float32).reshape(batch, -1, h, w)
    # Boxes crowded into a 3x2 grid: several truths share a cell (and often the anchor).
    truth = np.zeros((batch, 30, 5), np.float32)
    for b, count in enumerate([7, 1, 12, 0]):
        truth[b, :count, :2] = rng.choice([0.1, 0.2, 0.4, 0.5, 0.9], (count, 2))
        truth[b, :count, 2:4] = rng.uniform(0.05, 0.9, (count, 2))
        truth[b, :count, 4] = rng.integers(0, classes, count)
    class_map = None
    if tree is not None:
        truth[1, :2] = [[0.5, 0.5, 0.2, 0.2, 1], [300000, 300000, 0.1, 0.1, 2]]  # image 1: class only
        class_map = np.array([4, 3, 2, 1, 0])
    opts = dict(thresh=0.3, rescore=cfg["rescore"], bias_match=cfg["bias_match"], softmax=cfg["softmax"],
                tree=tree, map=class_map, coord_scale=1.5, object_scale=5, noobject_scale=0.7,
                class_scale=1.3, background=cfg["background"])
    biases = np.array([0.5, 0.7, 1.5, 1.2, 2.5, 1.9], np.float32)
    delta, cost, stats = region_delta(torch.from_numpy(out), torch.from_numpy(truth),
                                      torch.from_numpy(biases), n, classes, coords, cfg["seen"], **opts)
    ref, st = _reference(out, truth, biases, n, classes, coords, cfg["seen"], **opts)
    np.testing.assert_array_equal(delta.numpy(), ref)
    assert cost == pytest.approx(float((ref.astype(np.float64) ** 2).sum()), rel=1e-9)
    assert stats["count"] == st["count"]
    for key, total, count in [("Avg IOU", "iou", "count"), ("Class", "cat", "class_count"),
                              ("Obj", "obj", "count"), ("Avg Recall", "recall", "count")]:
        assert stats[key] == pytest.approx(st[total] / st[count], rel=1e-5), key
    assert stats["No Obj"] == pytest.approx(st["anyobj"] / (w * h * n * batch), rel=1e-5)


def test_rejects_truth_outside_grid_and_bad_class():
    output = torch.full((1, 5 + 3, 2, 2), 0.5)
    kwargs = dict(thresh=0.6, rescore=True, bias_match=True, softmax=True, coord_scale=1, object_scale=5,
                  noobject_scale=1, class_scale=1)
    truth = torch.zeros(1, 30, 5)
    truth[0, 0] = torch.tensor([0.5, 1.2, 0.2, 0.2, 1])
    with pytest.raises(DarknetError, match="outside the 2x2 grid"):
        region_delta(output, truth, torch.tensor([1.0, 1.0]), 1, 3, 4, 2, **kwargs)
    truth[0, 0] = torch.tensor([0.5, 0.5, 0.2, 0.2, 3])
    with pytest.raises(DarknetError, match=re.escape("out of range 0..2")):
        region_delta(output, truth, torch.tensor([1.0, 1.0]), 1, 3, 4, 2, **kwargs)
