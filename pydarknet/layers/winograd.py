"""Winograd F(m x m, 3 x 3) for a 3x3, stride 1, pad 1 convolution on NHWC data (the fast variant's).

(m+2)^2 multiplies per m x m outputs instead of 9 m^2. Input tiles are transformed in one compiled pass
(pydarknet.layers.winograd_tiles); the (m+2)^2 channel products are one grouped 1x1 oneDNN conv (a group
per Winograd slot, its weights packed once, the bias inside); the output tiles are transformed, activated
and written in place in another pass. Where it pays, per conv shape: `winograd_tile` (timings in
benchmarks/README.md).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from pydarknet.layers import winograd_tiles

# Cross-correlation (Lavin & Gray 2015): Y = At [(G g Gt) * (Bt d B)] A on (m+2) x (m+2) input tiles;
# {m: (Bt, G, At)}. Every At has a column of ones: the product at (that column, that column) reaches
# every output with weight 1, so the bias is added there, inside the GEMM.
_MATRICES = {
    2: ([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]],
        [[1, 0, 0], [1 / 2, 1 / 2, 1 / 2], [1 / 2, -1 / 2, 1 / 2], [0, 0, 1]],
        [[1, 1, 1, 0], [0, 1, -1, -1]]),
    4: ([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0], [0, -2, -1, 2, 1, 0],
         [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]],
        [[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6], [1 / 24, 1 / 12, 1 / 6],
         [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]],
        [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]]),
}
_ONES_COLUMN = 1
# F(4x4) only for weights up to _SMALL_WEIGHTS floats: its products hold 4x the conv's weights (F(2x2)'s
# 16/9), and yolov2-voc's peak RSS would pass 700 MB with it on its 256 -> 512 convs.
_SMALL_WEIGHTS = 1 << 20
# No Winograd past this many floats of weights: F(2x2)'s products weights are 16/9 of the conv's, and
# yolov2-voc's 1280 -> 1024 conv (11.8M) alone would add 37 MB to its peak RSS (679-682 -> 643-648 MB
# direct, at 5-16 ms of 177-181 per pass).
_MAX_WEIGHTS = 10_000_000
# Temporaries (transformed tiles and their products) per band of tile rows: a large map goes through in
# bands so that they stay bounded (each band reads the weights again; one band was within the noise of the
# best split on every map of the zoo's networks measured, 64 -> 128 on 104x104: 8.5-8.9 ms against 8.7-14.6
# in 2-26 bands).
_BAND_BYTES = 48 << 20
# Filters whose weights are transformed at a time when recovering the 3x3 weights (float64 temporaries).
_INVERSE_CHUNK = 64


def winograd_tile(in_channels: int, weights: int, h: int, w: int) -> int:
    """The m of the Winograd F(m x m, 3 x 3) that beat the direct oneDNN conv for a 3x3 stride-1 conv with
    `in_channels` inputs and `weights` floats on an h x w map at batch 1, or 0 (per-shape timings in
    benchmarks/README.md): m = 4 from 64 input channels on maps of 16x16 and more, where its weights
    (36/9 of the conv's) stay small; m = 2 (16/9) from 128 input channels on 8x8 maps and more (7x7 pads
    to 8x8 tiles, a third wasted). Fewer input channels, or weights past _MAX_WEIGHTS: the direct conv
    (32 -> 64 on 112x112: 7.0 ms against 10.4 in F(4x4))."""
    if weights > _MAX_WEIGHTS:
        return 0
    if in_channels >= 64 and min(h, w) >= 16 and weights <= _SMALL_WEIGHTS:
        return 4
    return 2 if in_channels >= 128 and min(h, w) >= 8 else 0


def _matrices(m: int) -> tuple[Tensor, Tensor, Tensor]:
    return tuple(torch.tensor(t, dtype=torch.float64) for t in _MATRICES[m])


def transform_weights(weight: Tensor, m: int, mult: Tensor | None = None) -> Tensor:
    """(k, c, 3, 3) weights -> the (m+2)^2 slots' (t^2, k, c) products weights G g Gt, each filter times
    `mult` when given (the transform is linear per filter: Darknet's BN multiplier is applied to its
    result, which spares a folded copy of the weights)."""
    _, g, _ = _matrices(m)
    t, (k, c) = m + 2, weight.shape[:2]
    u = torch.mm(torch.kron(g, g).float(), weight.detach().reshape(k * c, 9).t()).view(t * t, k, c)
    return u.mul_(mult[:, None]) if mult is not None else u


def spatial_weights(u: Tensor, m: int) -> Tensor:
    """The inverse of `transform_weights`: (t^2, k, c) -> (k, c, 3, 3). G g Gt is injective (G has full
    column rank), so its least-squares inverse, in float64, gives the weights back within float rounding
    of the products' weights."""
    _, g, _ = _matrices(m)
    t2, k, c = u.shape
    inverse = torch.linalg.pinv(torch.kron(g, g))  # (9, t^2)
    weight = torch.empty(k, c, 3, 3)
    for start in range(0, k, _INVERSE_CHUNK):
        part = u[:, start:start + _INVERSE_CHUNK].double()
        weight[start:start + part.shape[1]] = (inverse @ part.reshape(t2, -1)).t().reshape(-1, c, 3, 3).float()
    return weight


