"""Layer builders; importing the package fills the registry."""

from pydarknet.layers import connected, conv, misc, pool, reorg, route, softmax  # noqa: F401
from pydarknet.layers.registry import BUILDERS, Built, Context, Shape, build_layer

__all__ = ["BUILDERS", "Built", "Context", "Shape", "build_layer"]
