"""The [region] layer's forward activation (Darknet's GPU semantics, see tests/fixtures/README.md)."""

from __future__ import annotations

import torch
from torch import Tensor

from pydarknet.region.wordtree import Tree, tree_softmax


def region_activate(x: Tensor, n: int, coords: int, classes: int, softmax: bool, tree: Tree | None,
                    background: bool = False) -> Tensor:
    """Activate a (N, n*(coords+1+classes), H, W) region input; per anchor the entries are
    `[x, y, w, h, (masks), obj, class0..]`, each an H*W plane.

    logistic on x, y (and masks) and on obj unless `background`; w, h raw. Classes: a per-group softmax
    for a tree (which wins over `softmax`), else a softmax over `classes` (over obj + classes with
    `background`), else logistic."""
    batch, channels, h, w = x.shape
    entries = coords + 1 + classes
    v = x.float().reshape(batch, n, entries, h * w)
    parts = [torch.sigmoid(v[:, :, :2]), v[:, :, 2:4]]
    if coords > 4:
        parts.append(torch.sigmoid(v[:, :, 4:coords]))
    obj, cls = v[:, :, coords : coords + 1], v[:, :, coords + 1 :]
    if tree is not None:
        parts += [obj if background else torch.sigmoid(obj), tree_softmax(cls, tree, dim=2)]
    elif softmax and background:
        parts.append(torch.softmax(v[:, :, coords:], dim=2))
    elif softmax:
        parts += [torch.sigmoid(obj), torch.softmax(cls, dim=2)]
    else:
        parts += [obj if background else torch.sigmoid(obj), torch.sigmoid(cls)]
    return torch.cat(parts, 2).reshape(batch, channels, h, w)
