"""WordTree (YOLO9000 / darknet9000 `.tree` files): Darknet's tree tables and the per-group operations.

A tree file has one `<synset> <parent>` line per class; consecutive lines with the same parent form
a group, and softmax is taken per group. `read_tree` rejects parents that refer to the line itself or a
later line (Darknet writes out of bounds there), so `parent[j] < j` holds for every tree it returns.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from pydarknet.errors import DarknetError


@dataclass(eq=False)
class Tree:
    """Darknet's `tree` struct; `group[i]` is the group of class i, `child[i]` the group of its children."""

    parent: np.ndarray
    child: np.ndarray
    group: np.ndarray
    leaf: np.ndarray
    group_offset: np.ndarray
    group_size: np.ndarray
    n: int
    groups: int
    ids: list[str]
    names: list[str] | None = None

    @cached_property
    def _depth_levels(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """(nodes, parents) per depth >= 1: nodes whose parent precedes them, by distance from such a root.

        A node whose parent comes later (or is itself) is depth 0: Darknet's in-place pass reads that
        parent before it is updated."""
        back = (self.parent >= 0) & (self.parent < np.arange(self.n))
        depth = np.zeros(self.n, dtype=np.int64)
        while True:  # one pass per tree level: depth[parent] is final once its own parent's is
            new = np.where(back, depth[np.where(back, self.parent, 0)] + 1, 0)
            if np.array_equal(new, depth):
                break
            depth = new
        return [(np.flatnonzero(depth == d), self.parent[depth == d]) for d in range(1, int(depth.max()) + 1)]

    @cached_property
    def _forward_parents(self) -> np.ndarray:
        """Nodes whose parent is the node itself or a later one (never from `read_tree`)."""
        return np.flatnonzero(self.parent >= np.arange(self.n))

    @cached_property
    def _padded_groups(self) -> np.ndarray:
        """(groups, max size) class indices per group; padding points at an extra always-zero class `n`."""
        table = np.full((self.groups, max(int(self.group_size.max()), 1)), self.n, dtype=np.int64)
        classes = np.arange(self.n)
        table[self.group, classes - self.group_offset[self.group]] = classes
        return table

    @cached_property
    def _size_buckets(self) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int]]]:
        """A class permutation that puts groups of equal size next to each other, its inverse, and the
        (size, count) runs it makes."""
        perm = np.lexsort((self.group, self.group_size[self.group]))
        values, counts = np.unique(self.group_size[self.group_size > 0], return_counts=True)
        return perm, np.argsort(perm), list(zip(values.tolist(), counts.tolist(), strict=True))


def _read_lines(path: str | Path, what: str) -> tuple[Path, list[str]]:
    path = Path(path)
    try:
        return path, path.read_text(encoding="utf-8", errors="replace").splitlines()
    except IsADirectoryError:
        raise DarknetError(f"is a directory, expected a {what}", path) from None
    except OSError as err:
        raise DarknetError(f"cannot read {what}: {err.strerror}", path) from None


def read_tree(path: str | Path, names_path: str | Path | None = None) -> Tree:
    """Darknet's `read_tree`: groups are runs of lines with the same parent, in file order."""
    path, lines = _read_lines(path, "tree file")
    if not lines:
        raise DarknetError("empty tree file", path)
    ids: list[str] = []
    parents = np.empty(len(lines), dtype=np.int64)
    for i, line in enumerate(lines):
        fields = line.split()
        if len(fields) < 2:
            raise DarknetError(f"expected '<id> <parent index>', got {line!r}", path, i + 1)
        try:
            parent = int(fields[1])
        except ValueError:
            raise DarknetError(f"parent {fields[1]!r} is not an integer", path, i + 1) from None
        if parent >= i:
            raise DarknetError(f"parent {parent} is not an earlier line (0-based index < {i})", path, i + 1)
        ids.append(fields[0])
        parents[i] = parent
    n = len(lines)
    # A group ends wherever the parent differs from the previous line's (the first line compares with
    # -1, so a file whose first parent is not -1 gets an empty group 0, as in Darknet).
    bounds = np.flatnonzero(parents != np.r_[-1, parents[:-1]])
    group_offset = np.r_[0, bounds].astype(np.int64)
    group_size = np.r_[bounds, n].astype(np.int64) - group_offset
    group = np.repeat(np.arange(len(group_offset)), group_size)
    child = np.full(n, -1, dtype=np.int64)
    has_parent = parents >= 0
    np.maximum.at(child, parents[has_parent], group[has_parent])  # the last line's group wins, as in C
    leaf = np.ones(n, dtype=np.int64)
    leaf[parents[has_parent]] = 0
    names = None
    if names_path is not None:
        names_path, names = _read_lines(names_path, "names file")
        if len(names) < n:
            raise DarknetError(f"has {len(names)} names but the tree has {n} classes", names_path)
        names = names[:n]
    return Tree(parents, child, group, leaf, group_offset, group_size, n, len(group_offset), ids, names)


