"""The evaluation network of DARTS on CIFAR: a stem, ``layers`` cells built from one genotype (reduction
cells at 1/3 and 2/3 of the depth, where the width doubles), global pooling and a classifier, plus an
auxiliary classifier at 2/3 of the depth for training.

Registered with timm as ``darts_cifar`` (by :mod:`mobilenext.nas`, so that ``import mobilenext`` registers it
without loading this module): ``timm.create_model("darts_cifar", genotype="DARTS_V2", init_channels=36,
layers=20, auxiliary=True, drop_path_rate=0.2)``. In training mode with
``auxiliary=True`` the forward returns ``(logits, auxiliary_logits)``, as DARTS's does; otherwise logits.
"""

from pathlib import Path
from typing import Any

import torch
from timm.layers import SelectAdaptivePool2d, drop_path
from torch import nn

from .._compat import factory_device, feature_take_indices
from ..errors import ConfigError
from .genotypes import Genotype, load_genotype
from .operations import OPS, FactorizedReduce, ReLUConvBN

__all__ = [
    "Cell",
    "NetworkCIFAR",
    "AuxiliaryHeadCIFAR",
    "count_network_params",
    "cell_preprocess",
    "check_network_size",
    "network_summary",
]

STEM_MULTIPLIER = 3  # the stem is 3C wide


def check_network_size(init_channels: int, layers: int) -> None:
    """One sentence for sizes no DARTS network can have (the search and the evaluation network alike)."""
    if init_channels < 1:
        raise ConfigError(f"the network needs at least 1 initial channel, got {init_channels}.")
    if layers < 3:
        raise ConfigError(
            f"the network needs at least 3 cells (reduction cells sit at 1/3 and 2/3 of the depth), got {layers}."
        )


def cell_preprocess(prev_prev_chs: int, prev_chs: int, chs: int, reduction_prev: bool, affine: bool):
    """Bring a cell's two inputs to ``chs`` channels and the same resolution: after a reduction cell the
    older input is twice as large, so it is halved by a :class:`FactorizedReduce`."""
    pre0 = (
        FactorizedReduce(prev_prev_chs, chs, affine)
        if reduction_prev
        else ReLUConvBN(prev_prev_chs, chs, 1, 1, 0, affine)
    )
    return pre0, ReLUConvBN(prev_chs, chs, 1, 1, 0, affine)


class Cell(nn.Module):
    """One cell of a genotype: each intermediate node sums two operations on earlier nodes; the output
    concatenates the nodes of ``concat``. In a reduction cell the operations on the inputs have stride 2."""

    def __init__(
        self, genotype: Genotype, prev_prev_chs: int, prev_chs: int, chs: int, reduction: bool, reduction_prev: bool
    ):
        super().__init__()
        self.reduction = reduction
        self.preprocess0, self.preprocess1 = cell_preprocess(prev_prev_chs, prev_chs, chs, reduction_prev, True)
        edges, self.concat = (
            (genotype.reduce, genotype.reduce_concat) if reduction else (genotype.normal, genotype.normal_concat)
        )
        self.inputs = [int(node) for _, node in edges]
        self.concat = [int(node) for node in self.concat]
        self.ops = nn.ModuleList(OPS[op](chs, 2 if reduction and node < 2 else 1, True) for op, node in edges)
        self.droppable = [not isinstance(op, nn.Identity) for op in self.ops]  # DARTS never drops an identity edge
        self.multiplier = len(self.concat)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, drop_prob: float = 0.0) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        first = states[0]
        for i, op in enumerate(self.ops):  # ops in pairs: node = op(a) + op(b); a loop TorchScript unrolls
            h = op(states[self.inputs[i]])
            if self.training and drop_prob > 0 and self.droppable[i]:
                h = drop_path(h, drop_prob, True)
            if i % 2 == 0:
                first = h
            else:
                states.append(first + h)
        return torch.cat([states[i] for i in self.concat], dim=1)


