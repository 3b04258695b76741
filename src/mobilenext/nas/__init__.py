"""DARTS architecture search with the sandglass block as a candidate operation (MobileNeXt, section 5.4).

``operations``: the DARTS operations plus ``sg_block_3x3`` / ``ir_block_3x3``; ``genotypes``: the discrete
cells, JSON I/O, the DARTS derivation rule, DARTS_V1/V2; ``supernet``: the search network and the alpha step
(first/second order); ``network``: the evaluation network (timm model ``darts_cifar``); ``search`` and
``train``: ``mobilenext nas search|train``; ``plot``: pictures of cells and alphas.
"""

from .genotypes import DARTS_V1, DARTS_V2, GENOTYPES, Genotype, derive_genotype, load_genotype, save_genotype
from .network import NetworkCIFAR, count_network_params, network_summary
from .operations import OP_PRESETS, OPS, resolve_ops
from .supernet import Architect, SearchNetwork

__all__ = [
    "DARTS_V1",
    "DARTS_V2",
    "GENOTYPES",
    "OPS",
    "OP_PRESETS",
    "Architect",
    "Genotype",
    "NetworkCIFAR",
    "SearchNetwork",
    "count_network_params",
    "derive_genotype",
    "load_genotype",
    "network_summary",
    "resolve_ops",
    "save_genotype",
]
