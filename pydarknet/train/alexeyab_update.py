"""AlexeyAB's weight update (update_network_gpu and the layers' update_*_gpu), and its EMA of the conv weights.

Where it differs from pjreddie's update: the layers' `learning_rate=` scale and their dont_update=,
burnin_update=, train_only_bn= (skipped updates), `loss_scale` (the [yolo] delta that fills the update buffers is
multiplied by it, so the step divides the rate by it and multiplies the decay by it), NaN/Inf repair of conv
weights and their updates, [shortcut] weights (no decay, updates clipped to [-1, 1]), and with `ema_alpha`
an exponential moving average of the conv layers' weights, biases and BN scales from max_batches/2 on,
copied into the network at max_batches - 1000 (train_network_waitkey, ema_update/ema_apply).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import Tensor, nn

from pydarknet.netconfig import NetConfig

# How a parameter is updated, by the layer that owns it (update_convolutional_layer_gpu and its siblings).
CONV_WEIGHT, CONV_OTHER, SHORTCUT, CONNECTED_WEIGHT, CONNECTED_OTHER = range(5)
EMA_APPLY_BEFORE_END = 1000  # ema_apply_point = max_batches - 1000


def _roles(net: nn.Module) -> dict[int, tuple[int, bool, int]]:
    """id(parameter) -> (rule, whether an EMA is kept for it, its layer)."""
    roles = {}
    for index, (kind, layer) in enumerate(zip(net.kinds, net.layers)):
        weights = {id(m.weight) for m in layer.modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
        for p in layer.parameters():
            if kind == "shortcut":
                rule = SHORTCUT
            elif kind == "connected":
                rule = CONNECTED_WEIGHT if id(p) in weights else CONNECTED_OTHER
            else:
                rule = CONV_WEIGHT if id(p) in weights else CONV_OTHER
            roles[id(p)] = (rule, kind in ("convolutional", "conv"), index)
    return roles


def _fix_nan_and_inf(weights: Tensor) -> None:
    """fix_nan_and_inf: a NaN or Inf weight becomes 1 / (|its flat index| + 1)."""
    bad = ~torch.isfinite(weights)
    if bad.any():
        index = torch.arange(weights.numel(), device=weights.device, dtype=torch.float32).view_as(weights)
        weights.copy_(torch.where(bad, 1.0 / (index + 1), weights))


class AlexeyABUpdate:
    """The update rule of AlexeyAB's GPU build for `params` (the trainer's), with the EMA state."""

    def __init__(self, net: nn.Module, params: list[Tensor]) -> None:
        self.cfg: NetConfig = net.config
        roles = _roles(net)
        self.params = params
        self.rules = [roles.get(id(p), (CONV_OTHER, False, -1))[0] for p in params]
        self.ema_kept = [roles.get(id(p), (CONV_OTHER, False, -1))[1] for p in params]
        # each parameter's layer options (learning_rate=, dont_update=, burnin_update=, train_only_bn=)
        options = getattr(net, "layer_training", None) or []
        self.layer_options = [options[i] if 0 <= i < len(options) else {}
                              for i in (roles.get(id(p), (CONV_OTHER, False, -1))[2] for p in params)]
        self.ema: list[Tensor] | None = None

    def _skipped(self, options: dict[str, float], iteration: int) -> bool:
        """update_network_gpu leaves a layer alone (its update buffers keep accumulating) during its
        burnin_update*burn_in first iterations, up to iteration dont_update, or always with train_only_bn."""
        burnin = options.get("burnin_update", 0)
        return bool((burnin and burnin * self.cfg.burn_in > iteration) or options.get("train_only_bn", 0)
                    or options.get("dont_update", 0) >= iteration)

    @torch.no_grad()
    def __call__(self, updates: list[Tensor], rate: float, iteration: int) -> None:
        """One update at `rate` after `iteration` (Darknet's cur_iteration, already incremented)."""
        cfg = self.cfg
        batch, scale = cfg.full_batch, cfg.loss_scale
        for p, u, rule, options in zip(self.params, updates, self.rules, self.layer_options):
            if p.grad is not None:
                u.sub_(p.grad)  # the negative summed gradient, as Darknet's *_updates
                p.grad = None
            if self._skipped(options, iteration):
                continue
            rate_l = rate * options.get("learning_rate", 1.0)  # the layer's learning_rate= scale
            if rule in (CONNECTED_WEIGHT, CONNECTED_OTHER):
                # update_connected_layer_gpu unscales its buffers in place, then pjreddie's rule.
                if scale != 1:
                    u.div_(scale)
                if rule == CONNECTED_WEIGHT:
                    u.add_(p, alpha=-cfg.decay * batch)
                p.add_(u, alpha=rate_l / batch)
            else:
                step = rate_l / scale / batch
                if rule == CONV_WEIGHT:
                    u.nan_to_num_(nan=0.0, posinf=0.0, neginf=0.0)  # reset_nan_and_inf
                    _fix_nan_and_inf(p)
                    u.add_(p, alpha=-cfg.decay * batch * scale)
                elif rule == SHORTCUT:
                    u.nan_to_num_(nan=0.0, posinf=0.0, neginf=0.0)
                    _fix_nan_and_inf(p)
                    u.clamp_(-1.0, 1.0)
                p.add_(u, alpha=step)
            u.mul_(cfg.momentum)
        if cfg.ema_alpha:
            self._ema_step(iteration)

    def _kept(self) -> Iterator[tuple[Tensor, int]]:
        return ((p, k) for k, p in enumerate(p for p, kept in zip(self.params, self.ema_kept) if kept))

    def _ema_step(self, iteration: int) -> None:
        """train_network_waitkey's EMA: initialised at max_batches/2 (ema_update with alpha 0), updated each
        iteration before max_batches - 1000, copied into the weights at that iteration."""
        start, apply_at = self.cfg.max_batches // 2, self.cfg.max_batches - EMA_APPLY_BEFORE_END
        if iteration < start:
            return
        if self.ema is None:
            self.ema = [p.detach().clone() for p, _ in self._kept()]
        if iteration == apply_at:
            for p, k in self._kept():
                p.copy_(self.ema[k])
        elif iteration < apply_at:
            alpha = float(np.float32(self.cfg.ema_alpha))
            keep = float(np.float32(1) - np.float32(alpha))  # C's float (1 - ema_alpha)
            for p, k in self._kept():
                self.ema[k].mul_(alpha).add_(p, alpha=keep)

    @contextmanager
    def ema_swapped(self) -> Iterator[None]:
        """The EMA in place of the conv weights for the duration (to save `<cfg>_ema.weights`)."""
        if self.ema is None:
            yield
            return
        saved = [p.detach().clone() for p, _ in self._kept()]
        with torch.no_grad():
            for p, k in self._kept():
                p.copy_(self.ema[k])
        try:
            yield
        finally:
            with torch.no_grad():
                for (p, _), old in zip(self._kept(), saved):
                    p.copy_(old)
