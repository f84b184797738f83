"""PyTorch source for a network: one nn.Module class that needs only torch, its forward written out.

The generated forward uses the same torch ops in the same order as pydarknet's layers, so its outputs
are bit-identical. Weights come from a pydarknet `pt` export through the class's `load_pydarknet_state`
(attribute names follow the cfg index: `conv0`, `bn0_scale`, ...); WordTree index tables are buffers
filled from the pt file's `tables`, not literals.
"""

from __future__ import annotations

import numpy as np
import torch

from pydarknet.errors import DarknetError
from pydarknet.network import Darknet
from pydarknet.wordtree import Tree

# Darknet activations as expressions of a variable (the same ops as pydarknet.layers.activations).
ACTIVATION_CODE = {
    "linear": "{x}",
    "logistic": "torch.sigmoid({x})",
    "loggy": "2 * torch.sigmoid({x}) - 1",
    "relu": "F.relu({x})",
    "elu": "torch.where({x} >= 0, {x}, torch.exp({x}) - 1)",
    "selu": "torch.where({x} >= 0, 1.0507 * {x}, 1.0507 * 1.6732 * (torch.exp({x}) - 1))",
    "relie": "torch.where({x} > 0, {x}, 0.01 * {x})",
    "ramp": "{x} * ({x} > 0) + 0.1 * {x}",
    "leaky": "F.leaky_relu({x}, 0.1)",
    "tanh": "torch.tanh({x})",
    "plse": "torch.where({x} < -4, 0.01 * ({x} + 4), "
            "torch.where({x} > 4, 0.01 * ({x} - 4) + 1, 0.125 * {x} + 0.5))",
    "stair": "torch.where(torch.floor({x}) % 2 == 0, torch.floor({x} / 2), "
             "{x} - torch.floor({x}) + torch.floor({x} / 2))",
    "hardtan": "torch.clamp({x}, -1, 1)",
    "lhtan": "torch.where({x} < 0, 0.001 * {x}, torch.where({x} > 1, 0.001 * ({x} - 1) + 1, {x}))",
}

_BATCHNORM = '''
    @staticmethod
    def batchnorm(x: Tensor, scale: Tensor, bias: Tensor, mean: Tensor, var: Tensor) -> Tensor:
        """Darknet's inference batchnorm: the epsilon is added to the std, not to the variance."""
        shape = (1, -1) + (1,) * (x.dim() - 2)
        std = var.sqrt() + 1e-6
        return (x - mean.view(shape)) / std.view(shape) * scale.view(shape) + bias.view(shape)
'''

_TREE_SOFTMAX = '''
    @staticmethod
    def tree_softmax(x: Tensor, perm: Tensor, inverse: Tensor, buckets: tuple[tuple[int, int], ...],
                     dim: int) -> Tensor:
        """WordTree softmax: a softmax over each group of sibling classes along `dim`. `perm` puts groups
        of equal size next to each other, `buckets` lists the (group size, group count) runs it makes."""
        xp = x.index_select(dim, perm)
        lead, tail = x.shape[:dim], x.shape[dim + 1 :]
        outs, start = [], 0
        for size, count in buckets:
            chunk = xp.narrow(dim, start, size * count).reshape(*lead, count, size, *tail)
            e = torch.exp(chunk - chunk.amax(dim + 1, keepdim=True))
            outs.append((e / e.sum(dim + 1, keepdim=True)).reshape(*lead, size * count, *tail))
            start += size * count
        return torch.cat(outs, dim).index_select(dim, inverse)
'''

_LOAD = '''
    def load_pydarknet_state(self, pt: dict) -> None:
        """Load a pydarknet `pt` export: `model.load_pydarknet_state(torch.load(path, weights_only=True))`."""
        source = {**pt["state_dict"], **pt["tables"]}
        self.load_state_dict({name: source[key] for name, key in self.PYDARKNET_KEYS.items()})
'''


def tree_tables(tree: Tree) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, int]]]:
    """(perm, inverse, buckets): a class permutation that puts groups of equal size next to each other
    (by size, then group), its inverse, and the (size, count) runs it makes."""
    perm = np.lexsort((tree.group, tree.group_size[tree.group]))
    sizes, counts = np.unique(tree.group_size[tree.group_size > 0], return_counts=True)
    buckets = list(zip(sizes.tolist(), counts.tolist(), strict=True))
    inverse = np.argsort(perm)
    return torch.from_numpy(perm.astype(np.int64)), torch.from_numpy(inverse.astype(np.int64)), buckets