def read_map(path: str | Path) -> np.ndarray:
    """Darknet's `read_map`: one integer (a tree class id) per line."""
    path, lines = _read_lines(path, "map file")
    values = np.empty(len(lines), dtype=np.int64)
    for i, line in enumerate(lines):
        try:
            values[i] = int(line.strip())
        except ValueError:
            raise DarknetError(f"expected one integer per line, got {line!r}", path, i + 1) from None
    return values


def path_to_root(tree: Tree, cls: int) -> list[int]:
    """`cls`, its parent, ... up to a root."""
    path = [cls]
    while tree.parent[path[-1]] >= 0:
        path.append(int(tree.parent[path[-1]]))
    return path


def tree_softmax(x: Tensor, tree: Tree, dim: int = -1) -> Tensor:
    """Max-subtracted softmax (temperature 1) over each group's classes along `dim` (Darknet's softmax_tree).

    Groups of equal size are gathered next to each other so that each size is one batched softmax."""
    dim = dim % x.dim()
    perm, inverse, buckets = tree._size_buckets
    xp = x.index_select(dim, torch.from_numpy(perm).to(x.device))
    lead, tail = x.shape[:dim], x.shape[dim + 1 :]
    outs, start = [], 0
    for size, count in buckets:
        chunk = xp.narrow(dim, start, size * count).reshape(*lead, count, size, *tail)
        e = torch.exp(chunk - chunk.detach().amax(dim + 1, keepdim=True))
        outs.append((e / e.sum(dim + 1, keepdim=True)).reshape(*lead, size * count, *tail))
        start += size * count
    return torch.cat(outs, dim).index_select(dim, torch.from_numpy(inverse).to(x.device))


def hierarchy_predictions(probs: Tensor, tree: Tree, dim: int = -1) -> Tensor:
    """Darknet's in-place `for j: p[j] *= p[parent[j]]` (only_leaves=0) as a new tensor.

    With parents before children this is the product along the path to the root, done one tree level
    at a time; bit-identical, as each node is one float32 multiply by its parent's final value."""
    dim = dim % probs.dim()
    out = probs.clone()
    fwd = tree._forward_parents
    if fwd.size:  # parent read before its own update (only for hand-made trees)
        nodes = torch.from_numpy(fwd).to(probs.device)
        parents = torch.from_numpy(tree.parent[fwd]).to(probs.device)
        out.index_copy_(dim, nodes, probs.index_select(dim, nodes) * probs.index_select(dim, parents))
    for nodes_np, parents_np in tree._depth_levels:
        nodes = torch.from_numpy(nodes_np).to(probs.device)
        parents = torch.from_numpy(parents_np).to(probs.device)
        out.index_copy_(dim, nodes, out.index_select(dim, nodes) * out.index_select(dim, parents))
    return out


