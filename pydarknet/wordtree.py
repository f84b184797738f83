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
from pydarknet.fileio import read_text


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
    def _gather_parent(self) -> Tensor:
        """Per node the index the depth passes multiply by: its parent, or `n` (a column of ones) for
        roots and for nodes whose parent is not an earlier node."""
        back = (self.parent >= 0) & (self.parent < np.arange(self.n))
        return torch.from_numpy(np.where(back, self.parent, self.n).astype(np.int64))

    @cached_property
    def _forward_parent_index(self) -> np.ndarray:
        """Per node the raw value the C loop multiplies it by before its parent is updated: the parent for
        nodes of `_forward_parents`, else `n` (ones)."""
        index = np.full(self.n, self.n, dtype=np.int64)
        index[self._forward_parents] = self.parent[self._forward_parents]
        return index

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
    return path, read_text(path, what).splitlines()


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


# The WordTree softmax over size buckets, as source: compiled below for the runtime, and written out as it is by
# `pydarknet codegen`, so that the two cannot differ.
TREE_SOFTMAX_SOURCE = '''def tree_softmax(x: Tensor, perm: Tensor, inverse: Tensor,
                 buckets: tuple[tuple[int, int], ...], dim: int) -> Tensor:
    """WordTree softmax: a max-subtracted softmax over each group of sibling classes along `dim`.
    `perm` puts groups of equal size next to each other, `buckets` lists the (group size, group count)
    runs it makes."""
    xp = x.index_select(dim, perm)
    lead, tail = x.shape[:dim], x.shape[dim + 1 :]
    outs, start = [], 0
    for size, count in buckets:
        chunk = xp.narrow(dim, start, size * count).reshape(*lead, count, size, *tail)
        e = torch.exp(chunk - chunk.detach().amax(dim + 1, keepdim=True))
        outs.append((e / e.sum(dim + 1, keepdim=True)).reshape(*lead, size * count, *tail))
        start += size * count
    return torch.cat(outs, dim).index_select(dim, inverse)
'''
_namespace: dict = {"torch": torch, "Tensor": Tensor}
exec(compile(TREE_SOFTMAX_SOURCE, "<TREE_SOFTMAX_SOURCE>", "exec"), _namespace)  # noqa: S102 - our own text
_bucket_softmax: Callable[..., Tensor] = _namespace["tree_softmax"]


def tree_softmax(x: Tensor, tree: Tree, dim: int = -1) -> Tensor:
    """Max-subtracted softmax (temperature 1) over each group's classes along `dim` (Darknet's softmax_tree):
    `e = exp(x - max)`, `e / sum(e)` in float32 as written (a division, no reciprocal).

    Groups of equal size are gathered next to each other so that each size is one batched softmax (41
    sizes in the 9k tree): TREE_SOFTMAX_SOURCE. When no graph is recorded (autograd, tracing), every size is
    computed with the same ops in place into one buffer: 867 x 9418 values make this memory bound, and
    out-of-place ops allocate (and page-fault) a temporary per step and per size, then `cat` them."""
    dim = dim % x.dim()
    perm, inverse, buckets = tree._size_buckets
    perm_t, inverse_t = torch.from_numpy(perm).to(x.device), torch.from_numpy(inverse).to(x.device)
    if (x.requires_grad and torch.is_grad_enabled()) or torch.jit.is_tracing() or torch.compiler.is_compiling():
        return _bucket_softmax(x, perm_t, inverse_t, buckets, dim)
    xp = x.index_select(dim, perm_t)
    y = torch.empty_like(xp)
    lead, tail = x.shape[:dim], x.shape[dim + 1 :]
    start = 0
    for size, count in buckets:
        chunk = xp.narrow(dim, start, size * count).reshape(*lead, count, size, *tail)
        out = y.narrow(dim, start, size * count).view(*lead, count, size, *tail)
        torch.sub(chunk, chunk.amax(dim + 1, keepdim=True), out=out).exp_()
        out.div_(out.sum(dim + 1, keepdim=True))
        start += size * count
    return y.index_select(dim, inverse_t)


def hierarchy_predictions(probs: Tensor, tree: Tree, dim: int = -1) -> Tensor:
    """Darknet's in-place `for j: p[j] *= p[parent[j]]` (only_leaves=0) as a new tensor, with gathers only
    (so that it also exports to ONNX).

    Pass k makes the nodes k levels below a root final: each node is its own prob times its parent's
    final value, the single float32 multiply Darknet's in-place loop does, so the result is bit-identical.
    A node whose parent is itself or a later node (only in hand-made trees) reads that parent's raw value,
    as the C loop does, before the passes."""
    dim = dim % probs.dim()
    parent = tree._gather_parent.to(probs.device)
    base = probs
    if tree._forward_parents.size:
        raw_parent = torch.cat([probs, torch.ones_like(probs.narrow(dim, 0, 1))], dim)
        forward = torch.from_numpy(tree._forward_parent_index).to(probs.device)
        base = probs * raw_parent.index_select(dim, forward)
    absolute = base
    for _ in range(len(tree._depth_levels)):
        padded = torch.cat([absolute, torch.ones_like(absolute.narrow(dim, 0, 1))], dim)
        absolute = base * padded.index_select(dim, parent)
    return absolute


