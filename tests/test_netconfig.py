"""[net] options by dialect: AlexeyAB's set and defaults for [yolo]-family cfgs, pjreddie's for the others."""

from __future__ import annotations

import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pydarknet.cfg import UnusedOptionWarning, parse_cfg_text
from pydarknet.errors import DarknetError
from pydarknet.netconfig import CUTMIX, MIXUP, MOSAIC, MOSAIC_CUTMIX, parse_net

# AlexeyAB's cfg/yolov4.cfg [net], spacing as there.
YOLOV4_NET = """[net]
batch=64
subdivisions=8
width=608
height=608
channels=3
momentum=0.949
decay=0.0005
angle=0
saturation = 1.5
exposure = 1.5
hue=.1
learning_rate=0.0013
burn_in=1000
max_batches = 500500
policy=steps
steps=400000,450000
scales=.1,.1
mosaic=1
"""


def net(text: str, dialect: str = "alexeyab"):  # noqa: ANN201
    sec = parse_cfg_text(text)[0]
    cfg = parse_net(sec, dialect)
    return cfg, sec


def test_yolov4_net_parses_every_option_quietly():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cfg, sec = net(YOLOV4_NET)
        sec.warn_unused()
    assert (cfg.batch, cfg.subdivisions, cfg.full_batch) == (8, 8, 64)
    assert cfg.mosaic and cfg.mixup == MOSAIC
    assert (cfg.momentum, cfg.decay, cfg.learning_rate, cfg.burn_in) == (0.949, 0.0005, 0.0013, 1000)
    assert cfg.steps == [400000, 450000] and cfg.scales == [0.1, 0.1]
    assert (cfg.saturation, cfg.exposure, cfg.hue) == (1.5, 1.5, 0.1)


def test_alexeyab_defaults():
    cfg, _ = net("[net]\nwidth=32\nheight=32\nchannels=3\nmax_batches=600\nadam=1\n")
    assert cfg.dialect == "alexeyab"
    assert cfg.flip and not cfg.letter_box and not cfg.mosaic_bound and cfg.mixup == 0
    assert (cfg.blur, cfg.gaussian_noise, cfg.resize_step, cfg.max_chart_loss) == (0, 0, 32.0, 20.0)
    assert (cfg.learning_rate_min, cfg.sgdr_cycle, cfg.sgdr_mult) == (0.00001, 600, 2)
    assert (cfg.ema_alpha, cfg.loss_scale, cfg.power, cfg.eps) == (0.0, 1.0, 4.0, 1e-6)


def test_pjreddie_keeps_its_defaults_and_reports_alexeyab_options_unused():
    text = "[net]\nwidth=32\nheight=32\nchannels=3\nadam=1\nmosaic=1\nletter_box=1\n"
    cfg, sec = net(text, "pjreddie")
    assert cfg.eps == 1e-7 and cfg.mixup == 0 and not cfg.letter_box
    with pytest.warns(UnusedOptionWarning) as record:
        sec.warn_unused()
    assert sorted(str(w.message).split("'")[1].split(" ")[0] for w in record) == ["letter_box", "mosaic"]
    with pytest.raises(DarknetError, match="unknown learning rate policy 'sgdr'"):
        net("[net]\nwidth=32\nheight=32\nchannels=3\npolicy=sgdr\n", "pjreddie")


@pytest.mark.parametrize(("options", "code"), [
    ("mixup=1", MIXUP), ("cutmix=1", CUTMIX), ("mosaic=1", MOSAIC), ("mosaic=1\ncutmix=1", MOSAIC_CUTMIX),
    ("mixup=1\nmosaic=1", MOSAIC), ("mosaic=0", 0),
])
def test_mixup_code_as_parse_net_options_sets_it(options, code):
    cfg, _ = net(f"[net]\nwidth=32\nheight=32\nchannels=3\n{options}\n")
    assert cfg.mixup == code


@pytest.mark.parametrize(("options", "message", "line"), [
    ("policy=sgdr", "sgdr_cycle", 5),
    ("policy=sgdr\nmax_batches=100\nsgdr_mult=0", "sgdr_mult=0", 7),
    ("ema_alpha=1", "ema_alpha=1 must be in", 5),
    ("loss_scale=0", "loss_scale=0", 5),
    ("resize_step=-32", "resize_step=-32", 5),
    ("blur=-1", "blur=-1", 5),
    ("contrastive=1", "mini-batch", 5),
    ("saturation=0", "saturation=0", 5),
    ("mixup=2", "mixup=2 must be 0 or 1", 5),
])
def test_bad_alexeyab_values_name_the_line(options, message, line):
    with pytest.raises(DarknetError, match=message) as err:
        net(f"[net]\nwidth=32\nheight=32\nchannels=3\n{options}\n")
    assert err.value.line == line


def test_flip_and_sequential_subdivisions():
    cfg, _ = net("[net]\nbatch=8\nsubdivisions=2\nwidth=32\nheight=32\nchannels=3\nflip=0\n"
                 "sequential_subdivisions=9\ntime_steps=0\n")
    assert not cfg.flip and cfg.sequential_subdivisions == 2 and cfg.time_steps == 1


@settings(deadline=None, derandomize=True, database=None, max_examples=300)
@given(st.dictionaries(st.sampled_from(["mosaic", "cutmix", "mixup", "letter_box", "blur", "ema_alpha",
                                        "policy", "sgdr_cycle", "sgdr_mult", "loss_scale", "flip",
                                        "resize_step", "max_chart_loss", "gaussian_noise"]),
                       st.one_of(st.integers(-3, 3).map(str), st.sampled_from(["sgdr", "steps", ".5", "x", "1e9"])),
                       max_size=6))
def test_any_alexeyab_option_values_parse_or_raise_one_darknet_error(options):
    text = "[net]\nwidth=32\nheight=32\nchannels=3\n" + "".join(f"{k}={v}\n" for k, v in options.items())
    try:
        cfg, _ = net(text)
    except DarknetError as err:
        assert err.line is not None
        return
    assert cfg.mixup in (0, MIXUP, CUTMIX, MOSAIC, MOSAIC_CUTMIX)
    assert 0 <= cfg.ema_alpha < 1 and cfg.loss_scale > 0 and cfg.resize_step > 0
