"""WordTree tables and operations against literal Python ports of Darknet's C loops."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import ROOT
from pydarknet.errors import DarknetError
from pydarknet.wordtree import (
    Tree,
    hierarchy_predictions,
    hierarchy_top_prediction,
    hierarchy_top_prediction_region,
    path_to_root,
    read_map,
    read_tree,
    tree_softmax,
)

TREE_9K = ROOT / "data" / "9k.tree"


def c_read_tree(parents: list[int]) -> dict:
    """`read_tree`'s loop, line by line."""
    last_parent, group_size, groups, n = -1, 0, 0, 0
    child, group, offsets, sizes = [], [], [], []
    for parent in parents:
        child.append(-1)
        if parent != last_parent:
            groups += 1
            offsets.append(n - group_size)
            sizes.append(group_size)
            group_size, last_parent = 0, parent
        group.append(groups)
        if parent >= 0:
            child[parent] = groups
        n += 1
        group_size += 1
    offsets.append(n - group_size)
    sizes.append(group_size)
    leaf = [0 if i in set(parents) else 1 for i in range(n)]
    return {"child": child, "group": group, "group_offset": offsets, "group_size": sizes, "leaf": leaf,
            "groups": groups + 1}


def c_hierarchy_predictions(p: np.ndarray, parent: np.ndarray) -> np.ndarray:
    p = p.astype(np.float32).copy()
    for j in range(len(parent)):
        if parent[j] >= 0:
            p[j] = np.float32(p[j] * p[parent[j]])
    return p


def c_top_prediction(p: np.ndarray, tree: Tree, thresh: float) -> int:
    prob, group, thresh = np.float32(1), 0, np.float32(thresh)
    while True:
        best, max_i = np.float32(0), 0
        for i in range(tree.group_size[group]):
            index = i + tree.group_offset[group]
            if p[index] > best:
                max_i, best = index, p[index]
        if np.float32(prob * best) > thresh:
            prob = np.float32(prob * best)
            group = tree.child[max_i]
            if tree.child[max_i] < 0:
                return max_i
        elif group == 0:
            return max_i
        else:
            return int(tree.parent[tree.group_offset[group]])


def write_tree(tmp_path, parents: list[int]):
    path = tmp_path / "t.tree"
    path.write_text("".join(f"n{i:08d} {p}\n" for i, p in enumerate(parents)))
    return path


# Trees as Darknet files allow them: every parent is an earlier line (first line: a root, maybe -2).
trees = st.lists(st.integers(0, 10**6), min_size=1, max_size=40).map(
    lambda xs: [-(1 + xs[0] % 2)] + [x % (i + 2) - 1 for i, x in enumerate(xs[1:])])


@pytest.fixture(scope="module")
def tree9k() -> Tree:
    return read_tree(TREE_9K, ROOT / "data" / "9k.names")


def test_9k_tree_matches_the_c_loop(tree9k):
    parents = [int(line.split()[1]) for line in TREE_9K.read_text().splitlines()]
    ref = c_read_tree(parents)
    assert tree9k.n == 9418 and tree9k.groups == ref["groups"]
    for key in ("child", "group", "group_offset", "group_size", "leaf"):
        np.testing.assert_array_equal(getattr(tree9k, key), ref[key], err_msg=key)
    assert tree9k.ids[0] == "n00002452" and tree9k.names[9413] == "weather"


@settings(max_examples=200, deadline=None)
@given(trees)
def test_read_tree_matches_the_c_loop(tmp_path_factory, parents):
    tree = read_tree(write_tree(tmp_path_factory.mktemp("t"), parents))
    ref = c_read_tree(parents)
    assert tree.groups == ref["groups"]
    for key in ("child", "group", "group_offset", "group_size", "leaf"):
        np.testing.assert_array_equal(getattr(tree, key), ref[key], err_msg=key)