def hierarchy_top_prediction(probs_abs: Tensor, tree: Tree, hier_thresh: float) -> Tensor:
    """Darknet's `hierarchy_top_prediction` for each row of (B, n) absolute (path-multiplied) probs.

    From the root group, take the group's max (first index; class 0 if no value is > 0) while
    `p*max > hier_thresh` (float32), descending into its children; stop at a leaf, or return the
    max of the root group, or the parent of the current group."""
    probs = probs_abs.detach().cpu().numpy()
    padded = np.concatenate([probs, np.zeros((probs.shape[0], 1), probs.dtype)], 1)  # column n: padding
    top = _top_walk(lambda ids, members, parent_abs: padded[ids[:, None], members], probs.shape[0], tree,
                    hier_thresh)
    return torch.from_numpy(top).to(probs_abs.device)


def hierarchy_top_prediction_region(raw: Tensor, anchor: Tensor, cell: Tensor, tree: Tree,
                                    hier_thresh: float) -> Tensor:
    """`hierarchy_top_prediction` after `hierarchy_predictions` for boxes whose group-softmax class probs
    are `raw[anchor[b], :, cell[b]]` of a (n, classes, cells) region view (see `top_prediction_region`)."""
    top = top_prediction_region(raw.detach().cpu().numpy(), anchor.cpu().numpy(), cell.cpu().numpy(), tree,
                                hier_thresh)
    return torch.from_numpy(top).to(raw.device)


def top_prediction_region(raw: np.ndarray, anchor: np.ndarray, cell: np.ndarray, tree: Tree,
                          hier_thresh: float) -> np.ndarray:
    """`hierarchy_top_prediction_region` on a numpy view (strided: nothing is copied).

    The walk only reads the groups it visits: a member's absolute prob is its own times its parent's,
    and the parent is the max just taken (the same float32 product Darknet stores), so the full
    tree product over all classes (a pass over the whole output) is never formed. A few boxes and ~16
    levels make it a loop of tiny array operations: numpy's, as torch's per-call cost would dominate."""
    classes = raw.shape[1]

    def absolute(ids: np.ndarray, members: np.ndarray, parent_abs: np.ndarray) -> np.ndarray:
        real = members < classes  # index `classes` is padding
        got = raw[anchor[ids, None], np.where(real, members, 0), cell[ids, None]]
        return np.where(real, got * parent_abs[:, None], np.float32(0))

    return _top_walk(absolute, anchor.shape[0], tree, hier_thresh)


def _top_walk(values: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray], rows: int, tree: Tree,
              hier_thresh: float) -> np.ndarray:
    """The walk of `hierarchy_top_prediction`, batched over rows; `values(ids, members, parent_abs)` gives
    the float32 absolute probs of the (len(ids), S) class ids `members` (id n: padding, 0) of rows `ids`,
    whose parent has absolute prob `parent_abs`. Rows leave the batch as their walk ends."""
    table, child = tree._padded_groups, tree.child
    parent_of_group = tree.parent[tree.group_offset]
    thresh = np.float32(hier_thresh)
    result = np.full(rows, -1, dtype=np.int64)
    ids = np.arange(rows)
    group = np.zeros(rows, dtype=np.int64)
    p = np.ones(rows, dtype=np.float32)
    parent_abs = np.ones(rows, dtype=np.float32)  # roots: raw * 1 == raw
    class0 = values(ids, np.zeros((rows, 1), dtype=np.int64), parent_abs)[:, 0]  # a root
    # Each accepted step moves to a group of later classes, so n+1 steps bound any walk that ends.
    for _ in range(tree.n + 1):
        if not ids.size:
            return result
        members = table[group, : max(int(tree.group_size[group].max()), 1)]
        vals = values(ids, members, parent_abs)
        vals = np.where(vals > 0, vals, np.float32(0))  # C: max starts at 0 and takes `val > max` (NaN never)
        first = vals.argmax(1)  # the first of equal maxima, as `val > max`
        every = np.arange(ids.size)
        best = vals[every, first]
        max_i = np.where(best > 0, members[every, first], 0)
        pm = p * best
        step = pm > thresh
        nxt = child[max_i]
        leaf = (step & (nxt < 0)) | (~step & (group == 0))
        result[ids[leaf]] = max_i[leaf]
        up = ~step & (group != 0)
        result[ids[up]] = parent_of_group[group[up]]
        go = step & (nxt >= 0)
        # The children's parent is max_i: its absolute prob is `best`, or class 0's when nothing was > 0.
        parent_abs = np.where(best > 0, best, class0)[go]
        ids, group, p, class0 = ids[go], nxt[go], pm[go], class0[go]
    raise DarknetError(f"hierarchy_top_prediction does not end with hier_thresh={hier_thresh} "
                       "(Darknet loops forever here)")
