"""Layer builders; importing the package fills the registry."""

from pydarknet.layers import (  # noqa: F401
    connected,
    conv,
    misc,
    pool,
    reorg,
    route,
    scale,
    softmax,
)
from pydarknet.layers.registry import BUILDERS, Built, Context, Shape, build_layer

__all__ = ["BUILDERS", "Built", "Context", "Shape", "build_layer"]
