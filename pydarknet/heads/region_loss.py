"""Darknet's region-layer training delta and cost (`forward_region_layer`, final commit), GPU semantics.

Darknet walks cells, anchors and truths sequentially and later writes overwrite earlier ones. Here every
pass is batched; the truths are written in "rounds": round r holds each truth that has r earlier truths
of its image assigned to the same (anchor, cell) slot. Truths of one round touch distinct slots, and
rounds run in order, so the final delta is exactly Darknet's, read-after-write checks included.
Float vs double follows the C code (`exp`/`log` in double, stored to float; everything else float32).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from pydarknet.boxes import box_iou
from pydarknet.errors import DarknetError
from pydarknet.heads import write_rounds
from pydarknet.heads.region import region_boxes
from pydarknet.wordtree import Tree

_MAX_TRUTHS = 30  # the region layer reads at most 30 boxes per image (l.truths = 30*(coords+1))
_PRIOR_SEEN = 12800  # below this many images seen, every box is also pulled towards its anchor
_ONLY_CLASS = 100000  # truth x and y above this: a classification-only label (combine9k)


def _f32(v: float) -> float:
    """A cfg float as C holds it: the value of its float32 rounding."""
    return float(np.float32(v))


def _log_ratio(size: Tensor, grid: int, anchor: Tensor) -> Tensor:
    """`log(size*grid / anchor)`: the ratio in float32, C's double `log`, stored to float."""
    return torch.log((size * grid / anchor).double()).float()


def _tree_paths(tree: Tree, classes: Tensor) -> Tensor:
    """(K, depth) nodes from each (CPU) class up to its root, padded with -1."""
    node, cols = classes.numpy(), []
    while (node >= 0).any():
        cols.append(node)
        node = np.where(node >= 0, tree.parent[np.maximum(node, 0)], -1)
    return torch.from_numpy(np.stack(cols, 1) if cols else np.zeros((len(node), 0), np.int64))


def _tree_class_delta(p: Tensor, current: Tensor, paths: Tensor, tree: Tree,
                      scale: float) -> tuple[Tensor, Tensor]:
    """`delta_region_class` with a tree on K distinct slots: along the path to the root every member of a
    path node's group gets `scale*(0 - p)`, the node itself `scale*(1 - p)`; other entries keep `current`.
    Returns the new (K, classes) deltas and the path products (Darknet's `pred`, summed into Avg Class)."""
    k, dev = p.shape[0], p.device
    on, node = paths >= 0, paths.clamp_min(0)
    group = torch.from_numpy(tree.group).to(dev)
    touched = torch.zeros(k, tree.groups + 1, dtype=torch.bool, device=dev)
    touched.scatter_(1, torch.where(on, group[node], tree.groups), True)
    on_path = torch.zeros(k, tree.n + 1, dtype=torch.bool, device=dev)
    on_path.scatter_(1, torch.where(on, node, tree.n), True)
    new = torch.where(touched[:, group], scale * (0 - p), current)
    new = torch.where(on_path[:, : tree.n], scale * (1 - p), new)
    pred = torch.ones(k, device=dev)
    for d in range(paths.shape[1]):  # leaf to root, in C's multiplication order
        pred = torch.where(on[:, d], pred * p.gather(1, node[:, d : d + 1])[:, 0], pred)
    return new, pred


