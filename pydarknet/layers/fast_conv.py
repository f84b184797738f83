"""[convolutional], inference variant: BatchNorm folded, oneDNN kernels packed per input shape.

`FastConv` holds the layer's parameters in Darknet's order until its weights are packed (so
pydarknet.weights loads it as it loads ConvLayer), then only packed copies. On the CPU a conv runs as a
plan made for its input's map size on first use and kept in a small LRU cache: one oneDNN primitive with
its weights pre-packed and the activation fused, on channels_last data (torch's conv reorders the weights
on every call and runs the activation separately), or Winograd F(2x2)/F(4x4) where it pays
(pydarknet.layers.winograd). Off the CPU (or without oneDNN) it is the BN-folded conv.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pydarknet.errors import DarknetError
from pydarknet.layers import winograd, winograd_tiles
from pydarknet.layers.registry import Shape
from pydarknet.malloc import trim_heap

if TYPE_CHECKING:
    from pydarknet.layers.conv import ConvLayer

# Darknet activations that oneDNN applies inside a direct conv: (oneDNN post-op, its scalars). oneDNN's
# sigmoid and swish are within 1.2e-7 relative of torch's (AlexeyAB's head convs, yolov4-csp-swish).
FUSED = {"linear": ("none", []), "leaky": ("leaky_relu", [0.1]), "relu": ("relu", []),
         "logistic": ("sigmoid", []), "swish": ("swish", [])}
# Activations that run after the conv (always after a Winograd one), on its fresh output: in place, with
# torch's one-pass kernels. F.mish is within 1e-7 relative of the exact x*tanh(softplus(x)) and about half
# its time (yolov4 @608 sends 95M values through mish).
IN_PLACE = {"mish": lambda y: F.mish(y, inplace=True), "logistic": torch.sigmoid_,
            "swish": lambda y: F.silu(y, inplace=True)}
# Map sizes whose plans a layer keeps (least recently used first out): each holds packed weights unless
# its layout is one another size's plan already has.
PLAN_SHAPES = 3

NOT_TRAINABLE = "a network loaded for inference (the default) cannot be trained: load it with exact=True"
PACKED = ("a network loaded for inference (the default) holds its weights packed: it cannot be saved or given "
          "other weights (load it with exact=True)")


def layout(packed: Tensor) -> bytes:
    """oneDNN's memory descriptor of a packed tensor: a conv runs on weights as they are only when it
    is the one it expects for its input (else it reorders them inside every call)."""
    return torch.ops.mkldnn._get_mkldnn_serialized_md(packed).numpy().tobytes()


class DirectPlan:
    """One oneDNN conv with its weights packed for one image of one map size (a batch runs image by
    image: the layout is chosen by problem size, and a call of another size reorders all the weights)."""

    m = 0
    threads = 0  # torch's thread count it was packed for (FastConv.plan)

    def __init__(self, packed: Tensor, bias: Tensor, args: tuple, fused: tuple[str, list] | None,
                 activation: Callable[[Tensor], Tensor]) -> None:
        self.weight, self.bias, self.args = packed, bias, args
        self.attr, self.scalars = fused or ("none", [])
        self.act = None if fused else activation

    def _one(self, x: Tensor) -> Tensor:
        y = torch.ops.mkldnn._convolution_pointwise(x, self.weight, self.bias, *self.args, self.attr,
                                                    self.scalars, None)
        return y if self.act is None else self.act(y)

    def __call__(self, x: Tensor) -> Tensor:
        x = x.contiguous(memory_format=torch.channels_last)
        if len(x) == 1:
            return self._one(x)
        return torch.cat([self._one(x[i:i + 1]) for i in range(len(x))])


class FastConv(nn.Module):
    """The inference variant of a ConvLayer (see the module docstring). Eval only; not saved."""

    def __init__(self, layer: ConvLayer, in_shape: Shape) -> None:
        super().__init__()
        conv = layer.conv
        # Parameters as Darknet stores them, until packing or folding replaces them.
        self.source: ConvLayer | None = layer
        self.args = (list(conv.padding), list(conv.stride), list(conv.dilation), conv.groups)
        self.kernel = conv.kernel_size
        self.in_channels = conv.in_channels
        self.weights = conv.weight.numel()
        self.in_hw = (in_shape.h, in_shape.w)  # the cfg's: packed for when the network is loaded
        self.act = layer.act
        self.fused = FUSED.get(layer.act.name)
        self.after = IN_PLACE.get(layer.act.name, layer.act)  # the activation when not fused
        self.winograd = True  # False: direct convs only (benchmarks/infer.py --ablation)
        self.plans: OrderedDict[tuple[int, int], DirectPlan | winograd.WinogradPlan] = OrderedDict()
        # The folded conv's: its bias (a frozen parameter, so that `next(net.parameters())` tells the
        # device) and, when folded rather than packed, its weight.
        self.bias: nn.Parameter | None = None
        self.weight: nn.Parameter | None = None
        self.train(False)

    def train(self, mode: bool = True) -> FastConv:
        if mode:
            raise DarknetError(NOT_TRAINABLE)
        return super().train(False)

    def state_dict(self, *args, **kwargs) -> dict:  # noqa: ANN002, ANN003
        raise DarknetError(PACKED)

    def darknet_params(self) -> list[Tensor]:
        """The tensors pydarknet.weights fills, in Darknet's order (until the weights are packed)."""
        if self.source is None:
            raise DarknetError(PACKED)
        return self.source.darknet_params()

    @property
    def winograd_able(self) -> bool:
        """A 3x3 stride-1 conv whose activation is elementwise (Winograd activates its output tiles, whose
        channels are not dim 1: AlexeyAB's normalize_channels* normalise across the channels)."""
        return ((self.kernel, self.args) == ((3, 3), ([1, 1], [1, 1], [1, 1], 1))
                and not self.act.name.startswith("normalize_channels"))

    def prepare(self) -> None:
        """Pack for the cfg's input size on the CPU (fold elsewhere); the plain parameters go."""
        if self.source is None:
            return
        if _packs(self.source.conv.weight):
            self.plan(*self.in_hw)
        else:
            self.fold()

    @torch.no_grad()
    def fold(self) -> None:
        """Run as the BN-folded conv (what the variant is off the CPU), from any copy of the weights."""
        if self.weight is not None:
            return
        like = self.source.conv.weight if self.source is not None else self.bias  # the module's device, dtype
        weight = self._dense_weight()
        bias = self._source_bias() if self.source is not None else self.bias
        self.weight = nn.Parameter(weight.detach().to(like), requires_grad=False)
        self.bias = nn.Parameter(bias.detach().to(like), requires_grad=False)
        self.source = None
        self.plans.clear()

    def forward(self, x: Tensor) -> Tensor:
        if self.weight is None and _packs(x):
            return self.plan(x.shape[2], x.shape[3])(x)
        self.fold()
        padding, stride, dilation, groups = self.args
        return self.act(F.conv2d(x, self.weight, self.bias, stride, padding, dilation, groups))

    @torch.no_grad()
    def plan(self, h: int, w: int) -> DirectPlan | winograd.WinogradPlan:
        """The plan for an h x w input map at torch's thread count: cached, or made now (the least recently
        used one goes). oneDNN packs weights for a thread count too: a plan called with another reorders
        every weight on every call (yolov4-tiny @416 packed for 2 threads, run on 1: 430 ms against 87)."""
        threads = torch.get_num_threads()
        cached = self.plans.get((h, w))
        if cached is not None and cached.threads == threads:
            self.plans.move_to_end((h, w))
            return cached
        m = winograd.winograd_tile(self.in_channels, self.weights, h, w) if self.winograd_able and \
            self.winograd and winograd_tiles.available() else 0
        if self.bias is None:
            self.bias = nn.Parameter(self._source_bias().clone(), requires_grad=False)
        if m:
            rows = winograd.band_rows(m, self.in_channels, self.bias.numel(), h, w)
            shape, args = winograd.packed_layout(self.in_channels, m, rows, w)
            packed = self._packed(m, shape, args)
            slope = _slope(self.act.name)
            after = None if slope is not None or self.act.name == "linear" else self.after
            made = winograd.WinogradPlan(m, packed, self.bias, self.in_channels, h, w, after, slope)
        else:
            packed = self._packed(0, [1, self.in_channels, h, w], self.args)
            made = DirectPlan(packed, self.bias, self.args, self.fused, self.after)
        made.threads = threads
        self.plans[(h, w)] = made
        self.plans.move_to_end((h, w))
        self.source = None  # the plain weights go once a packed copy exists
        while len(self.plans) > PLAN_SHAPES:
            self.plans.popitem(last=False)
        return made

    def _packed(self, m: int, shape: list[int], args: tuple) -> Tensor:
        """Weights packed for a conv (m = 0) or Winograd products (m) on `shape`: the copy of a plan of
        the same kind when its layout fits (oneDNN's reorder always copies), else a new one, reordered
        from such a copy or packed from the conv's weights."""
        same = [p.weight for p in self.plans.values() if p.m == m]
        if same:
            packed = torch._C._nn.mkldnn_reorder_conv2d_weight(same[0], *args, shape)
            return next((p for p in same if layout(p) == layout(packed)), packed)
        if not m:
            plain = self._dense_weight()
        elif self.source is not None:  # BN's multiplier after the transform: no folded copy of the weights
            mult = self.source.bn.folded()[0] if self.source.bn is not None else None
            plain = winograd.transform_weights(self.source.conv.weight, m, mult).view(-1, self.in_channels, 1, 1)
        else:
            plain = winograd.transform_weights(self._dense_weight(), m).view(-1, self.in_channels, 1, 1)
        dense = plain.to_mkldnn()
        # Packing copies twice: at most two copies of the largest weights alive, and the first one's
        # memory returned before the second is made (the packed copy is larger than the hole it leaves
        # where the heap serves such blocks: keep_freed_memory; yolov2-voc's peak RSS 686 -> 622 MB).
        del plain
        trim_heap()
        return torch._C._nn.mkldnn_reorder_conv2d_weight(dense, *args, shape)

    def _source_bias(self) -> Tensor:
        """The folded bias from the parameters (ConvLayer.folded's, without its folded weights)."""
        bn = self.source.bn
        return (bn.folded()[1] if bn is not None else self.source.conv.bias).detach()

    def _dense_weight(self) -> Tensor:
        """The BN-folded (k, c/groups, kh, kw) weights from whichever copy is at hand: the parameters, a
        direct plan's (exact), or a Winograd plan's (within float rounding)."""
        if self.source is not None:
            return self.source.folded()[0]
        if self.weight is not None:
            return self.weight
        plans = sorted(self.plans.values(), key=lambda p: p.m)
        plan = plans[0]
        if plan.m == 0:
            return plan.weight.to_dense()
        t2 = (plan.m + 2) ** 2
        return winograd.spatial_weights(plan.weight.to_dense().view(t2, -1, self.in_channels), plan.m)

    def extra_repr(self) -> str:
        return f"{self.act.name}, plans for {list(self.plans)}"


def _packs(x: Tensor) -> bool:
    """Whether oneDNN's packed kernels run this tensor's convs."""
    return x.device.type == "cpu" and x.dtype == torch.float32 and torch.backends.mkldnn.is_available()


def _slope(activation: str) -> float | None:
    """The Winograd plan's in-place activation: leaky and relu as a leaky_relu_ slope."""
    return {"leaky": 0.1, "relu": 0.0}.get(activation)
