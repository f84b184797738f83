"""The [net] section: input size, batch and every training option, with Darknet's defaults.

pjreddie's Darknet and AlexeyAB's (the [yolo] family) parse different option sets with a few different
defaults; `parse_net(sec, dialect)` reads the set of the cfg's dialect, so an option the other Darknet
alone knows is reported as unused, as that Darknet would.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydarknet.cfg import Section

POLICIES = ("constant", "step", "steps", "exp", "poly", "sigmoid", "random")
ALEXEYAB_POLICIES = (*POLICIES, "sgdr")

# AlexeyAB's [net] mixup code (parse_net_options): cutmix and mosaic select it, the detector loader reads it.
MIXUP, CUTMIX, MOSAIC, MOSAIC_CUTMIX = 1, 2, 3, 4

# AlexeyAB [net] options that only tune its CUDA memory use or debug output: read so they are not reported
# as unused, with no effect here.
_ALEXEYAB_RUNTIME_ONLY = ("use_cuda_graph", "optimized_memory", "workspace_size_limit_MB",
                          "show_receptive_field")


@dataclass
class NetConfig:
    width: int
    height: int
    channels: int
    batch: int  # images per subdivision (Darknet divides the cfg's batch by subdivisions)
    subdivisions: int
    dialect: str = "pjreddie"
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
    # AlexeyAB's options (their defaults; a pjreddie cfg keeps them, and they do nothing there).
    learning_rate_min: float = 0.00001  # the floor of policy=sgdr
    sgdr_cycle: int = 0  # batches in the first sgdr cycle (default max_batches)
    sgdr_mult: int = 2  # each sgdr cycle is this many times longer than the one before
    seq_scales: list[float] = field(default_factory=list)
    ema_alpha: float = 0.0  # 0: no exponential moving average of the conv weights
    loss_scale: float = 1.0  # the [yolo] delta is multiplied by it, the update divides it out again
    flip: bool = True
    blur: int = 0
    gaussian_noise: int = 0
    mixup: int = 0  # 0, MIXUP, CUTMIX, MOSAIC or MOSAIC_CUTMIX (from mixup=, cutmix=, mosaic=)
    letter_box: bool = False
    mosaic_bound: bool = False
    resize_step: float = 32.0  # multi-scale sizes are multiples of it
    max_chart_loss: float = 20.0  # the top of chart.png's loss axis
    label_smooth_eps: float = 0.0
    adversarial_lr: float = 0.0
    time_steps: int = 1
    track: int = 0
    augment_speed: int = 2
    sequential_subdivisions: int = 0
    contrastive: bool = False
    contrastive_jit_flip: bool = False
    contrastive_color: bool = False
    unsupervised: bool = False
    attention: int = 0
    dynamic_minibatch: bool = False
    try_fix_nan: bool = False
    weights_reject_freq: int = 0
    equidistant_point: int = 0
    badlabels_rejection_percentage: float = 0.0
    num_sigmas_reject_badlabels: float = 0.0

    @property
    def full_batch(self) -> int:
        """Images per weight update: Darknet's `batch*subdivisions` in update_network."""
        return self.batch * self.subdivisions

    @property
    def mosaic(self) -> bool:
        return self.mixup in (MOSAIC, MOSAIC_CUTMIX)


def parse_net(sec: Section, dialect: str = "pjreddie") -> NetConfig:
    """The [net] options of a cfg that follows `dialect` ("pjreddie" or "alexeyab")."""
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
                    subdivisions=subdivisions, dialect=dialect)
    cfg.learning_rate = sec.get_float("learning_rate", cfg.learning_rate)
    cfg.momentum = sec.get_float("momentum", cfg.momentum)
    cfg.decay = sec.get_float("decay", cfg.decay)
    policies = ALEXEYAB_POLICIES if dialect == "alexeyab" else POLICIES
    policy = sec.get_str("policy", "constant")
    if policy not in policies:
        raise sec.error(f"unknown learning rate policy {policy!r} ({', '.join(policies)})", "policy")
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
        cfg.eps = sec.get_float("eps", 1e-6 if dialect == "alexeyab" else cfg.eps)
    if dialect == "alexeyab":
        _parse_alexeyab(sec, cfg, batch)
    else:
        for key in ("time_steps", "notruth", "random", "max_ratio", "min_ratio", "clip"):
            sec.get_float(key, 0.0)
    return cfg


def _flag(sec: Section, key: str) -> bool:
    return sec.get_int(key, 0) != 0


def _non_negative(sec: Section, key: str, value: float) -> None:
    if value < 0:
        raise sec.error(f"{key}={value:g} must not be negative", key)


