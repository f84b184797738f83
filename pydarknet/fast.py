"""Opt-in CPU inference fast path: the same network with its convolutions rebuilt for speed.

`optimize_for_inference(net)` (or `pydarknet.load(cfg, weights, fast=True)`) changes the network in place:

- BatchNorm is folded into the conv weights and biases with Darknet's formula (`ConvLayer.folded`);
- a conv becomes one oneDNN primitive with pre-packed weights and its activation fused, on channels_last
  activations (torch's own conv reorders the weights on every call and runs the activation separately);
- a 3x3 stride-1 conv with many input channels becomes Winograd F(2x2, 3x3) or F(4x4, 3x3): 16
  multiplies per 2x2 outputs instead of 36, or 36 per 4x4 instead of 144 (`winograd_tile` says where);
- a 2 x 2 / 2 max-pool runs without an index map, in place (`HalvingMaxPool`);
- a batch runs one image at a time, the size every packed layout was chosen for (and whose activations
  stay in cache);
- glibc is asked to keep freed memory (process-wide `mallopt`), so that no pass page-faults its
  activations in again;
- the network is built without random initialisation when a weights file fills every tensor.

Outputs move by float rounding only (tests/test_fast_path.py states the tolerance). The result is for
inference: it cannot be trained or saved. Off the CPU only the BatchNorm folding applies.
Measurements of each step: benchmarks/README.md.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import platform
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from pydarknet.errors import DarknetError
from pydarknet.layers.activations import Activation
from pydarknet.layers.conv import ConvLayer
from pydarknet.layers.pool import MaxPoolLayer
from pydarknet.network import Darknet, build_network

# Darknet activations that oneDNN applies inside the conv: (oneDNN post-op, its scalars).
_FUSED = {"linear": ("none", []), "leaky": ("leaky_relu", [0.1]), "relu": ("relu", [])}

# Winograd F(m x m, 3 x 3) for cross-correlation (Lavin & Gray 2015): Y = At [(G g Gt) * (Bt d B)] A on
# (m+2) x (m+2) input tiles; {m: (Bt, G, At)}. Every At has a column of ones: the product at (that
# column, that column) reaches every output with weight 1, so the bias is added there, inside the GEMM.
_WINOGRAD = {
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
# Past this many output pixels per image the transforms' memory traffic outweighs the products saved
# (measured up to 104x104); F(4x4) only for weights up to _SMALL_WEIGHTS floats (memory).
_WINOGRAD_MAX_PIXELS = 12_000
_SMALL_WEIGHTS = 1 << 20
# Temporaries per band of tile rows in WinogradConv, where they are over 16x its weights (each band
# reads the weights again: 128 -> 256 on 68x68 is 1.7 ms slower in 4 bands, its temporaries 5.5x).
_BAND_BYTES = 8 << 20
_libc: ctypes.CDLL | None = None


class _SkipInit(TorchFunctionMode):
    """Random initialisation as a no-op: wasted work when a weights file overwrites every tensor."""

    _INIT = {Tensor.normal_, Tensor.uniform_, Tensor.zero_, nn.init.kaiming_uniform_, nn.init.uniform_}

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        if func in self._INIT:
            return args[0] if args else kwargs["tensor"]
        return func(*args, **(kwargs or {}))


class _InferenceConv(nn.Module):
    """Base of the rebuilt convs: inference only, and not written back to a .weights file."""

    def __init__(self, activation: str) -> None:
        super().__init__()
        self.act = None if activation in _FUSED else Activation(activation)

    def darknet_params(self) -> list[Tensor]:
        raise DarknetError("an inference-optimized network cannot be saved: load it without fast=True")

    def check_eval(self) -> None:
        if self.training:
            raise DarknetError("an inference-optimized network cannot be trained: load it without fast=True")


class PackedConv(_InferenceConv):
    """A conv as oneDNN runs it: weights reordered once into its blocked layout, activation fused."""

    def __init__(self, layer: ConvLayer, in_shape: list[int]) -> None:
        super().__init__(layer.act.name)
        conv = layer.conv
        weight, bias = layer.folded()
        self.args = (list(conv.padding), list(conv.stride), list(conv.dilation), conv.groups)
        # The layout is chosen for `in_shape`; other batch sizes run with it as well.
        self.weight = torch._C._nn.mkldnn_reorder_conv2d_weight(weight.to_mkldnn(), *self.args, in_shape)
        # A parameter (frozen), so that `next(net.parameters())` still tells the device.
        self.bias = nn.Parameter(bias.detach().clone(), requires_grad=False)
        self.attr, self.scalars = _FUSED.get(layer.act.name, ("none", []))

    def forward(self, x: Tensor) -> Tensor:
        self.check_eval()
        x = x.contiguous(memory_format=torch.channels_last)
        y = torch.ops.mkldnn._convolution_pointwise(x, self.weight, self.bias, *self.args, self.attr,
                                                    self.scalars, None)
        return y if self.act is None else self.act(y)


class WinogradConv(_InferenceConv):
    """A 3x3, stride 1, pad 1 conv as Winograd F(m x m, 3 x 3) on NHWC data: (m+2)^2 multiplies per m x m
    outputs instead of 9 m^2. Input tiles are transformed by a batched GEMM; the (m+2)^2 channel products
    are one grouped 1x1 oneDNN conv (a group per Winograd slot, its weights packed once, the bias inside);
    the outputs are transformed by a batched GEMM.

    oneDNN chooses the packed weight layout by problem size, and a call of another size reorders all the
    weights again (a 1024 x 1024 conv: 645 ms against 10 measured), so the tiles always go through in
    blocks of the count they were packed for. On the map the network was built for, a block is a band of
    whole tile rows: one band, or several where the temporaries would be large next to the weights
    (which each band reads again), so that they stay small (yolo-voc's 104x104 layers: 30 MB in 4 bands;
    within 1-3 ms of one band over the network, and its peak RSS about 20 MB lower)."""

    def __init__(self, layer: ConvLayer, m: int, in_shape: list[int]) -> None:
        super().__init__(layer.act.name)
        bt, g, at = (torch.tensor(t, dtype=torch.float64) for t in _WINOGRAD[m])
        t = m + 2
        # The transform is linear per filter: Darknet's BN multiplier (ConvLayer.folded) is applied to
        # its result, which spares a folded copy of the weights.
        weight = layer.conv.weight.detach()
        mult, bias = (None, layer.conv.bias.detach()) if layer.bn is None else layer.bn.folded()
        k, c = weight.shape[:2]
        # (t^2, 9) @ (9, k c): G g Gt of every filter, laid out as the grouped conv's (t^2 k, c, 1, 1).
        u = torch.mm(torch.kron(g, g).float(), weight.reshape(k * c, 9).t()).view(t * t, k, c)
        if mult is not None:
            u.mul_(mult[:, None])
        self.m = m
        self.map = (in_shape[2], in_shape[3])
        th, tw = -(-in_shape[2] // m), -(-in_shape[3] // m)
        # Bytes per tile of the tiles, their transform, the products and the output tiles.
        temporaries = 4 * th * tw * (t * t * (2 * c + k) + m * m * k)
        bands = 1 if 16 * 4 * u.numel() > temporaries else -(-temporaries // _BAND_BYTES)
        self.rows = -(-th // min(bands, th))  # tile rows per band
        self.block = self.rows * tw
        self.group_args = ([0, 0], [1, 1], [1, 1], t * t)
        packed = u.view(t * t * k, c, 1, 1).to_mkldnn()
        del u  # the packing copies twice: keep at most two copies of the largest weights alive
        self.weight = torch._C._nn.mkldnn_reorder_conv2d_weight(packed, *self.group_args,
                                                                [1, t * t * c, self.block, 1])
        # The bias goes into the slot whose At column is all ones; a parameter (frozen), so that
        # `next(net.parameters())` still tells the device.
        slot_bias = torch.zeros(t * t, k)
        slot_bias[_ONES_COLUMN * t + _ONES_COLUMN] = bias
        self.bias = nn.Parameter(slot_bias.view(-1), requires_grad=False)
        self.register_buffer("bt", torch.kron(bt, bt).float(), persistent=False)
        self.register_buffer("at", torch.kron(at, at).float(), persistent=False)
        self.slope = 0.1 if layer.act.name == "leaky" else 0.0 if layer.act.name == "relu" else None

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

    def forward(self, x: Tensor) -> Tensor:
        self.check_eval()
        n, c, h, w = x.shape
        m, t, k = self.m, self.m + 2, self.bias.numel() // (self.m + 2) ** 2
        th, tw = -(-h // m), -(-w // m)
        # NHWC, padded by 1 and up to whole m x m output tiles; tiles[i, r, q] is a t x t x c input tile.
        xp = F.pad(x.permute(0, 2, 3, 1), (0, 0, 1, m * tw - w + 1, 1, m * th - h + 1))
        s = xp.stride()
        tiles = xp.as_strided((n, th, tw, t, t, c), (s[0], m * s[1], m * s[2], s[1], s[2], s[3]))
        out = torch.empty(n, th, m, tw, m, k, dtype=x.dtype, device=x.device)
        if (h, w) == self.map:  # bands of tile rows, each written in place when done
            for i in range(n):
                for r in range(0, th, self.rows):
                    y = self._outputs(tiles[i, r:r + self.rows].reshape(-1, t * t, c))
                    out[i, r:r + self.rows] = y.view(-1, tw, m, m, k).permute(0, 2, 1, 3, 4)
        else:  # another map size: the tiles in order, in blocks
            flat = tiles.reshape(n * th * tw, t * t, c)
            y = torch.cat([self._outputs(part) for part in flat.split(self.block)])
            out.copy_(y.view(n, th, tw, m, m, k).permute(0, 1, 3, 2, 4, 5))
        return out.view(n, m * th, m * tw, k)[:, :h, :w].permute(0, 3, 1, 2)


class HalvingMaxPool(nn.Module):
    """Darknet's 2 x 2 / 2 max-pool on an even map (no padding) as two pairwise maxima on NHWC data, the
    first written over its input, which nothing else reads. torch's CPU max_pool2d also makes an int64
    index map (for yolo-voc's first pool 11 MB); this is 0.9 ms against its 1.2 there."""

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        if h % 2 or w % 2 or not x.is_contiguous(memory_format=torch.channels_last):
            return F.max_pool2d(x, 2, 2)
        rows = x.permute(0, 2, 3, 1).view(n, h // 2, 2, w, c)
        top = rows[:, :, 0]
        torch.maximum(top, rows[:, :, 1], out=top)  # elementwise: reads each value before it is overwritten
        cols = top.unflatten(2, (w // 2, 2))
        return torch.maximum(cols[:, :, :, 0], cols[:, :, :, 1]).permute(0, 3, 1, 2)


def winograd_tile(layer: ConvLayer, h: int, w: int) -> int:
    """The m of the Winograd F(m x m, 3 x 3) that beat the direct oneDNN conv for this conv on an h x w map
    at batch 1, or 0 (per-shape timings in benchmarks/README.md): m = 4 from 64 input channels on maps of
    24x24 up to _WINOGRAD_MAX_PIXELS, where its weights (36/9 of the conv's) stay small; m = 2 (16/9) from
    128 input channels on 8x8 maps and more (7x7 pads to 8x8 tiles, a third wasted)."""
    conv = layer.conv
    if (conv.kernel_size, conv.stride, conv.padding, conv.dilation, conv.groups) != ((3, 3), (1, 1), (1, 1),
                                                                                      (1, 1), 1):
        return 0
    if h * w > _WINOGRAD_MAX_PIXELS:
        return 0
    if conv.in_channels >= 64 and min(h, w) >= 24 and conv.weight.numel() <= _SMALL_WEIGHTS:
        return 4
    return 2 if conv.in_channels >= 128 and min(h, w) >= 8 else 0


def _glibc() -> ctypes.CDLL | None:
    global _libc
    if _libc is None and platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        _libc = ctypes.CDLL(ctypes.util.find_library("c"))
    return _libc


def _trim_heap() -> None:
    """Return the heap's free pages to the OS (glibc's malloc_trim): the weights of each replaced layer
    leave a hole the next layer's may not fit in, which would otherwise stay resident."""
    if (libc := _glibc()) is not None:
        libc.malloc_trim(0)


def keep_freed_memory() -> None:
    """Let glibc serve large blocks from the heap and keep freed pages: by default a block over its
    (dynamic) mmap threshold is mapped on allocation and unmapped on free, so every pass page-faults its
    activations in again (yolo-voc at batch 1: 141 ms against 118). Process-wide, hence documented; the
    fast path calls it. (1 << 30: mallopt takes a C int.)"""
    if (libc := _glibc()) is not None:
        m_trim_threshold, m_mmap_threshold = -1, -3
        libc.mallopt(m_mmap_threshold, 1 << 30)
        libc.mallopt(m_trim_threshold, 1 << 30)


@torch.no_grad()
def optimize_for_inference(net: Darknet, winograd: bool = True) -> Darknet:
    """Rebuild `net`'s convolutions for CPU inference, in place (see the module docstring), and return it
    in eval mode. `winograd=False` keeps every conv direct."""
    if next(net.buffers()).device.type != "cpu" or not torch.backends.mkldnn.is_available():
        return net.fold_batchnorm().eval()
    inputs = [net.input_shape, *net.shapes[:-1]]
    convs = [i for i, layer in enumerate(net.layers) if isinstance(layer, ConvLayer)]
    # Largest weights first: each rebuilt conv holds more than the one it replaces, so the memory in use
    # peaks at the end, where the temporaries of a small layer add little to it.
    for i in sorted(convs, key=lambda j: -net.layers[j].conv.weight.numel()):
        layer, shape = net.layers[i], [1, inputs[i].c, inputs[i].h, inputs[i].w]
        m = winograd_tile(layer, shape[2], shape[3]) if winograd else 0
        net.layers[i] = WinogradConv(layer, m, shape) if m else PackedConv(layer, shape)
        del layer
        _trim_heap()
    for i, layer in enumerate(net.layers):
        if (isinstance(layer, MaxPoolLayer) and (layer.size, layer.stride, layer.pads) == (2, 2, (0, 0, 0, 0))
                and i > 0 and not net._keep[i - 1] and not net.sources[i]):
            net.layers[i] = HalvingMaxPool()
    net.inference_optimized = True
    keep_freed_memory()
    return net.eval()  # the new modules too


@contextlib.contextmanager
def skip_init() -> Iterator[None]:
    """Within this block, building a network leaves its weights uninitialised (fill them all after)."""
    with _SkipInit():
        yield


def load_for_inference(cfg: str | Path, weights: str | Path | None, device: str | torch.device = "cpu",
                       upto: int | None = None) -> Darknet:
    """`pydarknet.load(..., fast=True)`: build without random initialisation when the weights file fills
    every tensor, load, move, `optimize_for_inference`."""
    with skip_init() if weights is not None and upto is None else contextlib.nullcontext():
        net = build_network(cfg)
    if weights is not None:
        net.load_weights(weights, upto=upto)
    return optimize_for_inference(net.to(torch.device(device)))
