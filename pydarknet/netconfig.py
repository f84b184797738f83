"""The [net] section: input size, batch and every training option, with Darknet's defaults."""

from __future__ import annotations

from dataclasses import dataclass, field

from pydarknet.cfg import Section

POLICIES = ("constant", "step", "steps", "exp", "poly", "sigmoid", "random")


@dataclass
class NetConfig:
    width: int
    height: int
    channels: int
    batch: int  # images per subdivision (Darknet divides the cfg's batch by subdivisions)
    subdivisions: int
    learning_rate: float = 0.001
    momentum: float = 0.9
    decay: float = 0.0001
    policy: str = "constant"
    step: int = 1
    scale: float = 1.0
    steps: list[int] = field(default_factory=list)
    scales: list[float] = field(default_factory=list)
    gamma: float = 1.0
    power: float = 4.0
    burn_in: int = 0
    max_batches: int = 0
    angle: float = 0.0
    aspect: float = 1.0
    saturation: float = 1.0
    exposure: float = 1.0
    hue: float = 0.0
    max_crop: int = 0
    min_crop: int = 0
    center: int = 0
    adam: bool = False
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-7

    @property
    def full_batch(self) -> int:
        """Images per weight update: Darknet's `batch*subdivisions` in update_network."""
        return self.batch * self.subdivisions


def parse_net(sec: Section) -> NetConfig:
    batch = sec.positive_int("batch", 1)
    subdivisions = sec.positive_int("subdivisions", 1)
    height = sec.get_int("height", 0)
    width = sec.get_int("width", 0)
    channels = sec.get_int("channels", 0)
    if sec.has("inputs") and not (height and width and channels):
        raise sec.error("flat inputs= networks are not supported by pydarknet; give width/height/channels")
    for key, value in (("width", width), ("height", height), ("channels", channels)):
        if value <= 0:
            raise sec.error(f"{key}={value}: the network input size must be positive", key)
    if batch < subdivisions:
        raise sec.error(f"batch={batch} is smaller than subdivisions={subdivisions}", "batch")
    cfg = NetConfig(width=width, height=height, channels=channels, batch=batch // subdivisions,
                    subdivisions=subdivisions)
    cfg.learning_rate = sec.get_float("learning_rate", cfg.learning_rate)
    cfg.momentum = sec.get_float("momentum", cfg.momentum)
    cfg.decay = sec.get_float("decay", cfg.decay)
    policy = sec.get_str("policy", "constant")
    if policy not in POLICIES:
        raise sec.error(f"unknown learning rate policy {policy!r} ({', '.join(POLICIES)})", "policy")
    cfg.policy = policy
    cfg.step = sec.get_int("step", 1)
    cfg.scale = sec.get_float("scale", 1.0)
    cfg.steps = sec.get_list("steps", int) or []
    cfg.scales = sec.get_list("scales", float) or []
    if policy == "steps" and len(cfg.steps) != len(cfg.scales):
        raise sec.error(f"steps= has {len(cfg.steps)} values but scales= has {len(cfg.scales)}", "scales")
    cfg.gamma = sec.get_float("gamma", 1.0)
    cfg.power = sec.get_float("power", 4.0)
    cfg.burn_in = sec.get_int("burn_in", 0)
    cfg.max_batches = sec.get_int("max_batches", 0)
    cfg.angle = sec.get_float("angle", 0.0)
    cfg.aspect = sec.get_float("aspect", 1.0)
    cfg.saturation = sec.get_float("saturation", 1.0)
    cfg.exposure = sec.get_float("exposure", 1.0)
    cfg.hue = sec.get_float("hue", 0.0)
    cfg.max_crop = sec.get_int("max_crop", width * 2)
    cfg.min_crop = sec.get_int("min_crop", width)
    cfg.center = sec.get_int("center", 0)
    cfg.adam = bool(sec.get_int("adam", 0))
    if cfg.adam:
        cfg.b1 = sec.get_float("B1", cfg.b1)
        cfg.b2 = sec.get_float("B2", cfg.b2)
        cfg.eps = sec.get_float("eps", cfg.eps)
    for key in ("time_steps", "notruth", "random", "max_ratio", "min_ratio", "clip"):
        sec.get_float(key, 0.0)
    return cfg
