"""Darknet's batch normalisation: `(x-mean)/(sqrt(var)+1e-6)` (pjreddie) or `(x-mean)/sqrt(var+1e-5)`
(AlexeyAB), and its own training backward.

Darknet's forward uses a 1/(N-1) batch variance, while its backward (`mean_delta_cpu`,
`variance_delta_cpu`, `normalize_delta_cpu`) uses eps 1e-5 on the variance and 1/N: not the exact
derivative of its forward, so autograd would not reproduce Darknet's gradients.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from pydarknet.layers.activations import compile_expression

# The standard deviation each Darknet divides by, as torch expressions of the variance `{var}` (runtime and
# codegen both use these): pjreddie adds its epsilon to sqrt(var), AlexeyAB (`normalize_cpu`) to var.
STD_CODE = {"pjreddie": "{var}.sqrt() + 1e-06", "alexeyab": "torch.sqrt({var} + 1e-05)"}
_STD = {dialect: compile_expression(code.format(var="var"), "var") for dialect, code in STD_CODE.items()}


def batchnorm_source(dialect: str) -> str:
    """The inference BatchNorm as the method `pydarknet codegen` writes: DarknetBatchNorm's eval ops."""
    return f'''
    @staticmethod
    def batchnorm(x: Tensor, scale: Tensor, bias: Tensor, mean: Tensor, var: Tensor) -> Tensor:
        """Darknet's ({dialect}) inference batchnorm."""
        shape = (1, -1) + (1,) * (x.dim() - 2)
        std = {STD_CODE[dialect].format(var="var")}
        return (x - mean.view(shape)) / std.view(shape) * scale.view(shape) + bias.view(shape)
'''


# AlexeyAB's detector (test, valid, map, demo) folds BatchNorm into the conv before inference
# (`fuse_conv_batchnorm`), in double, stored as float; an AlexeyAB conv's eval forward does the same. One text
# for the runtime and for codegen.
FOLD_SOURCE = '''
def fold_batchnorm(weight: Tensor, scale: Tensor, bias: Tensor, mean: Tensor, var: Tensor) -> tuple[Tensor, Tensor]:
    """AlexeyAB's fuse_conv_batchnorm: the conv's (weight, bias) with BatchNorm folded in, in double."""
    std = torch.sqrt(var.double() + 1e-05)
    folded_bias = bias.double() - scale.double() * mean.double() / std
    folded_weight = weight.double() * (scale.double() / std).view((-1,) + (1,) * (weight.dim() - 1))
    return folded_weight.to(weight.dtype), folded_bias.to(bias.dtype)
'''
_fold_namespace: dict = {"torch": torch, "Tensor": Tensor}
exec(FOLD_SOURCE, _fold_namespace)  # noqa: S102 - our own text
fold_batchnorm_double = _fold_namespace["fold_batchnorm"]


# (keep, add): rolling statistics = keep * rolling + add * batch statistics, Darknet's constants.
ROLLING = {"pjreddie": (0.99, 0.01), "alexeyab": (0.9, 0.1)}
BACKWARD_EPS = 1e-5  # added to var in Darknet's backward (both)


def _stat_shape(x: Tensor) -> tuple[list[int], tuple[int, ...]]:
    dims = [0] + list(range(2, x.dim()))
    shape = (1, -1) + (1,) * (x.dim() - 2)
    return dims, shape


# Darknet's float32 loops (mean_cpu, variance_cpu, the BN backward sums, gemm_nt for weight gradients)
# add N*H*W values in their own order; with large N*H*W that rounding moves results by ~1e-4 relative.
# "darknet" order reproduces it (slow, for parity checks); "fast" uses torch's accurate reductions.
_ORDER = {"mode": "fast"}


@contextlib.contextmanager
def darknet_reduction_order() -> Iterator[None]:
    """Within this block, BatchNorm statistics and gradients and conv weight/bias gradients are summed in
    Darknet's float32 order."""
    previous = _ORDER["mode"]
    _ORDER["mode"] = "darknet"
    try:
        yield
    finally:
        _ORDER["mode"] = previous


def darknet_order() -> bool:
    """Whether `darknet_reduction_order()` is active."""
    return _ORDER["mode"] == "darknet"


