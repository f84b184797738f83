"""Winograd F(m x m, 3 x 3) for a 3x3, stride 1, pad 1 convolution on NHWC data (the fast variant's).

(m+2)^2 multiplies per m x m outputs instead of 9 m^2. Input tiles are transformed by a batched GEMM;
the (m+2)^2 channel products are one grouped 1x1 oneDNN conv (a group per Winograd slot, its weights
packed once, the bias inside); the outputs are transformed by a batched GEMM. Where it pays, per conv
shape: `winograd_tile` (timings in benchmarks/README.md).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

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
# Past this many output pixels per image the transforms' memory traffic outweighs the products saved. Where
# that happens depends on the machine's memory system: on this project's 2-core EPYC VM, 64 -> 128 on
# 104x104 took 6.8 ms in F(4x4) against 8.6 direct one month and 43.5 against 23.2 the next (76x76 and
# below kept winning: 128 -> 256 on 76x76 35.0 against 41.7, on 52x52 10.9 against 19.3), so the limit
# sits where both measurements agree. F(4x4) only for weights up to _SMALL_WEIGHTS floats (its products
# hold 4x the conv's weights: yolov2-voc's peak RSS would pass 700 MB with it on its 256 -> 512 convs).
_MAX_PIXELS = 6_000
_SMALL_WEIGHTS = 1 << 20
# Temporaries per band of tile rows, where they are over 16x the weights (each band reads the weights
# again: 128 -> 256 on 68x68 is 1.7 ms slower in 4 bands, its temporaries 5.5x).
_BAND_BYTES = 8 << 20
# Filters whose weights are transformed at a time when recovering the 3x3 weights (float64 temporaries).
_INVERSE_CHUNK = 64


def winograd_tile(in_channels: int, weights: int, h: int, w: int) -> int:
    """The m of the Winograd F(m x m, 3 x 3) that beat the direct oneDNN conv for a 3x3 stride-1 conv with
    `in_channels` inputs and `weights` floats on an h x w map at batch 1, or 0 (per-shape timings in
    benchmarks/README.md): m = 4 from 64 input channels on maps of 24x24 up to _MAX_PIXELS, where its
    weights (36/9 of the conv's) stay small; m = 2 (16/9) from 128 input channels on 8x8 maps and more
    (7x7 pads to 8x8 tiles, a third wasted)."""
    if h * w > _MAX_PIXELS:
        return 0
    if in_channels >= 64 and min(h, w) >= 24 and weights <= _SMALL_WEIGHTS:
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
    """Tile rows per band on an h x w map: all of them, or fewer where the temporaries (tiles, their
    transform, the products, the output tiles) would be large next to the weights, which each band
    reads again (yolov2-voc's 104x104 layers: 30 MB in 4 bands; within 1-3 ms of one band over the
    network, and its peak RSS about 20 MB lower)."""
    t = m + 2
    th, tw = -(-h // m), -(-w // m)
    temporaries = 4 * th * tw * (t * t * (2 * c + k) + m * m * k)
    bands = 1 if 16 * 4 * t * t * k * c > temporaries else -(-temporaries // _BAND_BYTES)
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
    blocks of the count they were packed for: bands of whole tile rows, the last one padded."""

    def __init__(self, m: int, packed: Tensor, bias: Tensor, c: int, h: int, w: int,
                 activation: Callable[[Tensor], Tensor] | None, slope: float | None) -> None:
        bt, _, at = _matrices(m)
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
        self.bt, self.at = torch.kron(bt, bt).float(), torch.kron(at, at).float()
        self.act, self.slope = activation, slope

    def _outputs(self, tiles: Tensor) -> Tensor:
        """(count, t^2, c) input tiles, count <= block -> (count, m^2, k) output tiles, activated."""
        count, t2, c = tiles.shape
        v = torch.matmul(self.bt, tiles)
        del tiles  # temporaries go as soon as they are used: the pass's peak memory is their sum
        if count < self.block:  # zero tiles fill the block
            v = F.pad(v, (0, 0, 0, 0, 0, self.block - count))
        x = v.view(1, self.block, 1, t2 * c).permute(0, 3, 1, 2)  # a (1, t^2 c, block, 1) map, NHWC
        products = torch.ops.mkldnn._convolution_pointwise(x, self.weight, self.bias, *self.group_args, "none",
                                                           [], None)
        del v, x
        y = torch.matmul(self.at, products.permute(0, 2, 3, 1).view(self.block, t2, -1)[:count])
        del products
        if self.slope is not None:
            return F.leaky_relu_(y, self.slope)  # elementwise: the same before the tiles are put in place
        return y if self.act is None else self.act(y)

    def __call__(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        m, t, k = self.m, self.m + 2, self.k
        th, tw = -(-h // m), -(-w // m)
        # NHWC, padded by 1 and up to whole m x m output tiles; tiles[i, r, q] is a t x t x c input tile.
        xp = F.pad(x.permute(0, 2, 3, 1), (0, 0, 1, m * tw - w + 1, 1, m * th - h + 1))
        s = xp.stride()
        tiles = xp.as_strided((n, th, tw, t, t, c), (s[0], m * s[1], m * s[2], s[1], s[2], s[3]))
        out = torch.empty(n, th, m, tw, m, k, dtype=x.dtype, device=x.device)
        for i in range(n):  # the layout is packed for one image's bands: each written in place when done
            for r in range(0, th, self.rows):
                y = self._outputs(tiles[i, r:r + self.rows].reshape(-1, t * t, c))
                out[i, r:r + self.rows] = y.view(-1, tw, m, m, k).permute(0, 2, 1, 3, 4)
        return out.view(n, m * th, m * tw, k)[:, :h, :w].permute(0, 3, 1, 2)
