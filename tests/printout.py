"""Parse a PyTorch module printout (``print(model)``) into its layers, to compare with a live model."""

from __future__ import annotations

import re

from torch import nn

_HEAD = re.compile(r"^(\s*)\(([\w.]+)\): (\w+)\((.*)$")
_INTS = re.compile(r"\((\d+), \d+\)")


def parse_modules(text: str) -> list[tuple[str, str, str]]:
    """``(path, type, constructor arguments)`` for every module of the printout, in order."""
    modules: list[list[str]] = []
    open_modules: list[tuple[int, str, int]] = []  # (indent, name, index into modules)
    for line in text.splitlines():
        head = _HEAD.match(line)
        if head:
            indent, name, kind, rest = head.groups()
            while open_modules and open_modules[-1][0] >= len(indent):
                open_modules.pop()
            path = ".".join([m[1] for m in open_modules] + [name])
            if rest == ")" or (rest.endswith(")") and rest.count("(") < rest.count(")")):
                modules.append([path, kind, rest[:-1]])  # a one-line module
            else:
                modules.append([path, kind, ""])
                open_modules.append((len(indent), name, len(modules) - 1))
        elif line.strip() not in ("", ")") and open_modules:
            modules[open_modules[-1][2]][2] += line.strip()  # constructor arguments on their own line
    return [tuple(m) for m in modules]


def _conv_from_args(args: str) -> tuple:
    numbers = args.split(",")
    kernel, stride = (int(v) for v in _INTS.findall(args)[:2])
    groups = int(re.search(r"groups=(\d+)", args).group(1)) if "groups=" in args else 1
    return ("conv", int(numbers[0]), int(numbers[1]), kernel, stride, groups, "bias=False" not in args)


def printout_layers(text: str) -> list[tuple]:
    """Convs, batch norms and linear layers of a printout, as comparable tuples, in order."""
    layers = []
    for _, kind, args in parse_modules(text):
        if kind.startswith("Conv2d"):
            layers.append(_conv_from_args(args))
        elif kind == "BatchNorm2d":
            eps = float(re.search(r"eps=([\d.e-]+)", args).group(1))
            momentum = float(re.search(r"momentum=([\d.e-]+)", args).group(1))
            layers.append(("bn", int(args.split(",")[0]), eps, round(momentum, 6)))
        elif kind == "Linear":
            dims = [int(v) for v in re.findall(r"features=(\d+)", args)]
            layers.append(("linear", *dims))
    return layers


def model_layers(model: nn.Module) -> list[tuple]:
    """The same tuples for a live model, in module registration order."""
    layers = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            layers.append(
                ("conv", m.in_channels, m.out_channels, m.kernel_size[0], m.stride[0], m.groups, m.bias is not None)
            )
        elif isinstance(m, nn.BatchNorm2d):
            layers.append(("bn", m.num_features, m.eps, round(m.momentum, 6)))
        elif isinstance(m, nn.Linear):
            layers.append(("linear", m.in_features, m.out_features))
    return layers


def count_of(text: str, kind: str) -> int:
    return sum(1 for _, k, _ in parse_modules(text) if k == kind)