def _seq_sum(a: np.ndarray) -> np.ndarray:
    """Float32 sum over the last axis, one element after another (np.sum would sum pairwise)."""
    return np.add.accumulate(a, axis=-1, dtype=np.float32)[..., -1]


def batch_lane_sum(a: np.ndarray) -> np.ndarray:
    """Sum of a float32 (batch, ..., k) array over k, then over the batch image after image, as Darknet's
    `sum += ...` loops with a local accumulator (sum_array, backward_scale_cpu, gemm_nt) run when gcc -Ofast
    vectorises them for SSE2: 4 lane accumulators (lane l adds elements l, l+4, ...), combined as
    (l0+l2)+(l1+l3), then the k%4 tail added one by one (the tail is not covered by the fixtures)."""
    k4 = a.shape[-1] // 4 * 4
    head = a[..., :k4].reshape(*a.shape[:-1], -1, 4)
    zero = np.zeros((*a.shape[:-1], 1, 4), np.float32)  # 0 + x == x; keeps k < 4 working
    lanes = np.add.accumulate(np.concatenate([zero, head], -2), axis=-2, dtype=np.float32)[..., -1, :]
    per_image = (lanes[..., 0] + lanes[..., 2]) + (lanes[..., 1] + lanes[..., 3])
    per_image = _seq_sum(np.concatenate([per_image[..., None], a[..., k4:]], -1))
    return np.add.accumulate(per_image, axis=0, dtype=np.float32)[-1]


def _channel_sum(x: Tensor) -> Tensor:
    """Per-channel sum over batch and space, in Darknet's loop order when asked for."""
    dims, _ = _stat_shape(x)
    if not darknet_order():
        return x.sum(dim=dims)
    flat = x.detach().transpose(0, 1).reshape(x.shape[1], -1).cpu().numpy()
    return torch.from_numpy(_seq_sum(flat)).to(x.device)


def _global_sum(t: Tensor) -> Tensor:
    """Statistics over the whole batch: summed over the ranks of a running process group (DDP training,
    pydarknet.train.distributed), as they are in place; one process: unchanged."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(t)
    return t


def _darknet_order_backward(grad: Tensor, centred: Tensor, x_norm: Tensor, var: Tensor, scale: Tensor,
                            n: int) -> tuple[Tensor, Tensor, Tensor]:
    """backward_batchnorm_layer's arithmetic, operation for operation. It works on torch's gradient, which
    is minus Darknet's delta: negation does not change float rounding."""
    b, c = grad.shape[:2]
    g, xc, xn = (t.detach().cpu().numpy().reshape(b, c, -1) for t in (grad, centred, x_norm))
    grad_bias = batch_lane_sum(g)  # backward_bias
    grad_scale = batch_lane_sum(g * xn)  # backward_scale_cpu
    # Channel-major so that each row runs over (batch, spatial) as mean_delta_cpu/variance_delta_cpu do.
    d = (g * scale.detach().cpu().numpy()[:, None]).swapaxes(0, 1).reshape(c, -1)  # scale_bias
    xc = xc.swapaxes(0, 1).reshape(c, -1)
    # Their float accumulators add one element at a time (no vectorisation: they accumulate in memory).
    sums = _global_sum(torch.from_numpy(np.concatenate([_seq_sum(d), _seq_sum(d * xc)]))).numpy()
    v = (var.cpu().numpy() + np.float32(BACKWARD_EPS)).astype(np.float64)  # `variance + .00001f`: float
    mean_delta = (sums[:c] * (-1.0 / np.sqrt(v))).astype(np.float32)
    var_delta = (sums[c:] * (-0.5 * v**-1.5)).astype(np.float32)
    # normalize_delta_cpu computes in double (its constants are doubles) except mean_delta/(spatial*batch),
    # a float division that -Ofast turns into a product with the float reciprocal.
    dx = (d / np.sqrt(v)[:, None] + var_delta.astype(np.float64)[:, None] * 2.0 * xc / n
          + (mean_delta * np.float32(1.0 / n))[:, None])
    dx = dx.astype(np.float32).reshape(c, b, -1).swapaxes(0, 1).reshape(grad.shape)
    return tuple(torch.from_numpy(t).to(grad.device) for t in (dx, grad_scale, grad_bias))