def band_rows(m: int, c: int, k: int, h: int, w: int) -> int:
    """Tile rows per band on an h x w map: all of them, or as many bands as keep the temporaries (the
    transformed tiles and their products) within _BAND_BYTES each."""
    t = m + 2
    th, tw = -(-h // m), -(-w // m)
    bands = -(-4 * th * tw * t * t * (c + k) // _BAND_BYTES)
    return -(-th // min(bands, th))


def packed_layout(in_channels: int, m: int, rows: int, w: int) -> tuple[list[int], tuple]:
    """The grouped products conv's input shape for oneDNN (a band of tiles as a (1, t^2 c, tiles, 1)
    map) and its (padding, stride, dilation, groups)."""
    t = m + 2
    return [1, t * t * in_channels, rows * -(-w // m), 1], ([0, 0], [1, 1], [1, 1], t * t)


class WinogradPlan:
    """One conv's Winograd F(m x m, 3 x 3) on one h x w map: products weights packed for a band of its
    tile rows.

    oneDNN chooses the packed weight layout by problem size, and a call of another size reorders all the
    weights again (a 1024 x 1024 conv: 645 ms against 10 measured), so the tiles always go through in
    blocks of the count they were packed for: bands of whole tile rows, the last one's block filled with
    whatever the previous band left (their products are never read)."""

    threads = 0  # torch's thread count it was packed for (FastConv.plan)

    def __init__(self, m: int, packed: Tensor, bias: Tensor, c: int, h: int, w: int,
                 activation: Callable[[Tensor], Tensor] | None, slope: float | None) -> None:
        t, k = m + 2, bias.numel()
        self.m, self.c, self.k = m, c, k
        self.rows = band_rows(m, c, k, h, w)
        self.block = self.rows * -(-w // m)
        self.weight = packed
        _, self.group_args = packed_layout(c, m, self.rows, w)
        # The bias goes into the slot whose At column is all ones.
        slot_bias = torch.zeros(t * t, k)
        slot_bias[_ONES_COLUMN * t + _ONES_COLUMN] = bias
        self.bias = slot_bias.view(-1)
        self.act, self.slope = activation, 1.0 if slope is None else slope

    def __call__(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        t, k = self.m + 2, self.k
        th = -(-h // self.m)
        if not winograd_tiles.nhwc(x[0].permute(1, 2, 0)):  # a [route] group's channel slice is read as it is
            x = x.contiguous(memory_format=torch.channels_last)
        out = torch.empty(n, h, w, k, dtype=x.dtype, device=x.device)
        v = torch.empty(self.block, t * t, c)
        # The products conv's input: a (1, t^2 c, block, 1) map, NHWC, on v's memory.
        v_map = v.view(1, self.block, 1, t * t * c).permute(0, 3, 1, 2)
        for i in range(n):  # the layout is packed for one image's bands
            image = x[i].permute(1, 2, 0)
            for r in range(0, th, self.rows):
                rows = min(self.rows, th - r)
                winograd_tiles.input_tiles(image, self.m, r, rows, v)
                products = torch.ops.mkldnn._convolution_pointwise(v_map, self.weight, self.bias,
                                                                   *self.group_args, "none", [], None)
                # (block, t^2, k) in memory: the NHWC layout oneDNN gives an NHWC input (else a copy)
                products = products.permute(0, 2, 3, 1).contiguous()
                winograd_tiles.output_tiles(products, self.m, r, rows, self.slope, out[i])
        y = out.permute(0, 3, 1, 2)
        return y if self.act is None else self.act(y)
