"""Region activation vs Darknet's region layer output (gpusem; fixtures README: region outputs atol 1e-5)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import ROOT, infer_dirs
from pydarknet.heads.region import region_activate
from pydarknet.wordtree import read_tree

# net -> (num, classes, tree)
REGIONS = {"mini_voc": (5, 20, None), "mini_tiny": (5, 20, None), "mini_9k": (3, 9418, "data/9k.tree")}


def region_pairs() -> list:
    """(infer dir, region input key, region output key) where both layers are stored."""
    pairs = []
    for d in infer_dirs(list(REGIONS)):
        if not (d / "outputs.npz").exists():
            continue
        keys = sorted(k for k in np.load(d / "outputs.npz").files if k.startswith("layer_"))
        before = f"layer_{int(keys[-1][6:]) - 1:03d}"
        if before in keys:
            pairs.append(pytest.param(d, before, keys[-1], id=f"{d.parent.name}/{d.name}"))
    return pairs


@pytest.mark.parametrize(("infer_dir", "key_in", "key_out"), region_pairs())
def test_activation_matches_darknet_region_output(infer_dir, key_in, key_out):
    n, classes, tree_file = REGIONS[infer_dir.parent.name]
    tree = read_tree(ROOT / tree_file) if tree_file else None
    stored = np.load(infer_dir / "outputs.npz")
    x = torch.from_numpy(stored[key_in])[None]
    y = region_activate(x, n, 4, classes, True, tree)[0].numpy()
    np.testing.assert_allclose(y, stored[key_out], atol=1e-5, rtol=0)


def test_every_region_fixture_net_is_covered():
    assert {p.values[0].parent.name for p in region_pairs()} == set(REGIONS)


def reference(x: torch.Tensor, n: int, classes: int, softmax: bool, background: bool) -> torch.Tensor:
    """forward_region_layer per anchor block, written out."""
    v = x.reshape(x.shape[0], n, 5 + classes, *x.shape[2:]).clone()
    out = v.clone()
    out[:, :, :2] = torch.sigmoid(v[:, :, :2])
    if not background:
        out[:, :, 4] = torch.sigmoid(v[:, :, 4])
    if softmax:
        start = 4 if background else 5  # entry_index(l, 0, 0, coords + !background)
        out[:, :, start:] = torch.softmax(v[:, :, start:], 2)
    else:
        out[:, :, 5:] = torch.sigmoid(v[:, :, 5:])
    return out.reshape(x.shape)


@pytest.mark.parametrize("softmax", [True, False])
@pytest.mark.parametrize("background", [False, True])
def test_options(softmax, background):
    torch.manual_seed(0)
    x = torch.randn(2, 3 * (5 + 7), 4, 5) * 3
    torch.testing.assert_close(region_activate(x, 3, 4, 7, softmax, None, background),
                               reference(x, 3, 7, softmax, background), atol=1e-6, rtol=0)


def test_tree_gradient_flows():
    tree = read_tree(ROOT / "data" / "9k.tree")
    x = torch.randn(1, 3 * (5 + tree.n), 2, 2, requires_grad=True)
    # Classes 0-3 are all of group 0: weights that differ, or the group's softmax sums to a constant.
    (region_activate(x, 3, 4, tree.n, True, tree)[0, 5:9] * torch.arange(1.0, 5.0)[:, None, None]).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