class _Writer:
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
        self.init.append(f'self.register_buffer("{name}", {make})' if buffer
                         else f"self.{name} = nn.Parameter({make})")
        self.keys.append((name, key))

    def emit(self, target: str, expr: str) -> None:
        if target != expr:
            self.body.append(f"{target} = {expr}")

    def activation(self, out: str, name: str) -> None:
        self.emit(out, ACTIVATION_CODE[name].format(x="x"))

    def batchnorm(self, i: int, n: int) -> None:
        self.helper(_BATCHNORM)
        self.param(f"bn{i}_scale", f"layers.{i}.bn.weight", f"torch.ones({n})")
        self.param(f"bn{i}_bias", f"layers.{i}.bn.bias", f"torch.zeros({n})")
        self.param(f"bn{i}_mean", f"layers.{i}.bn.running_mean", f"torch.zeros({n})", buffer=True)
        self.param(f"bn{i}_var", f"layers.{i}.bn.running_var", f"torch.ones({n})", buffer=True)
        self.body.append(f"x = self.batchnorm(x, self.bn{i}_scale, self.bn{i}_bias, self.bn{i}_mean, "
                         f"self.bn{i}_var)")

    def tree(self, i: int, tree: Tree) -> str:
        """Register layer i's tree tables; the call arguments after the input."""
        self.helper(_TREE_SOFTMAX)
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
        net, kind, layer = self.net, self.net.kinds[i], self.net.layers[i]
        inp, out = ("x" if i == 0 else self.names[i - 1]), self.names[i]
        self.body.append(f"# {i} [{kind}] {' '.join(net.summaries[i].split())}")
        write = getattr(self, f"_{kind}", None)
        if write is None:
            raise DarknetError(f"codegen does not know [{kind}] layers (layer {i})", net.cfg_path)
        write(i, layer, inp, out)

    def _convolutional(self, i: int, layer: torch.nn.Module, inp: str, out: str) -> None:
        c = layer.conv
        groups = f", groups={c.groups}" if c.groups != 1 else ""
        self.init.append(f"self.conv{i} = nn.Conv2d({c.in_channels}, {c.out_channels}, {c.kernel_size[0]}, "
                         f"{c.stride[0]}, {c.padding[0]}{groups}, bias={c.bias is not None})")
        self.keys.append((f"conv{i}.weight", f"layers.{i}.conv.weight"))
        if c.bias is not None:
            self.keys.append((f"conv{i}.bias", f"layers.{i}.conv.bias"))
        self.body.append(f"x = self.conv{i}({inp})")
        if layer.bn is not None:
            self.batchnorm(i, c.out_channels)
        self.activation(out, layer.act.name)

    _conv = _convolutional

    def _connected(self, i: int, layer: torch.nn.Module, inp: str, out: str) -> None:
        fc = layer.fc
        self.init.append(f"self.fc{i} = nn.Linear({fc.in_features}, {fc.out_features}, "
                         f"bias={fc.bias is not None})")
        self.keys.append((f"fc{i}.weight", f"layers.{i}.fc.weight"))
        if fc.bias is not None:
            self.keys.append((f"fc{i}.bias", f"layers.{i}.fc.bias"))
        self.body.append(f"x = self.fc{i}({inp}.flatten(1))")
        if layer.bn is not None:
            self.batchnorm(i, fc.out_features)
        self.activation("x", layer.act.name)
        self.body.append(f"{out} = x.view(x.shape[0], -1, 1, 1)")

    def _maxpool(self, i: int, layer: torch.nn.Module, inp: str, out: str) -> None:
        if any(layer.pads):  # -inf padding: outside cells never win, as Darknet's -FLT_MAX
            inp = f'F.pad({inp}, {tuple(layer.pads)}, value=float("-inf"))'
        self.emit(out, f"F.max_pool2d({inp}, {layer.size}, {layer.stride})")

    def _avgpool(self, i: int, layer: torch.nn.Module, inp: str, out: str) -> None:
        self.emit(out, f"{inp}.mean(dim=(2, 3), keepdim=True)")

    def _route(self, i: int, layer: torch.nn.Module, inp: str, out: str) -> None:
        names = [f"x{s}" for s in layer.sources]
        self.emit(out, names[0] if len(names) == 1 else f"torch.cat([{', '.join(names)}], 1)")

    def _reorg(self, i: int, layer: torch.nn.Module, inp: str, out: str) -> None:
        s = layer.stride
        self.body.append(f"b, c, h, w = {inp}.shape")
        if layer.reverse:
            self.emit(out, f"{inp}.reshape(b, {s}, {s}, c // {s * s}, h, w).permute(0, 3, 4, 1, 5, 2)"
                           f".reshape(b, c // {s * s}, h * {s}, w * {s})")
        else:  # Darknet's reorg reads the input as (C/s², H*s, W*s): not a space-to-depth
            self.emit(out, f"{inp}.reshape(b, c // {s * s}, h, {s}, w, {s}).permute(0, 3, 5, 1, 2, 4)"
                           f".reshape(b, c * {s * s}, h // {s}, w // {s})")

    def _shortcut(self, i: int, layer: torch.nn.Module, inp: str, out: str) -> None:
        src = f"x{layer.sources[0]}"
        alpha = "" if layer.alpha == 1 else f" * {layer.alpha!r}"
        beta = "" if layer.beta == 1 else f"{layer.beta!r} * "
        same_channels = self.net.shapes[i].c == self.net.shapes[layer.sources[0]].c == layer.minc
        if layer.stride == layer.sample == 1 and same_channels:
            self.body.append(f"x = {inp}{alpha} + {beta}{src}")
        else:  # Darknet's shortcut_cpu: stride through the bigger map, add into the common channels
            m, st, sa = layer.minc, layer.stride, layer.sample
            every = {s: f", ::{s}, ::{s}" if s > 1 else "" for s in (st, sa)}
            fit = {d: f"(x.shape[{d}] + {sa - 1}) // {sa}" if sa > 1 else f"x.shape[{d}]" for d in (2, 3)}
            self.body += [f"add = {src}[:, :{m}{every[st]}]",
                          f"x = {inp}.clone()" if layer.alpha == 1 else f"x = {inp} * {layer.alpha!r}",
                          f"h, w = min(add.shape[2], {fit[2]}), min(add.shape[3], {fit[3]})",
                          f"x[:, :{m}{every[sa]}][:, :, :h, :w].add_({beta}add[:, :, :h, :w])"]
        self.activation(out, layer.act.name)

    def _upsample(self, i: int, layer: torch.nn.Module, inp: str, out: str) -> None:
        s = layer.stride
        scale = "" if layer.scale == 1 else f" * {layer.scale!r}"
        self.emit(out, f"{inp}.repeat_interleave({s}, dim=2).repeat_interleave({s}, dim=3){scale}")

    def _softmax(self, i: int, layer: torch.nn.Module, inp: str, out: str) -> None:
        # x / 1.0 is exact, so a temperature of 1 is left out.
        temp = "" if layer.temperature == 1 else f" / {layer.temperature!r}"
        if layer.tree is not None:
            self.emit(out, f"self.tree_softmax({inp}.flatten(1){temp}, {self.tree(i, layer.tree)}, 1)")
            return
        self.body.append(f"x = {inp}.flatten(1)")
        self.emit(out, f"torch.softmax(x.view(x.shape[0], {layer.groups}, -1){temp}, dim=2).view_as(x)")

    def _region(self, i: int, layer: torch.nn.Module, inp: str, out: str) -> None:
        p = layer.params
        entries = p.coords + 1 + p.classes
        self.body += [f"b, _, h, w = {inp}.shape",
                      f"v = {inp}.reshape(b, {p.n}, {entries}, h * w)  # per anchor: x, y, w, h, objectness, "
                      f"{p.classes} classes",
                      "xy = torch.sigmoid(v[:, :, :2])"]
        if p.softmax and p.background and layer.tree is None:  # one softmax over objectness and classes
            self.body.append("obj_cls = torch.softmax(v[:, :, 4:], dim=2)")
            self.emit(out, f"torch.cat([xy, v[:, :, 2:4], obj_cls], 2).reshape(b, {p.n * entries}, h, w)")
            return
        self.body.append("obj = v[:, :, 4:5]" if p.background else "obj = torch.sigmoid(v[:, :, 4:5])")
        if layer.tree is not None:
            self.body.append(f"cls = self.tree_softmax(v[:, :, 5:], {self.tree(i, layer.tree)}, 2)")
        elif p.softmax:
            self.body.append("cls = torch.softmax(v[:, :, 5:], dim=2)")
        else:
            self.body.append("cls = torch.sigmoid(v[:, :, 5:])")
        self.emit(out, f"torch.cat([xy, v[:, :, 2:4], obj, cls], 2).reshape(b, {p.n * entries}, h, w)")

    def _identity(self, i: int, layer: torch.nn.Module, inp: str, out: str) -> None:
        self.body[-1] += " (identity at inference)"
        self.emit(out, inp)

    _dropout = _cost = _identity  # pass-through at inference

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
    return _Writer(net).source(class_name)
