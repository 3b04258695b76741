"""DARTS architecture search with the sandglass block as a candidate operation (MobileNeXt, section 5.4).

``operations``: the DARTS operations plus ``sg_block_3x3`` / ``ir_block_3x3``; ``genotypes``: the discrete
cells, JSON I/O, the DARTS derivation rule, DARTS_V1/V2; ``supernet``: the search network and the alpha step
(first/second order); ``network``: the evaluation network (timm model ``darts_cifar``); ``search`` and
``train``: ``mobilenext nas search|train``; ``plot``: pictures of cells and alphas; ``files``: what a search
checkpoint is.

This module registers ``darts_cifar`` with timm (``import mobilenext`` imports it); the network's code, like
every name below, loads on first use.
"""

from __future__ import annotations

from typing import Any

from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from torch import nn

from .._lazy import lazy_exports

default_cfgs = generate_default_cfgs(
    {
        "darts_cifar": {
            "num_classes": 10,
            "input_size": (3, 32, 32),
            "pool_size": (8, 8),
            "crop_pct": 1.0,
            "interpolation": "bilinear",
            "mean": (0.4914, 0.4822, 0.4465),
            "std": (0.2470, 0.2435, 0.2616),
            "first_conv": "stem.0",
            "classifier": "classifier",
            "license": "apache-2.0",
        }  # fmt: skip
    }
)


@register_model
def darts_cifar(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """DARTS's CIFAR evaluation network (:class:`~mobilenext.nas.network.NetworkCIFAR`); ``genotype`` (default
    ``DARTS_V2``), ``init_channels`` (36), ``layers`` (20), ``auxiliary`` (False) are keyword arguments."""
    from .network import NetworkCIFAR

    return build_model_with_cfg(
        NetworkCIFAR,
        "darts_cifar",
        pretrained,
        feature_cfg={"feature_cls": "getter", "out_indices": (0, 1, 2)},
        **kwargs,
    )


__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "DARTS_V1": "genotypes",
        "DARTS_V2": "genotypes",
        "GENOTYPES": "genotypes",
        "Genotype": "genotypes",
        "derive_genotype": "genotypes",
        "load_genotype": "genotypes",
        "save_genotype": "genotypes",
        "NetworkCIFAR": "network",
        "count_network_params": "network",
        "network_summary": "network",
        "OPS": "operations",
        "OP_PRESETS": "operations",
        "resolve_ops": "operations",
        "Architect": "supernet",
        "SearchNetwork": "supernet",
    },
)
