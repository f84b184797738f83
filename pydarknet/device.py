"""`--device cpu|cuda|cuda:N` to a torch.device, with a clear error when it cannot be used."""

from __future__ import annotations

import torch

from pydarknet.errors import DarknetError


def get_device(spec: str) -> torch.device:
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise DarknetError(f"--device {spec!r}: expected cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DarknetError(f"--device {spec}: CUDA is not available on this machine")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DarknetError(f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s)")
    elif device.type != "cpu":
        raise DarknetError(f"--device {spec!r}: expected cpu, cuda or cuda:N")
    return device