class _DarknetBatchNormTrain(torch.autograd.Function):
    """Darknet's training BN. Written with saved `centred` and fused multiply-adds: BN is memory
    bound and, unfused, took half the time of a training step on CPU."""

    @staticmethod
    def forward(ctx, x, scale, bias, running_mean, running_var, dialect):  # noqa: ANN001
        _, shape = _stat_shape(x)
        x = x.float()  # statistics in float32 also under autocast
        count = torch.tensor(float(x.numel() // x.shape[1]), device=x.device)
        stats = _global_sum(torch.cat([_channel_sum(x), count.view(1)]))
        n = stats[-1]
        mean = stats[:-1] / n
        centred = x - mean.view(shape)
        var = _global_sum(_channel_sum(centred * centred)) / (n - 1)
        # Darknet updates the rolling statistics inside the forward pass.
        keep, add = ROLLING[dialect]
        running_mean.mul_(keep).add_(add * mean)
        running_var.mul_(keep).add_(add * var)
        inv_std = 1.0 / _STD[dialect](var)
        ctx.n = n
        ctx.save_for_backward(centred, inv_std, var, scale)
        return torch.addcmul(bias.view(shape), centred, (scale * inv_std).view(shape))

    @staticmethod
    def backward(ctx, grad):  # noqa: ANN001
        centred, inv_std, var, scale = ctx.saved_tensors
        grad = grad.float()
        _, shape = _stat_shape(grad)
        n = ctx.n
        if darknet_order():
            x_norm = centred * inv_std.view(shape)
            return (*_darknet_order_backward(grad, centred, x_norm, var, scale, int(n)), None, None, None)
        grad_bias = _channel_sum(grad)
        grad_centred = _channel_sum(grad * centred)
        grad_scale = grad_centred * inv_std  # = sum(grad * x_norm)
        # sum(d) and sum(d*centred) for d = grad*scale (Darknet's scale_bias before mean/variance_delta)
        d_sum, dc_sum = _global_sum(torch.cat([grad_bias * scale, grad_centred * scale])).split(grad.shape[1])
        mean_delta = d_sum * (-1.0 / torch.sqrt(var + BACKWARD_EPS))
        var_delta = dc_sum * (-0.5 * torch.pow(var + BACKWARD_EPS, -1.5))
        # normalize_delta: d/sqrt(var+eps) + var_delta*2*(x-mean)/n + mean_delta/n, as two fused ops.
        dx = torch.addcmul((mean_delta / n).view(shape), centred, (var_delta * 2.0 / n).view(shape))
        dx = torch.addcmul(dx, grad, (scale / torch.sqrt(var + BACKWARD_EPS)).view(shape))
        return dx, grad_scale, grad_bias, None, None, None


class DarknetBatchNorm(nn.Module):
    """BatchNorm with Darknet's parameters: scales (weight), biases, rolling mean and variance; the
    epsilon where the cfg's Darknet (`dialect`) puts it."""

    def __init__(self, n: int, dialect: str = "pjreddie") -> None:
        super().__init__()
        self.dialect = dialect
        self.weight = nn.Parameter(torch.ones(n))
        self.bias = nn.Parameter(torch.zeros(n))
        self.register_buffer("running_mean", torch.zeros(n))
        self.register_buffer("running_var", torch.ones(n))

    def forward(self, x: Tensor) -> Tensor:
        if self.training:
            return _DarknetBatchNormTrain.apply(x, self.weight, self.bias, self.running_mean,
                                                self.running_var, self.dialect)
        _, shape = _stat_shape(x)
        std = _STD[self.dialect](self.running_var)
        return (x - self.running_mean.view(shape)) / std.view(shape) * self.weight.view(shape) + \
            self.bias.view(shape)

    def folded(self) -> tuple[Tensor, Tensor]:
        """(multiplier, offset) such that bn(x) == x*multiplier + offset at inference (AlexeyAB's: in double,
        as its fuse_conv_batchnorm folds them, rounded to float)."""
        if self.dialect == "alexeyab":
            ones = torch.ones_like(self.weight)
            return fold_batchnorm_double(ones, self.weight, self.bias, self.running_mean, self.running_var)
        mult = self.weight / _STD[self.dialect](self.running_var)
        return mult, self.bias - self.running_mean * mult
