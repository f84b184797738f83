"""Darknet's learning-rate policies (`get_current_rate`) and checkpoint schedule."""

from __future__ import annotations

import math

import pytest

from pydarknet.netconfig import NetConfig
from pydarknet.train.loop import checkpoint_names, multiscale_size
from pydarknet.train.schedule import learning_rate


def cfg(**kw) -> NetConfig:
    base = NetConfig(width=416, height=416, channels=3, batch=64, subdivisions=1, learning_rate=0.001)
    for k, v in kw.items():
        setattr(base, k, v)
    return base


@pytest.mark.parametrize(("kw", "batch_num", "expected"), [
    ({}, 123, 0.001),
    ({"policy": "step", "step": 100, "scale": 0.5}, 250, 0.001 * 0.25),
    ({"policy": "steps", "steps": [100, 200], "scales": [0.1, 0.1]}, 99, 0.001),
    ({"policy": "steps", "steps": [100, 200], "scales": [0.1, 0.1]}, 100, 0.0001),
    ({"policy": "steps", "steps": [100, 200], "scales": [0.1, 0.1]}, 200, 0.00001),
    ({"policy": "exp", "gamma": 0.99}, 10, 0.001 * 0.99 ** 10),
    ({"policy": "poly", "power": 4, "max_batches": 1000}, 500, 0.001 * 0.5 ** 4),
    ({"policy": "sigmoid", "gamma": 0.1, "step": 50}, 60, 0.001 / (1 + math.exp(0.1 * 10))),
    ({"policy": "steps", "steps": [10], "scales": [0.1], "burn_in": 1000, "power": 4}, 500, 0.001 * 0.5 ** 4),
])
def test_policies(kw, batch_num, expected):
    assert learning_rate(cfg(**kw), batch_num) == pytest.approx(expected, rel=1e-12)


def test_checkpoint_schedule_matches_darknet():
    assert checkpoint_names("yolo", 100) == ["yolo.backup", "yolo_100.weights"]
    assert checkpoint_names("yolo", 150) == []
    assert checkpoint_names("yolo", 1100) == ["yolo.backup"]
    assert checkpoint_names("yolo", 20000) == ["yolo.backup", "yolo_20000.weights"]


def test_multiscale_sizes_are_darknets_for_416():
    import numpy as np

    rng = np.random.default_rng(0)
    sizes = {multiscale_size(rng, 416, 0, 10000) for _ in range(500)}
    assert sizes == set(range(320, 609, 32))
    assert multiscale_size(rng, 416, 9900, 10000) == 608  # the last 200 batches


def sgdr(**kw) -> NetConfig:
    return cfg(policy="sgdr", learning_rate=0.01, learning_rate_min=0.0001, sgdr_cycle=100, sgdr_mult=2, **kw)


def sgdr_by_hand(start: int, cycle: int, batch_num: int) -> float:
    # AlexeyAB's get_current_rate, SGDR case, with its constant 3.14159265
    return 0.0001 + 0.5 * (0.01 - 0.0001) * (1 + math.cos((batch_num - start) * 3.14159265 / cycle))


@pytest.mark.parametrize(("batch_num", "start", "cycle"), [
    (0, 0, 100), (50, 0, 100), (100, 0, 100), (101, 100, 200), (300, 100, 200), (301, 300, 400), (700, 300, 400),
])
def test_sgdr_cycles_grow_by_sgdr_mult(batch_num, start, cycle):
    assert learning_rate(sgdr(), batch_num) == pytest.approx(sgdr_by_hand(start, cycle, batch_num), rel=1e-12)


def test_sgdr_restarts_high_and_ends_each_cycle_at_learning_rate_min():
    assert learning_rate(sgdr(), 100) == pytest.approx(0.0001, rel=1e-9)
    assert learning_rate(sgdr(), 101) > 0.0099
    assert learning_rate(sgdr(burn_in=200), 100) == pytest.approx(0.01 * 0.5 ** 4)  # burn_in comes first