def hierarchy_top_prediction(probs_abs: Tensor, tree: Tree, hier_thresh: float) -> Tensor:
    """Darknet's `hierarchy_top_prediction` for each row of (B, n) absolute (path-multiplied) probs.

    From the root group, take the group's max (first index; class 0 if no value is > 0) while
    `p*max > hier_thresh` (float32), descending into its children; stop at a leaf, or return the
    max of the root group, or the parent of the current group."""
    padded = torch.cat([probs_abs, probs_abs.new_zeros(probs_abs.shape[0], 1)], 1)  # column n: padding
    return _top_walk(lambda members, parent_abs: padded.gather(1, members), probs_abs.shape[0], tree,
                     hier_thresh, probs_abs.device)


def hierarchy_top_prediction_region(raw: Tensor, anchor: Tensor, cell: Tensor, tree: Tree,
                                    hier_thresh: float) -> Tensor:
    """`hierarchy_top_prediction` after `hierarchy_predictions` for boxes whose group-softmax class probs
    are `raw[anchor[b], :, cell[b]]` of a (n, classes, cells) region view.

    The walk only reads the groups it visits: a member's absolute prob is its own times its parent's,
    and the parent is the max just taken (the same float32 product Darknet stores), so the full
    tree product over all classes (a pass over the whole output) is never formed."""
    classes = raw.shape[1]
    anchor, cell = anchor[:, None], cell[:, None]

    def values(members: Tensor, parent_abs: Tensor) -> Tensor:
        real = members < classes  # index `classes` is padding
        got = raw[anchor, torch.where(real, members, 0), cell]  # reads only these entries of a strided view
        return torch.where(real, got * parent_abs[:, None], 0.0)

    return _top_walk(values, anchor.shape[0], tree, hier_thresh, raw.device)


def _top_walk(values: Callable[[Tensor, Tensor], Tensor], rows: int, tree: Tree, hier_thresh: float,
              device: torch.device) -> Tensor:
    """The walk of `hierarchy_top_prediction`, batched over rows; `values(members, parent_abs)` gives the
    absolute probs of (rows, S) class ids (id n: padding, 0) whose parent has absolute prob `parent_abs`."""
    table = torch.from_numpy(tree._padded_groups).to(device)
    child = torch.from_numpy(tree.child).to(device)
    parent_of_group = torch.from_numpy(tree.parent[tree.group_offset]).to(device)
    thresh = torch.tensor(hier_thresh, dtype=torch.float32, device=device)
    group = torch.zeros(rows, dtype=torch.long, device=device)
    p = torch.ones(rows, dtype=torch.float32, device=device)
    parent_abs = torch.ones(rows, dtype=torch.float32, device=device)  # roots: raw * 1 == raw
    result = torch.full((rows,), -1, dtype=torch.long, device=device)
    active = torch.ones(rows, dtype=torch.bool, device=device)
    class0 = values(torch.zeros(rows, 1, dtype=torch.long, device=device), parent_abs)[:, 0]  # a root
    # Each accepted step moves to a group of later classes, so n+1 steps bound any walk that ends.
    for _ in range(tree.n + 1):
        if not bool(active.any()):
            return result
        members = table[group]
        vals = values(members, parent_abs)
        vals = torch.where(vals > 0, vals, 0.0)  # C: max starts at 0 and takes `val > max` (NaN never)
        best = vals.amax(1)
        first = ((vals == best[:, None]) & (best[:, None] > 0)).to(torch.uint8).argmax(1)
        max_i = torch.where(best > 0, members.gather(1, first[:, None])[:, 0], 0)
        pm = p * best
        step = pm > thresh
        nxt = child[max_i]
        result = torch.where(active & ((step & (nxt < 0)) | (~step & (group == 0))), max_i, result)
        result = torch.where(active & ~step & (group != 0), parent_of_group[group], result)
        go = active & step & (nxt >= 0)
        # The children's parent is max_i: its absolute prob is `best`, or class 0's when nothing was > 0.
        parent_abs = torch.where(go, torch.where(best > 0, best, class0), parent_abs)
        p = torch.where(go, pm, p)
        group = torch.where(go, nxt, group)
        active = go
    raise DarknetError(f"hierarchy_top_prediction does not end with hier_thresh={hier_thresh} "
                       "(Darknet loops forever here)")