def _parse_alexeyab(sec: Section, cfg: NetConfig, batch: int) -> None:
    """The options AlexeyAB's parse_net_options adds (src/parser.c), validated where a bad value would make
    its Darknet loop forever, divide by zero or index out of bounds."""
    cfg.learning_rate_min = sec.get_float("learning_rate_min", cfg.learning_rate_min)
    cfg.sgdr_cycle = sec.get_int("sgdr_cycle", cfg.max_batches)
    cfg.sgdr_mult = sec.get_int("sgdr_mult", cfg.sgdr_mult)
    if cfg.policy == "sgdr":
        if cfg.sgdr_cycle <= 0:
            raise sec.error("policy=sgdr needs sgdr_cycle (or max_batches) > 0",
                            "sgdr_cycle" if sec.has("sgdr_cycle") else "policy")
        if cfg.sgdr_mult < 1:
            raise sec.error(f"sgdr_mult={cfg.sgdr_mult} must be at least 1", "sgdr_mult")
    cfg.seq_scales = sec.get_list("seq_scales", float) or []
    cfg.time_steps = max(1, sec.get_int("time_steps", 1))  # Darknet raises smaller values to 1
    cfg.track = sec.get_int("track", 0)
    cfg.augment_speed = sec.get_int("augment_speed", 2)
    cfg.sequential_subdivisions = min(sec.get_int("sequential_subdivisions", cfg.subdivisions), cfg.subdivisions)
    cfg.try_fix_nan = _flag(sec, "try_fix_nan")
    cfg.weights_reject_freq = sec.get_int("weights_reject_freq", 0)
    cfg.equidistant_point = sec.get_int("equidistant_point", 0)
    cfg.badlabels_rejection_percentage = sec.get_float("badlabels_rejection_percentage", 0.0)
    cfg.num_sigmas_reject_badlabels = sec.get_float("num_sigmas_reject_badlabels", 0.0)
    cfg.ema_alpha = sec.get_float("ema_alpha", 0.0)
    if not 0 <= cfg.ema_alpha < 1:
        raise sec.error(f"ema_alpha={cfg.ema_alpha:g} must be in [0, 1)", "ema_alpha")
    cfg.loss_scale = sec.get_float("loss_scale", 1.0)
    if cfg.loss_scale <= 0:
        raise sec.error(f"loss_scale={cfg.loss_scale:g} must be positive", "loss_scale")
    cfg.dynamic_minibatch = _flag(sec, "dynamic_minibatch")
    for key in _ALEXEYAB_RUNTIME_ONLY:
        sec.get_float(key, 0.0)
    cfg.flip = _flag(sec, "flip") if sec.has("flip") else True
    cfg.blur = sec.get_int("blur", 0)
    cfg.gaussian_noise = sec.get_int("gaussian_noise", 0)
    for key, value in (("blur", cfg.blur), ("gaussian_noise", cfg.gaussian_noise)):
        _non_negative(sec, key, value)
    cfg.mixup = sec.get_int("mixup", 0)
    if cfg.mixup not in (0, MIXUP):
        raise sec.error(f"mixup={cfg.mixup} must be 0 or 1", "mixup")
    cutmix, mosaic = _flag(sec, "cutmix"), _flag(sec, "mosaic")
    if mosaic and cutmix:
        cfg.mixup = MOSAIC_CUTMIX
    elif cutmix:
        cfg.mixup = CUTMIX
    elif mosaic:
        cfg.mixup = MOSAIC
    cfg.letter_box = _flag(sec, "letter_box")
    cfg.mosaic_bound = _flag(sec, "mosaic_bound")
    cfg.contrastive = _flag(sec, "contrastive")
    cfg.contrastive_jit_flip = _flag(sec, "contrastive_jit_flip")
    cfg.contrastive_color = _flag(sec, "contrastive_color")
    cfg.unsupervised = _flag(sec, "unsupervised")
    if cfg.contrastive and batch // cfg.subdivisions < 2:
        raise sec.error("contrastive=1 needs a mini-batch (batch/subdivisions) of at least 2", "contrastive")
    cfg.label_smooth_eps = sec.get_float("label_smooth_eps", 0.0)
    cfg.resize_step = sec.get_float("resize_step", 32.0)
    if cfg.resize_step <= 0:
        raise sec.error(f"resize_step={cfg.resize_step:g} must be positive", "resize_step")
    cfg.attention = sec.get_int("attention", 0)
    cfg.adversarial_lr = sec.get_float("adversarial_lr", 0.0)
    cfg.max_chart_loss = sec.get_float("max_chart_loss", 20.0)
    if cfg.max_chart_loss <= 0:
        raise sec.error(f"max_chart_loss={cfg.max_chart_loss:g} must be positive", "max_chart_loss")
    for key in ("saturation", "exposure"):
        if getattr(cfg, key) <= 0:
            raise sec.error(f"{key}={getattr(cfg, key):g} must be positive", key)
