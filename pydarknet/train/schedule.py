"""Darknet's `get_current_rate`: learning-rate policies of [net], with burn_in; AlexeyAB's adds sgdr."""

from __future__ import annotations

import math

from pydarknet.netconfig import NetConfig


def learning_rate(cfg: NetConfig, batch_num: int, rng_uniform: float | None = None) -> float:
    """The rate Darknet uses at update `batch_num` (= seen / (batch*subdivisions))."""
    lr = cfg.learning_rate
    if batch_num < cfg.burn_in:
        return lr * math.pow(batch_num / cfg.burn_in, cfg.power)
    if cfg.policy == "constant":
        return lr
    if cfg.policy == "step":
        return lr * math.pow(cfg.scale, batch_num // cfg.step)
    if cfg.policy == "steps":
        rate = lr
        for step, scale in zip(cfg.steps, cfg.scales):
            if step > batch_num:
                return rate
            rate *= scale
        return rate
    if cfg.policy == "exp":
        return lr * math.pow(cfg.gamma, batch_num)
    if cfg.policy == "poly":
        return lr * math.pow(1 - batch_num / cfg.max_batches, cfg.power)
    if cfg.policy == "sigmoid":
        return lr * (1.0 / (1.0 + math.exp(cfg.gamma * (batch_num - cfg.step))))
    if cfg.policy == "sgdr":
        return sgdr_rate(cfg, batch_num)
    # "random": Darknet draws a new uniform number per call.
    u = rng_uniform if rng_uniform is not None else 0.5
    return lr * math.pow(u, cfg.power)


def sgdr_rate(cfg: NetConfig, batch_num: int) -> float:
    """AlexeyAB's SGDR: cosine from learning_rate down to learning_rate_min over each cycle, restarting at
    the cycle's end; the first cycle has sgdr_cycle batches, each later one sgdr_mult times more. A batch
    on a cycle boundary still belongs to the ending cycle (its rate is learning_rate_min)."""
    start, cycle = 0, cfg.sgdr_cycle
    while start + cycle < batch_num:
        start += cycle
        cycle *= cfg.sgdr_mult
    # Darknet's constant 3.14159265, not math.pi.
    cosine = 1.0 + math.cos(float(batch_num - start) * 3.14159265 / cycle)
    return cfg.learning_rate_min + 0.5 * (cfg.learning_rate - cfg.learning_rate_min) * cosine