class AuxiliaryHeadCIFAR(nn.Module):
    """DARTS's auxiliary classifier on the 8x8 maps after the second reduction cell."""

    def __init__(self, in_chs: int, num_classes: int):
        super().__init__()
        self.features = nn.Sequential(
            nn.ReLU(inplace=True),
            nn.AvgPool2d(5, stride=3, padding=0, count_include_pad=False),  # 8x8 -> 2x2
            nn.Conv2d(in_chs, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, 2, bias=False),
            nn.BatchNorm2d(768),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


class NetworkCIFAR(nn.Module):
    """DARTS's CIFAR network from a genotype (a :class:`Genotype`, a built-in name or a JSON file).

    ``drop_path_rate`` is the largest drop-path probability; the trainer raises ``drop_path_prob`` to it
    linearly over the epochs, as DARTS does. ``global_pool`` is timm's (``""``: the unpooled map);
    ``device`` and ``dtype`` are timm's factory arguments. Feature maps (``feature_info``,
    ``forward_intermediates``, ``features_only``): the stem and the last cell of each resolution.
    """

    def __init__(
        self,
        genotype: Genotype | str | Path = "DARTS_V2",
        init_channels: int = 36,
        layers: int = 20,
        num_classes: int = 10,
        auxiliary: bool = False,
        drop_path_rate: float = 0.0,
        drop_rate: float = 0.0,
        in_chans: int = 3,
        global_pool: str = "avg",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ):
        super().__init__()
        check_network_size(init_channels, layers)
        self.genotype = load_genotype(genotype)
        self.num_classes, self.drop_rate, self.drop_path_rate = num_classes, drop_rate, drop_path_rate
        self.drop_path_prob = drop_path_rate
        self.layers, self.in_chans = layers, in_chans
        with factory_device(device):
            self._build(init_channels, layers, num_classes, auxiliary, in_chans, global_pool)
        if dtype is not None:
            self.to(dtype=dtype)

    def _build(
        self, init_channels: int, layers: int, num_classes: int, auxiliary: bool, in_chans: int, global_pool: str
    ) -> None:
        chs = STEM_MULTIPLIER * init_channels
        self.stem = nn.Sequential(nn.Conv2d(in_chans, chs, 3, padding=1, bias=False), nn.BatchNorm2d(chs))
        self.feature_info = [dict(num_chs=chs, reduction=1, module="stem")]
        self.feature_cells = [-1]  # per feature_info entry: the cell after which it is taken (-1: the stem)
        prev_prev, prev, chs = chs, chs, init_channels
        self.cells = nn.ModuleList()
        reduction_prev = False
        self.aux_index = 2 * layers // 3
        aux_chs = prev
        reductions = (layers // 3, 2 * layers // 3)
        for i in range(layers):
            reduction = i in reductions
            chs *= 2 if reduction else 1
            cell = Cell(self.genotype, prev_prev, prev, chs, reduction, reduction_prev)
            self.cells.append(cell)
            reduction_prev = reduction
            prev_prev, prev = prev, cell.multiplier * chs
            if i == self.aux_index:
                aux_chs = prev
            if i + 1 in reductions or i == layers - 1:  # the last cell at this resolution
                stride = 2 ** sum(r <= i for r in reductions)
                if self.feature_info[-1]["reduction"] == stride:
                    self.feature_info.pop()
                    self.feature_cells.pop()
                self.feature_info.append(dict(num_chs=prev, reduction=stride, module=f"cells.{i}"))
                self.feature_cells.append(i)
        self.auxiliary_head = AuxiliaryHeadCIFAR(aux_chs, num_classes) if auxiliary else None
        self.num_features = self.head_hidden_size = prev
        self.global_pool = SelectAdaptivePool2d(pool_type=global_pool, flatten=bool(global_pool))
        self.classifier = nn.Linear(prev, num_classes) if num_classes > 0 else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self._forward_cells(x)[0]

    def _forward_cells(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        s0 = s1 = self.stem(x)
        aux_input: torch.Tensor | None = None
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self.drop_path_prob)
            if i == self.aux_index:
                aux_input = s1
        return s1, aux_input

    @torch.jit.ignore
    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """Forward that also returns the feature maps of ``feature_info`` (timm's interface)."""
        if output_fmt != "NCHW":
            raise ConfigError(f"output_fmt must be 'NCHW', got {output_fmt!r}.")
        take_indices, max_index = feature_take_indices(len(self.feature_cells), indices)
        take_cells = {self.feature_cells[i] for i in take_indices}
        last_cell = self.feature_cells[max_index] if stop_early else len(self.cells) - 1
        s0 = s1 = self.stem(x)
        intermediates = [s1] if -1 in take_cells else []
        for i, cell in enumerate(self.cells[: last_cell + 1]):
            s0, s1 = s1, cell(s0, s1, self.drop_path_prob)
            if i in take_cells:
                intermediates.append(s1)
        return intermediates if intermediates_only else (s1, intermediates)

    @torch.jit.ignore
    def prune_intermediate_layers(
        self, indices: int | list[int] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        take_indices, max_index = feature_take_indices(len(self.feature_cells), indices)
        self.cells = self.cells[: self.feature_cells[max_index] + 1]
        self.auxiliary_head = None
        if prune_head:
            self.reset_classifier(0, "")
        return take_indices

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.global_pool(x)
        if self.drop_rate > 0:
            x = nn.functional.dropout(x, self.drop_rate, self.training)
        return x if pre_logits else self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        features, aux_input = self._forward_cells(x)
        logits = self.forward_head(features)
        if self.training and self.auxiliary_head is not None:
            assert aux_input is not None  # set by the cell at aux_index, which always exists
            return logits, self.auxiliary_head(aux_input)
        return logits

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.classifier

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """A new classifier (and auxiliary classifier) for ``num_classes``, on this model's device, dtype and
        mode; ``global_pool`` ``None`` keeps the pooling, ``""`` removes it."""
        self.num_classes = num_classes
        if global_pool is not None:
            self.global_pool = SelectAdaptivePool2d(pool_type=global_pool, flatten=bool(global_pool))
        like = {"device": self.stem[0].weight.device, "dtype": self.stem[0].weight.dtype}
        self.classifier = nn.Linear(self.num_features, num_classes, **like) if num_classes > 0 else nn.Identity()
        if self.auxiliary_head is not None:
            self.auxiliary_head.classifier = nn.Linear(768, max(num_classes, 1), **like)
        for module in (self.global_pool, self.classifier):
            module.train(self.training)
        if self.auxiliary_head is not None:
            self.auxiliary_head.train(self.training)


def count_network_params(model: nn.Module) -> int:
    """Parameters as DARTS counts them (its ``count_parameters_in_MB``): without the auxiliary head, which
    is dropped after training."""
    return sum(p.numel() for name, p in model.named_parameters() if "auxiliary" not in name)


def network_summary(
    genotype: Genotype | str | Path,
    init_channels: int = 36,
    layers: int = 20,
    auxiliary: bool = False,
    num_classes: int = 10,
) -> dict[str, Any]:
    """Size of a genotype's evaluation network: ``params`` as DARTS counts them (no auxiliary head),
    ``params_with_auxiliary``, ``madds`` of one 32x32 image, and the operations of each cell."""
    from collections import Counter

    from ..models.complexity import count_madds, count_params

    model = NetworkCIFAR(genotype, init_channels, layers, num_classes, auxiliary=auxiliary)
    return {
        "params": count_network_params(model),
        "params_with_auxiliary": count_params(model),
        "madds": count_madds(model, (3, 32, 32)),
        "normal_ops": dict(Counter(op for op, _ in model.genotype.normal).most_common()),
        "reduce_ops": dict(Counter(op for op, _ in model.genotype.reduce).most_common()),
    }
