"""One Darknet training iteration: forward (train mode), region/softmax delta, backward, SGD update.

Darknet's update (`update_convolutional_layer`) keeps one "updates" buffer per parameter that
backward adds the negative gradient into; the update applies weight decay to weights only and
momentum by scaling that buffer afterwards. That is not torch.optim.SGD's order, so it is here.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from pydarknet.errors import DarknetError
from pydarknet.train.alexeyab_update import AlexeyABUpdate
from pydarknet.train.schedule import learning_rate


def _decayed_parameters(net: nn.Module) -> set[int]:
    """Conv/connected weights get weight decay; biases and BN scales do not."""
    ids = set()
    for module in net.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            ids.add(id(module.weight))
    return ids


class Trainer:
    """Owns Darknet's optimiser state for `net` (rates from its [net] section)."""

    def __init__(self, net: nn.Module, model: nn.Module | None = None, world_size: int = 1,
                 amp: bool = False) -> None:
        """`model` is what runs forward (e.g. a DistributedDataParallel wrapper of `net`). With
        `world_size` ranks, the cfg's batch stays the global batch and each rank gets its share."""
        self.net = net
        self.model = model if model is not None else net
        self.cfg = net.config
        self.world_size = world_size
        self.amp = amp
        if self.cfg.batch % world_size:
            raise DarknetError(f"batch/subdivisions = {self.cfg.batch} images cannot be split over "
                               f"{world_size} processes", net.cfg_path)
        self.params = [p for p in net.parameters() if p.requires_grad]
        self.updates = [torch.zeros_like(p) for p in self.params]
        decayed = _decayed_parameters(net)
        self.decay_mask = [id(p) in decayed for p in self.params]
        self.last_stats: dict = {}
        self.last_lr = 0.0
        # The [yolo] family updates as AlexeyAB's Darknet does (loss_scale, [shortcut] weights, EMA).
        self.alexeyab = AlexeyABUpdate(net, self.params) if self.cfg.dialect == "alexeyab" else None

    @property
    def batch_num(self) -> int:
        return self.net.seen // self.cfg.full_batch

    def learning_rate(self) -> float:
        return learning_rate(self.cfg, self.batch_num)

    def _outputs(self) -> list[int]:
        """The layers whose deltas train the network: every detection head, else the output layer."""
        heads = [i for i, _ in self.net.heads]
        if heads:
            return heads
        if self.net.kinds[self.net.output_index] == "softmax":
            return [self.net.output_index]
        raise DarknetError("training needs a detection layer ([region], [yolo]) or a [softmax] output layer",
                           self.net.cfg_path)

    def _softmax_delta(self, out: Tensor, truth: Tensor) -> tuple[Tensor, float]:
        """softmax_x_ent: delta = truth - p; a following [cost] (sse) adds the same delta again."""
        target = truth.to(out.device).view_as(out)
        delta = target - out.detach()
        xent = float(-torch.where(target != 0, torch.log(out.detach().clamp_min(1e-30)), 0).sum())
        n_cost = sum(1 for k in self.net.kinds[self.net.output_index + 1:] if k == "cost")
        # calc_network_cost reports the mean over the layers that have a cost: softmax's cross-entropy
        # and each [cost] layer's sum of squared deltas.
        cost = (xent + n_cost * float((delta * delta).sum())) / (1 + n_cost)
        return delta * (1 + n_cost), cost

    def _stopped_at(self, iteration: int) -> int:
        """The highest layer with AlexeyAB's `stopbackward=1` (or `=N` while fewer than N iterations are done):
        Darknet's backward stops there, so it and the layers before it get no gradient; -1 if none."""
        stops = [i for i, opts in enumerate(self.net.layer_training)
                 if opts.get("stopbackward", 0) == 1 or opts.get("stopbackward", 0) > iteration]
        return max(stops, default=-1)

    def _backward_targets(self, indices: list[int]) -> list[int]:
        """Where each output's delta goes: the output itself, or the layer's input for the layers whose
        Darknet backward passes their delta on unchanged ([yolo]: no derivative of its activation)."""
        layers = self.net.layers
        return [i - 1 if getattr(layers[i], "delta_to_input", False) else i for i in indices]

    def _deltas(self, outputs: list[Tensor], truth: Tensor,
                net_size: tuple[int, int] | None = None) -> tuple[list[Tensor], float]:
        """Darknet's delta (target - output) for each output, and the network's cost: the mean over the
        layers that have one (calc_network_cost). The AlexeyAB dialect multiplies the deltas by its
        loss_scale (the update divides by it)."""
        heads = dict(self.net.heads)
        scale = self.cfg.loss_scale if self.alexeyab is not None else 1.0
        if not heads:
            delta, cost = self._softmax_delta(outputs[0], truth)
            return [delta * scale if scale != 1 else delta], cost
        deltas, costs, self.last_stats = [], [], {}
        for index, out in zip(self._outputs(), outputs):
            found = heads[index].delta(out, truth, self.net.seen, net_size=net_size)
            deltas.append(found.delta * scale if scale != 1 else found.delta)
            costs.append(found.cost)
            self.last_stats[index] = found.stats
        return deltas, sum(costs) / len(costs)

    def step(self, images: Tensor, truth: Tensor) -> float:
        """One Darknet iteration over `images` (this rank's share of whole mini-batches): returns
        Darknet's loss (this rank's sum of costs / its images), updating weights when the
        subdivisions are complete."""
        batch = self.cfg.batch
        local = batch // self.world_size
        if images.shape[0] % local:
            raise DarknetError(f"{images.shape[0]} images is not a multiple of the mini-batch {local}",
                               self.net.cfg_path)
        device = self.params[0].device
        indices = self._outputs()
        targets = self._backward_targets(indices)
        wanted = sorted(set(indices + targets))
        self.model.train()
        total = 0.0
        for start in range(0, images.shape[0], local):
            x = images[start:start + local].to(device, non_blocking=True)
            t = truth[start:start + local]
            self.net.seen = self.net.seen + batch  # Darknet counts before the forward pass
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.amp):
                found = dict(zip(wanted, self.model(x, outputs=wanted)))
            deltas, cost = self._deltas([found[i].float() for i in indices], t, (x.shape[-1], x.shape[-2]))
            if not math.isfinite(cost):
                raise FloatingPointError(f"loss is {cost} at seen={self.net.seen}")
            # Darknet sums gradients over the batch; DDP averages over ranks: undo the average.
            roots = [found[i] for i in targets]
            torch.autograd.backward(roots, [(-d * self.world_size).to(o.dtype) for o, d in zip(roots, deltas)])
            stop = self._stopped_at((self.net.seen - batch) // self.cfg.full_batch)
            for layer in self.net.layers[: stop + 1]:
                for p in layer.parameters():
                    p.grad = None
            total += cost
            if (self.net.seen // batch) % self.cfg.subdivisions == 0:
                self.update()
        return total / images.shape[0]

    @torch.no_grad()
    def update(self) -> None:
        lr = self.learning_rate()
        self.last_lr = lr
        if self.alexeyab is not None:
            self.alexeyab(self.updates, lr, self.batch_num)
            return
        batch = self.cfg.full_batch
        for p, u, decay in zip(self.params, self.updates, self.decay_mask):
            if p.grad is not None:
                u.sub_(p.grad)  # updates hold the negative summed gradient, as Darknet's *_updates
                p.grad = None
            if decay:
                u.add_(p, alpha=-self.cfg.decay * batch)
            p.add_(u, alpha=lr / batch)
            u.mul_(self.cfg.momentum)

    def state_dict(self) -> dict:
        return {"updates": [u.clone() for u in self.updates]}

    def load_state_dict(self, state: dict) -> None:
        for u, saved in zip(self.updates, state["updates"]):
            u.copy_(saved)
