"""PyTorch source for a network: one nn.Module class that needs only torch, its forward written out.

Each layer module writes its own source (`emit_source(writer, i, inp, out)`, next to its forward, with the
same torch ops in the same order), and the shared formulas come from the tables the runtime itself is made
of (activations, BatchNorm's standard deviation per dialect, the WordTree softmax), so the generated
forward gives pydarknet's outputs bit for bit. Weights come from a pydarknet `pt` export through the class's
`load_pydarknet_state` (attribute names follow the cfg index: `conv0`, `bn0_scale`, ...); WordTree index
tables are buffers filled from the pt file's `tables`, not literals.
"""

from __future__ import annotations

import textwrap

import torch

from pydarknet.errors import DarknetError
from pydarknet.layers.activations import activation_code
from pydarknet.layers.batchnorm import batchnorm_source
from pydarknet.network import Darknet
from pydarknet.wordtree import TREE_SOFTMAX_SOURCE, Tree

_LOAD = '''
    def load_pydarknet_state(self, pt: dict) -> None:
        """Load a pydarknet `pt` export: `model.load_pydarknet_state(torch.load(path, weights_only=True))`."""
        source = {**pt["state_dict"], **pt["tables"]}
        self.load_state_dict({name: source[key] for name, key in self.PYDARKNET_KEYS.items()})
'''


def tree_tables(tree: Tree) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, int]]]:
    """(perm, inverse, buckets): the class permutation the WordTree softmax uses (groups of equal size next
    to each other), its inverse, and the (size, count) runs it makes."""
    perm, inverse, buckets = tree._size_buckets
    return torch.from_numpy(perm.astype("int64")), torch.from_numpy(inverse.astype("int64")), buckets


