"""Datasets and loaders: ImageNet-style folders, timm datasets, CIFAR, and the embedded digits."""

from .cifar import CifarDataset, find_cifar
from .datasets import DATA_DEFAULTS, Datasets, TolerantDataset, UnreadableImage, collate_tolerant, open_datasets
from .digits import DigitsDataset, load_digits
from .loader import ResumableSampler, ShardSampler, create_loader, create_transforms, resolve_transform_config
from .reference import REFERENCE_RUNS, read_summary

__all__ = [
    "DATA_DEFAULTS",
    "REFERENCE_RUNS",
    "CifarDataset",
    "Datasets",
    "DigitsDataset",
    "ResumableSampler",
    "ShardSampler",
    "TolerantDataset",
    "UnreadableImage",
    "collate_tolerant",
    "create_loader",
    "create_transforms",
    "find_cifar",
    "load_digits",
    "open_datasets",
    "read_summary",
    "resolve_transform_config",
]