@pytest.mark.parametrize(("text", "line", "needle"), [
    ("a -1\nb\n", 2, "expected '<id> <parent index>'"),
    ("a -1\nb x\n", 2, "not an integer"),
    ("a -1\nb 1\n", 2, "not an earlier line"),
    ("a 0\n", 1, "not an earlier line"),
    ("a -1\n\nb 0\n", 2, "expected"),
])
def test_read_tree_errors_name_file_and_line(tmp_path, text, line, needle):
    path = tmp_path / "bad.tree"
    path.write_text(text)
    with pytest.raises(DarknetError) as err:
        read_tree(path)
    assert err.value.file == str(path) and err.value.line == line and needle in err.value.message


def test_missing_files_raise(tmp_path):
    for reader in (read_tree, read_map):
        with pytest.raises(DarknetError, match="cannot read"):
            reader(tmp_path / "nope")


def test_read_map(tmp_path):
    coco9k = read_map(ROOT / "data" / "coco9k.map")
    assert coco9k.shape == (80,) and coco9k[0] == 5177
    path = tmp_path / "m.map"
    path.write_text("3\n4\nfive\n")
    with pytest.raises(DarknetError) as err:
        read_map(path)
    assert err.value.line == 3


def test_path_to_root(tree9k):
    path = path_to_root(tree9k, 9413)
    assert path[0] == 9413 and tree9k.parent[path[-1]] < 0
    assert all(tree9k.parent[a] == b for a, b in zip(path, path[1:], strict=False))


def test_tree_softmax_is_a_softmax_per_group(tree9k):
    torch.manual_seed(0)
    x = torch.randn(2, tree9k.n, 5) * 4
    y = tree_softmax(x, tree9k, dim=1)
    for g in [0, 1, 2, 500, tree9k.groups - 1]:
        lo, size = tree9k.group_offset[g], tree9k.group_size[g]
        ref = torch.softmax(x[:, lo : lo + size], 1)
        torch.testing.assert_close(y[:, lo : lo + size], ref, atol=1e-7, rtol=0)
    sums = torch.zeros(2, tree9k.groups, 5).index_add_(1, torch.from_numpy(tree9k.group), y)
    torch.testing.assert_close(sums, torch.ones_like(sums), atol=2e-6, rtol=0)


def group_slices(x: torch.Tensor, tree: Tree, dim: int) -> list[torch.Tensor]:
    return [x.narrow(dim, lo, size) for lo, size in zip(tree.group_offset.tolist(), tree.group_size.tolist())]


def loop_tree_softmax(x: torch.Tensor, tree: Tree, dim: int) -> torch.Tensor:
    """One max-subtracted softmax per group, group by group."""
    parts = []
    for chunk in group_slices(x, tree, dim):
        e = torch.exp(chunk - chunk.amax(dim, keepdim=True))
        parts.append(e / e.sum(dim, keepdim=True))
    return torch.cat(parts, dim)


@pytest.mark.parametrize(("shape", "dim"), [((1, 3, -1, 6), 2), ((4, -1), 1), ((-1, 2, 3), 0)])
def test_tree_softmax_matches_the_group_loop_in_place_or_not(tree9k, shape, dim):
    g = torch.Generator().manual_seed(5)
    shape = tuple(tree9k.n if s < 0 else s for s in shape)
    x = torch.randn(shape, generator=g) * 6
    x[torch.rand(shape, generator=g) < 0.3] = 2.0  # ties, also for the group max
    x.narrow(dim, 0, 4).fill_(-200.0)  # a whole group far below 0: exp underflows without the max
    ref = loop_tree_softmax(x, tree9k, dim)
    fast = tree_softmax(x, tree9k, dim)  # no graph: in place
    xg = x.clone().requires_grad_()
    graph = tree_softmax(xg, tree9k, dim)
    assert torch.equal(fast, graph.detach())  # the same ops, in place or not
    torch.testing.assert_close(fast, ref, atol=1e-7, rtol=1e-6)
    weights = torch.rand(shape, generator=g)
    (graph * weights).sum().backward()
    # Per group, d/dx of sum(w * softmax(x)) is y * (w - sum(w * y)).
    want = torch.cat([(y * (w - (w * y).sum(dim, keepdim=True)))
                      for y, w in zip(group_slices(ref, tree9k, dim), group_slices(weights, tree9k, dim))], dim)
    assert xg.grad.abs().sum() > 0
    torch.testing.assert_close(xg.grad, want, atol=1e-6, rtol=1e-5)