class ClassWriter:
    """Collects the generated class: parameters and their pt keys, `__init__` lines, forward lines, helper
    methods and class constants. Layers write into it through `emit_source`."""

    def __init__(self, net: Darknet) -> None:
        self.net = net
        self.keys: list[tuple[str, str]] = []  # (generated name, pydarknet pt key)
        self.init: list[str] = []
        self.body: list[str] = []
        self.constants: list[str] = []
        self.helpers: list[str] = []
        needed = {s for i, srcs in enumerate(net.sources) if i <= net.output_index for s in srcs}
        # Only outputs read again later get their own name; the rest flow through `x`.
        self.names = [f"x{i}" if i in needed else "x" for i in range(len(net.layers))]

    def helper(self, code: str) -> None:
        if code not in self.helpers:
            self.helpers.append(code)

    def param(self, name: str, key: str, make: str, buffer: bool = False) -> None:
        """A tensor attribute `name` made by `make`, filled from the pt file's `key`."""
        self.init.append(f'self.register_buffer("{name}", {make})' if buffer
                         else f"self.{name} = nn.Parameter({make})")
        self.keys.append((name, key))

    def submodule(self, name: str, make: str, keys: dict[str, str]) -> None:
        """An nn.Module attribute made by `make`; `keys` maps its tensor names to pt keys."""
        self.init.append(f"self.{name} = {make}")
        self.keys += [(f"{name}.{tensor}", key) for tensor, key in keys.items()]

    def line(self, code: str) -> None:
        self.body.append(code)

    def emit(self, target: str, expr: str) -> None:
        if target != expr:
            self.body.append(f"{target} = {expr}")

    def activation(self, out: str, name: str, x: str = "x") -> None:
        self.emit(out, activation_code(name, x))

    def batchnorm_params(self, i: int, n: int) -> str:
        """Register layer i's BatchNorm tensors; their names as arguments (scale, bias, mean, var)."""
        self.param(f"bn{i}_scale", f"layers.{i}.bn.weight", f"torch.ones({n})")
        self.param(f"bn{i}_bias", f"layers.{i}.bn.bias", f"torch.zeros({n})")
        self.param(f"bn{i}_mean", f"layers.{i}.bn.running_mean", f"torch.zeros({n})", buffer=True)
        self.param(f"bn{i}_var", f"layers.{i}.bn.running_var", f"torch.ones({n})", buffer=True)
        return f"self.bn{i}_scale, self.bn{i}_bias, self.bn{i}_mean, self.bn{i}_var"

    def batchnorm(self, i: int, n: int, dialect: str) -> None:
        """x = x through layer i's inference BatchNorm (its Darknet's epsilon)."""
        self.helper(batchnorm_source(dialect))
        self.line(f"x = self.batchnorm(x, {self.batchnorm_params(i, n)})")

    def tree(self, i: int, tree: Tree) -> str:
        """Register layer i's WordTree tables; the tree_softmax arguments after the input."""
        self.helper("\n    @staticmethod\n" + textwrap.indent(TREE_SOFTMAX_SOURCE, "    "))
        _, _, buckets = tree_tables(tree)
        for part in ("perm", "inverse"):
            self.param(f"tree{i}_{part}", f"layers.{i}.tree_{part}",
                       f"torch.zeros({tree.n}, dtype=torch.long)", buffer=True)
        lines = [f"TREE{i}_BUCKETS = ("]
        for size, count in buckets:
            pair = f"({size}, {count}),"
            if len(lines[-1]) + len(pair) > 100:
                lines.append("   ")
            lines[-1] += pair if lines[-1].endswith("(") else f" {pair}"
        self.constants.append("\n    ".join(lines).rstrip(",") + ")")
        return f"self.tree{i}_perm, self.tree{i}_inverse, self.TREE{i}_BUCKETS"

    def layer(self, i: int) -> None:
        net, layer = self.net, self.net.layers[i]
        inp, out = ("x" if i == 0 else self.names[i - 1]), self.names[i]
        self.line(f"# {i} [{net.kinds[i]}] {' '.join(net.summaries[i].split())}")
        emit = getattr(layer, "emit_source", None)
        if emit is None:
            raise DarknetError(f"codegen does not know [{net.kinds[i]}] layers (layer {i}; the inference "
                               "network cannot be written out: load it with exact=True)", net.cfg_path)
        emit(self, i, inp, out)

    def source(self, class_name: str) -> str:
        net = self.net
        for i in range(net.output_index + 1):
            self.layer(i)
        shape, last = net.input_shape, net.output_index
        keys = "".join(f'\n        "{name}": "{key}",' for name, key in self.keys)
        constants = "".join(f"    {c}\n" for c in self.constants)
        init = "".join(f"\n        {line}" for line in self.init)
        body = "".join(f"\n        {line}" for line in self.body)
        return (
            f'"""{class_name}: the Darknet network of {net.cfg_path.name} as plain PyTorch '
            "(pydarknet codegen).\n\n"
            f"Input: (N, {shape.c}, {shape.h}, {shape.w}) images. Output: layer {last}'s ({net.kinds[last]}) "
            "output in Darknet's layout.\nWeights: a pydarknet `pt` export "
            "(`pydarknet convert CFG WEIGHTS model.pt`), then\n\n"
            f"    model = {class_name}()\n"
            '    model.load_pydarknet_state(torch.load("model.pt", weights_only=True))\n'
            '    model.eval()\n"""\n\n'
            "from __future__ import annotations\n\n"
            "import torch\nimport torch.nn.functional as F\nfrom torch import Tensor, nn\n\n\n"
            f"class {class_name}(nn.Module):\n"
            "    # name here -> key in the pt file's state_dict (or its tables)\n"
            f"    PYDARKNET_KEYS = {{{keys}\n    }}\n"
            f"{constants}\n"
            f"    def __init__(self) -> None:\n        super().__init__(){init}\n\n"
            f"    def forward(self, x: Tensor) -> Tensor:{body}\n        return {self.names[last]}\n"
            + "".join(self.helpers) + _LOAD
        )


def codegen(net: Darknet, class_name: str = "DarknetModel") -> str:
    """Readable PyTorch source of one nn.Module class equivalent to `net` at inference."""
    return ClassWriter(net).source(class_name)
