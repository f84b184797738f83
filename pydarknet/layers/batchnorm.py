"""Darknet's batch normalisation: `(x-mean)/(sqrt(var)+1e-6)`, and its own training backward.

Darknet's forward uses a 1/(N-1) batch variance and eps on the std, while its backward
(`mean_delta_cpu`, `variance_delta_cpu`, `normalize_delta_cpu`) uses eps 1e-5 on the variance and
1/N: not the exact derivative of its forward, so autograd would not reproduce Darknet's gradients.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor, nn

FORWARD_EPS = 1e-6  # added to sqrt(var), not to var
BACKWARD_EPS = 1e-5  # added to var in Darknet's backward


def _stat_shape(x: Tensor) -> tuple[list[int], tuple[int, ...]]:
    dims = [0] + list(range(2, x.dim()))
    shape = (1, -1) + (1,) * (x.dim() - 2)
    return dims, shape


# Darknet's mean_cpu/variance_cpu add N*H*W float32 values one after another; with large N*H*W that
# sequential rounding moves the statistics by ~1e-4 relative. "darknet" order reproduces it (slow,
# for parity checks); "fast" uses torch's accurate reductions (training).
_ORDER = {"mode": "fast"}


@contextlib.contextmanager
def darknet_reduction_order() -> Iterator[None]:
    """Within this block, BatchNorm statistics are summed in Darknet's sequential float32 order."""
    previous = _ORDER["mode"]
    _ORDER["mode"] = "darknet"
    try:
        yield
    finally:
        _ORDER["mode"] = previous


def _channel_sum(x: Tensor) -> Tensor:
    """Per-channel sum over batch and space, in Darknet's loop order when asked for."""
    dims, _ = _stat_shape(x)
    if _ORDER["mode"] == "fast":
        return x.sum(dim=dims)
    flat = x.detach().transpose(0, 1).reshape(x.shape[1], -1).cpu().numpy()
    seq = np.add.accumulate(flat, axis=1, dtype=np.float32)[:, -1]
    return torch.from_numpy(seq).to(x.device)


def _global_sum(t: Tensor) -> Tensor:
    """Statistics over the whole batch: across ranks when training with DDP (one process: identity)."""
    from pydarknet.train.distributed import all_reduce_sum

    return all_reduce_sum(t)


class _DarknetBatchNormTrain(torch.autograd.Function):
    """Darknet's training BN. Written with saved `centred` and fused multiply-adds: BN is memory
    bound and, unfused, took half the time of a training step on CPU."""

    @staticmethod
    def forward(ctx, x, scale, bias, running_mean, running_var):  # noqa: ANN001
        _, shape = _stat_shape(x)
        x = x.float()  # statistics in float32 also under autocast
        count = torch.tensor(float(x.numel() // x.shape[1]), device=x.device)
        stats = _global_sum(torch.cat([_channel_sum(x), count.view(1)]))
        n = stats[-1]
        mean = stats[:-1] / n
        centred = x - mean.view(shape)
        var = _global_sum(_channel_sum(centred * centred)) / (n - 1)
        # Darknet updates the rolling statistics inside the forward pass.
        running_mean.mul_(0.99).add_(0.01 * mean)
        running_var.mul_(0.99).add_(0.01 * var)
        inv_std = 1.0 / (var.sqrt() + FORWARD_EPS)
        ctx.n = n
        ctx.save_for_backward(centred, inv_std, var, scale)
        return torch.addcmul(bias.view(shape), centred, (scale * inv_std).view(shape))

    @staticmethod
    def backward(ctx, grad):  # noqa: ANN001
        centred, inv_std, var, scale = ctx.saved_tensors
        grad = grad.float()
        _, shape = _stat_shape(grad)
        n = ctx.n
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
        return dx, grad_scale, grad_bias, None, None


class DarknetBatchNorm(nn.Module):
    """BatchNorm with Darknet's parameters: scales (weight), biases, rolling mean and variance."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n))
        self.bias = nn.Parameter(torch.zeros(n))
        self.register_buffer("running_mean", torch.zeros(n))
        self.register_buffer("running_var", torch.ones(n))

    def forward(self, x: Tensor) -> Tensor:
        if self.training:
            return _DarknetBatchNormTrain.apply(x, self.weight, self.bias, self.running_mean,
                                                self.running_var)
        _, shape = _stat_shape(x)
        std = self.running_var.sqrt() + FORWARD_EPS
        return (x - self.running_mean.view(shape)) / std.view(shape) * self.weight.view(shape) + \
            self.bias.view(shape)

    def folded(self) -> tuple[Tensor, Tensor]:
        """(multiplier, offset) such that bn(x) == x*multiplier + offset at inference."""
        mult = self.weight / (self.running_var.sqrt() + FORWARD_EPS)
        return mult, self.bias - self.running_mean * mult
