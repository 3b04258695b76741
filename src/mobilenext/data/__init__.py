"""Datasets and loaders: ImageNet-style folders, timm datasets, CIFAR, the embedded digits, and image reading.
Every name below loads its module on first use."""

from .._lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "CifarDataset": "cifar",
        "find_cifar": "cifar",
        "DATA_DEFAULTS": "datasets",
        "Datasets": "datasets",
        "TolerantDataset": "datasets",
        "UnreadableImage": "datasets",
        "collate_tolerant": "datasets",
        "open_datasets": "datasets",
        "DigitsDataset": "digits",
        "load_digits": "digits",
        "IMAGE_EXTENSIONS": "images",
        "find_images": "images",
        "read_image": "images",
        "ResumableSampler": "loader",
        "ShardSampler": "loader",
        "create_loader": "loader",
        "create_transforms": "loader",
        "resolve_transform_config": "loader",
        "REFERENCE_RUNS": "reference",
        "read_summary": "reference",
    },
)