def test_tree_softmax_gradient(tmp_path):
    tree = read_tree(write_tree(tmp_path, [-1, -1, 0, 0, 0, 1, 1, -1, 2]))
    x = torch.randn(3, tree.n, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: tree_softmax(t, tree), (x,))


def test_hierarchy_predictions_is_the_sequential_in_place_loop(tree9k):
    rng = np.random.default_rng(1)
    raw = rng.random((4, tree9k.n), dtype=np.float32)
    ours = hierarchy_predictions(torch.from_numpy(raw), tree9k).numpy()
    for row in range(4):
        np.testing.assert_array_equal(ours[row], c_hierarchy_predictions(raw[row], tree9k.parent))
    # Any axis: the region layout has classes in the middle.
    moved = hierarchy_predictions(torch.from_numpy(raw.T.copy())[None], tree9k, dim=1)[0].numpy()
    np.testing.assert_array_equal(moved.T, ours)


def test_hierarchy_predictions_with_later_or_self_parents():
    # Not from a file (read_tree refuses these): Darknet's loop reads a later parent before its update.
    parent = np.array([2, -1, 1, 2, 4])
    tree = Tree(parent, np.full(5, -1), np.zeros(5, int), np.ones(5, int), np.array([0]), np.array([5]), 5, 1,
                [str(i) for i in range(5)])
    raw = np.float32([0.5, 0.25, 0.75, 0.9, 0.6])
    np.testing.assert_array_equal(hierarchy_predictions(torch.from_numpy(raw), tree).numpy(),
                                  c_hierarchy_predictions(raw, parent))


@settings(max_examples=150, deadline=None)
@given(trees, st.integers(0, 2**32 - 1), st.sampled_from([0.0, 0.1, 0.3, 0.5, 0.8]))
def test_top_prediction_matches_the_c_walk(tmp_path_factory, parents, seed, thresh):
    tree = read_tree(write_tree(tmp_path_factory.mktemp("t"), parents))
    rng = np.random.default_rng(seed)
    raw = rng.random((6, tree.n), dtype=np.float32)
    raw[rng.random(raw.shape) < 0.3] = 0  # groups with no value > 0: Darknet's max_i = 0 quirk
    raw[1] = 0
    absolute = hierarchy_predictions(torch.from_numpy(raw), tree)
    ours = hierarchy_top_prediction(absolute, tree, thresh).tolist()
    assert ours == [c_top_prediction(row, tree, thresh) for row in absolute.numpy()]
    # The region variant walks the raw (group softmax) values and multiplies as it goes.
    region = torch.from_numpy(raw.T.copy()).reshape(1, tree.n, 6)
    cells = torch.arange(6)
    assert hierarchy_top_prediction_region(region, torch.zeros(6, dtype=torch.long), cells, tree,
                                           thresh).tolist() == ours


def test_top_prediction_on_9k(tree9k):
    torch.manual_seed(0)
    x = torch.randn(64, tree9k.n) * 3
    absolute = hierarchy_predictions(tree_softmax(x, tree9k), tree9k)
    for thresh in (0.0, 0.05, 0.5, 0.9):
        ours = hierarchy_top_prediction(absolute, tree9k, thresh).tolist()
        assert ours == [c_top_prediction(row, tree9k, thresh) for row in absolute.numpy()]