def region_delta(output: Tensor, truth: Tensor, biases: Tensor, n: int, classes: int, coords: int, seen: int,
                 *, thresh: float, rescore: bool, bias_match: bool, softmax: bool, tree: Tree | None = None,
                 map: np.ndarray | Tensor | None = None, coord_scale: float, object_scale: float,
                 noobject_scale: float, class_scale: float,
                 background: bool = False) -> tuple[Tensor, float, dict]:
    """Darknet's region training delta for an activated (N, n*(coords+1+classes), H, W) output.

    `truth` is (N, 30, 5) `x, y, w, h, class` relative to the network input (x == 0 ends an image's list);
    `biases` the (2n,) anchors in grid cells; `seen` counts images including this batch. Returns
    (delta, cost, stats): delta = target - output in Darknet's sign, cost = sum(delta**2), stats = the
    values of Darknet's "Region Avg IOU" line (keys Avg IOU, Class, Obj, No Obj, Avg Recall, count)."""
    if coords != 4:
        raise DarknetError(f"coords={coords}: region training supports only coords=4 (no masks)")
    batch, channels, h, w = output.shape
    entries, cells = coords + 1 + classes, h * w
    if channels != n * entries:
        raise DarknetError(f"region output has {channels} channels, expected {n}*({coords}+1+{classes})")
    dev = output.device
    out = output.detach().float().reshape(batch, n, entries, cells)
    delta = torch.zeros_like(out)
    ov, dv = out.transpose(2, 3), delta.transpose(2, 3)  # (N, n, cells, entries) views: one slot per row
    anchor_w, anchor_h = biases.detach().float().to(dev).reshape(n, 2).unbind(1)
    ns, os_, cs, ks = _f32(noobject_scale), _f32(object_scale), _f32(coord_scale), _f32(class_scale)

    tr = truth.detach().float().cpu().reshape(batch, -1, coords + 1)[:, :_MAX_TRUTHS]
    valid = (tr[..., 0] != 0).int().cummin(1).values.bool()  # the list ends at the first x == 0
    # A tree image with a classification-only truth trains only that class (and no-object everywhere).
    special = valid & (tr[..., 0] > _ONLY_CLASS) & (tr[..., 1] > _ONLY_CLASS)
    only = special.any(1) if tree is not None else torch.zeros(batch, dtype=torch.bool)
    only_dev = only.to(dev)

    # Pass 1, every (anchor, cell): no-object delta unless some truth overlaps > thresh; early anchor prior.
    pos = torch.arange(cells, device=dev)
    col, row = (pos % w).float(), torch.div(pos, w, rounding_mode="floor").float()
    pred = region_boxes(ov[..., :4], col, row, anchor_w[:, None], anchor_h[:, None], w, h)
    ious = box_iou(torch.stack(pred, -1)[..., None, :], tr.to(dev)[:, None, None, :, :4])
    ious = torch.where(valid.to(dev)[:, None, None] & (ious > 0), ious, 0.0)  # C's `iou > best_iou` from 0
    obj = out[:, :, coords]
    no_obj = ns * ((1 if background else 0) - obj)
    no_obj = torch.where(ious.amax(-1) > _f32(thresh), 0.0, no_obj)
    delta[:, :, coords] = torch.where(only_dev[:, None, None], ns * (0 - obj), no_obj)
    if seen < _PRIOR_SEEN:
        # Target: the cell centre, (i + .5)/w computed in double and stored to float, with the anchor's size.
        tx = ((col.double() + 0.5) / w).float() * w - col
        ty = ((row.double() + 0.5) / h).float() * h - row
        # Darknet's default -Ofast build divides by l.w as a multiplication by its float reciprocal.
        tw = _log_ratio(anchor_w * float(np.float32(1) / np.float32(w)), w, anchor_w)
        th = _log_ratio(anchor_h * float(np.float32(1) / np.float32(h)), h, anchor_h)
        target = torch.stack([tx.expand(n, cells), ty.expand(n, cells),
                              tw[:, None].expand(n, cells), th[:, None].expand(n, cells)], 1)
        prior = _f32(0.01) * (target - out[:, :, :4])
        delta[:, :, :4] = torch.where(only_dev[:, None, None, None], 0.0, prior)
    avg_anyobj = obj[~only_dev].sum(dtype=torch.float64)
    avg_cat = torch.zeros((), dtype=torch.float64, device=dev)

    if only.any():
        ob = torch.nonzero(only)[:, 0]
        label = tr[ob, special[ob].int().argmax(1), coords].long()  # not mapped through `map`, as in C
        if ((label < 0) | (label >= classes)).any():
            raise DarknetError(f"truth class out of range 0..{classes - 1}: {label.tolist()}")
        ob, paths = ob.to(dev), _tree_paths(tree, label).to(dev)
        # The slot where obj * P(class) is largest (first one on ties, slot 0 if all are 0) gets the class.
        prob = ov.new_ones(len(ob), n, cells)
        for d in range(paths.shape[1]):
            plane = out[ob, :, coords + 1 + paths[:, d].clamp_min(0)]
            prob = torch.where(paths[:, d, None, None] >= 0, prob * plane, prob)
        best = (out[ob, :, coords] * prob).reshape(len(ob), -1).argmax(1)
        oa, oc = torch.div(best, cells, rounding_mode="floor"), best % cells
        dv[ob, oa, oc, coords] = 0.0
        new, path_prob = _tree_class_delta(ov[ob, oa, oc, coords + 1 :], dv[ob, oa, oc, coords + 1 :], paths,
                                           tree, ks)
        dv[ob, oa, oc, coords + 1 :] = new
        avg_cat += path_prob.sum(dtype=torch.float64)

    # Pass 2, every truth of the other images, in order: best anchor of its cell gets box, obj and class.
    bi, ti = torch.nonzero(valid & ~only[:, None], as_tuple=True)
    box, label = tr[bi, ti, :4], tr[bi, ti, coords].long()
    if map is not None:
        table = torch.as_tensor(map, dtype=torch.long)
        if ((label < 0) | (label >= len(table))).any():
            raise DarknetError(f"truth class out of range of the {len(table)}-line map: {label.tolist()}")
        label = table[label]
    if ((label < 0) | (label >= classes)).any():
        raise DarknetError(f"truth class out of range 0..{classes - 1}: {label.tolist()}")
    ci, cj = (box[:, 0] * w).long(), (box[:, 1] * h).long()  # C's (int) truncation of a float product
    cell = cj * w + ci
    if ((cell < 0) | (cell >= cells)).any():
        raise DarknetError(f"truth box centre outside the {w}x{h} grid: {box[(cell < 0) | (cell >= cells)]}")
    paths = _tree_paths(tree, label).to(dev) if tree is not None else None
    bi, box, label, ci, cj, cell = (t.to(dev) for t in (bi, box, label, ci, cj, cell))
    x, y, bw, bh = box.unbind(1)
    fi, fj = ci.float(), cj.float()
    raw = ov[bi, :, cell]  # (K, n, entries)
    if bias_match:
        shape_w, shape_h = (anchor_w / w).expand(len(bi), n), (anchor_h / h).expand(len(bi), n)
    else:
        _, _, shape_w, shape_h = region_boxes(raw[..., :4], fi[:, None], fj[:, None], anchor_w, anchor_h, w, h)
    zero = torch.zeros_like(shape_w)
    shape_iou = box_iou(torch.stack([zero, zero, shape_w, shape_h], -1),
                        torch.stack([zero, zero, bw[:, None].expand_as(zero), bh[:, None].expand_as(zero)], -1))
    best_n = torch.where(shape_iou > 0, shape_iou, 0.0).argmax(1)  # first anchor on ties, as C's `>`
    slot = raw[torch.arange(len(bi), device=dev), best_n]  # (K, entries)
    pb = region_boxes(slot[:, :4], fi, fj, anchor_w[best_n], anchor_h[best_n], w, h)
    iou = box_iou(torch.stack(pb, -1), box)
    target = torch.stack([x * w - fi, y * h - fj, _log_ratio(bw, w, anchor_w[best_n]),
                          _log_ratio(bh, h, anchor_h[best_n])], 1)
    coord_delta = (cs * (2 - bw * bh))[:, None] * (target - slot[:, :4])
    obj_t = slot[:, coords]
    obj_target = 0 if background else iou if rescore else 1
    obj_delta = os_ * (obj_target - obj_t)
    probs = slot[:, coords + 1 :]

    rank = write_rounds((bi * n + best_n) * cells + cell)
    for r in range(int(rank.max()) + 1 if len(bi) else 0):
        k = torch.nonzero(rank == r)[:, 0]
        b, a, c = bi[k], best_n[k], cell[k]
        dv[b, a, c, :4] = coord_delta[k]
        dv[b, a, c, coords] = obj_delta[k]
        p, current = probs[k], dv[b, a, c, coords + 1 :]
        if tree is not None:
            new, cat = _tree_class_delta(p, current, paths[k], tree, ks)
        else:
            lab = label[k, None]
            p_true = p.gather(1, lab)
            new = ks * (torch.zeros_like(p).scatter_(1, lab, 1.0) - p)
            cat = p_true[:, 0]
            if not softmax:
                # Logistic classes: a slot already written (class 0 delta != 0) only gets this truth's class.
                written = current[:, :1] != 0
                new = torch.where(written, current.scatter(1, lab, ks * (1 - p_true)), new)
                cat = torch.where(written[:, 0], 0.0, cat)
        dv[b, a, c, coords + 1 :] = new
        avg_cat += cat.sum(dtype=torch.float64)

    count = len(bi)
    class_count = count + int(only.sum())
    sums = torch.stack([iou.sum(dtype=torch.float64), avg_cat, obj_t.sum(dtype=torch.float64), avg_anyobj,
                        (iou > 0.5).sum().double(), delta.double().square().sum()]).tolist()
    avg_iou, cat_sum, obj_sum, anyobj_sum, recall, cost = sums

    def ratio(a: float, b: int) -> float:
        return a / b if b else float("nan")  # C divides floats: 0/0 is NaN

    stats = {"Avg IOU": ratio(avg_iou, count), "Class": ratio(cat_sum, class_count),
             "Obj": ratio(obj_sum, count), "No Obj": anyobj_sum / (w * h * n * batch),
             "Avg Recall": ratio(recall, count), "count": count}
    return delta.reshape(output.shape), cost, stats
