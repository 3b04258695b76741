"""The authors' detector files (``houqb/ssdlite-pytorch-mobilenext``): their key layout, mapped onto ours in both
directions, and their released checkpoints recognised and loaded with the settings of the config they came from.

Their detection code saves ``{"model": state_dict}`` (with ``module.`` under DDP): the backbone as
``backbone.features.*`` (the classification layout of their MobileNeXt, or torchvision's MobileNetV2), the
extra layers inside it, and the predictor as ``box_head.predictor.{cls,reg}_headers.*``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple

import torch
from torch import nn
from torchvision.models.detection.ssd import SSD

from ..errors import CheckpointError
from ..models.mobilenext import MobileNeXt
from ..models.official import official_module_names
from .data import COCO_CLASSES, VOC_CLASSES
from .model import create_detector
from .settings import ssd_keywords

__all__ = [
    "AuthorsConfig",
    "check_authors_configuration",
    "from_authors_layout",
    "is_authors_detector",
    "load_authors_detector",
    "load_authors_weights",
    "to_authors_layout",
]


# ---- the key layout ------------------------------------------------------------------------------------
def _mobilenetv2_module_names(body: nn.Module) -> Iterator[tuple[str, str]]:
    """(timm ``mobilenetv2_*`` module, torchvision ``mobilenet_v2`` module, which the authors' detector uses)."""
    yield "conv_stem", "features.0.0"
    yield "bn1", "features.0.1"
    index = 1
    for stage_index, stage in enumerate(body.blocks):
        for block_index in range(len(stage)):
            ours = f"blocks.{stage_index}.{block_index}"
            if hasattr(stage[block_index], "conv_pwl"):  # inverted residual: expand, depthwise, project
                pairs = ("conv_pw", "conv.0.0"), ("bn1", "conv.0.1"), ("conv_dw", "conv.1.0"), ("bn2", "conv.1.1"), \
                        ("conv_pwl", "conv.2"), ("bn3", "conv.3")  # fmt: skip
            else:  # the first block: depthwise, project
                pairs = ("conv_dw", "conv.0.0"), ("bn1", "conv.0.1"), ("conv_pw", "conv.1"), ("bn2", "conv.2")
            for name, theirs in pairs:
                yield f"{ours}.{name}", f"features.{index}.{theirs}"
            index += 1
    yield "conv_head", f"features.{index}.0"
    yield "bn2", f"features.{index}.1"


def _authors_module_names(model: SSD) -> dict[str, str]:
    """Our module name -> the authors' module name, for every module holding tensors whose names differ."""
    body = model.backbone.body
    pairs = official_module_names(body) if isinstance(body, MobileNeXt) else _mobilenetv2_module_names(body)
    names = {f"backbone.body.{ours}": f"backbone.{theirs}" for ours, theirs in pairs if ours != "classifier"}
    for ours in dict(model.head.named_modules()):
        if ours:
            names[f"head.{ours}"] = f"box_head.predictor.{ours}"
    return names


def _rename(state_dict: dict[str, torch.Tensor], modules: dict[str, str]) -> dict[str, torch.Tensor]:
    renamed = {}
    for key, value in state_dict.items():
        module, _, tensor = key.rpartition(".")
        renamed[f"{modules.get(module, module)}.{tensor}"] = value
    return renamed


def to_authors_layout(state_dict: dict[str, torch.Tensor], model: SSD) -> dict[str, torch.Tensor]:
    """``model``'s state dict under the authors' keys (their checkpoints store it under ``"model"``)."""
    return _rename(state_dict, _authors_module_names(model))


def from_authors_layout(state_dict: dict[str, torch.Tensor], model: SSD) -> dict[str, torch.Tensor]:
    """The inverse of :func:`to_authors_layout`; a ``module.`` prefix (DDP) is dropped."""
    state_dict = {k.removeprefix("module."): v for k, v in state_dict.items()}
    return _rename(state_dict, {theirs: ours for ours, theirs in _authors_module_names(model).items()})


# ---- their released checkpoints ----------------------------------------------------------------------------
_AUTHORS_BACKBONES = {  # a key only that backbone's checkpoint has -> our detector
    "backbone.features.20.conv.8.weight": "ssdlite320_mobilenext_100",
    "backbone.features.18.0.weight": "ssdlite320_mobilenetv2_100",
}


class AuthorsConfig(NamedTuple):
    """What one of their configs fixes besides the network: default boxes, loss (and so scoring and test
    settings), class names, and the data it was evaluated on."""

    boxes: str
    loss: str
    classes: tuple[str, ...]
    dataset: str
    test_set: str


# (outputs per box, boxes on the last map) -> their config: *_voc0712.yaml or *_coco.yaml
_AUTHORS_CONFIGS = {
    (21, 6): AuthorsConfig("voc", "softmax", VOC_CLASSES, "voc", "2007/test"),
    (81, 4): AuthorsConfig("coco", "focal", COCO_CLASSES, "coco", "val2017"),
}


def check_authors_configuration(model: SSD, name: str) -> None:
    """Raise one sentence unless ``model`` is a detector their code builds from one of their configs (SSDLite-320
    on their MobileNeXt-1.0 or torchvision's MobileNetV2-1.0; VOC: 21 outputs, softmax; COCO: 81, focal), the only
    ones a file in their layout can be loaded into."""
    outputs = model.head.num_classes
    config = next((c for (n, _), c in _AUTHORS_CONFIGS.items() if n == outputs), None)
    ours = (name, model.transform.fixed_size, model.boxes, model.loss)
    if config is None or name not in _AUTHORS_BACKBONES.values() or ours[1:] != ((320, 320), config.boxes, config.loss):
        raise CheckpointError(
            f"{name} at {ours[1][0]} px with {outputs} outputs ({model.boxes} boxes, {model.loss} loss) is none of "
            "the authors' configurations (SSDLite-320 on MobileNeXt-1.0 or MobileNetV2-1.0, VOC: 21 outputs, "
            "softmax; COCO: 81 outputs, focal), which is all their code loads; keep it in our layout (--to timm)."
        )


def is_authors_detector(contents: dict[str, Any]) -> bool:
    """A checkpoint of the authors' detection code: ``{"model": {"backbone.*", "box_head.predictor.*"}}``."""
    weights = contents.get("model")
    return isinstance(weights, dict) and any(
        isinstance(k, str) and k.removeprefix("module.").startswith("box_head.predictor.") for k in weights
    )


def load_authors_detector(weights: dict[str, torch.Tensor], source: str) -> tuple[SSD, AuthorsConfig]:
    """Our detector holding an authors' checkpoint's ``model`` dict, with the settings of the config it came
    from: VOC (21 outputs, softmax) or COCO (81 outputs, 4 boxes on the last map, sigmoid focal scores), at
    their 320 px and with their normalisation and post-processing."""
    weights = {k.removeprefix("module."): v for k, v in weights.items()}
    name = next((detector for key, detector in _AUTHORS_BACKBONES.items() if key in weights), None)
    if name is None:
        raise CheckpointError(
            f"{source} is in the authors' SSDLite layout but holds neither their MobileNeXt-1.0 nor "
            "their MobileNetV2 backbone."
        )
    boxes_last = weights["box_head.predictor.reg_headers.5.weight"].shape[0] // 4
    outputs = weights["box_head.predictor.cls_headers.5.weight"].shape[0] // boxes_last
    config = _AUTHORS_CONFIGS.get((outputs, boxes_last))
    if config is None:
        raise CheckpointError(
            f"{source} is the authors' {name} with {outputs} outputs per box and {boxes_last} boxes on the last map, "
            "which is neither their VOC detector (21, 6) nor their COCO one (81, 4)."
        )
    model = create_detector(
        name, outputs, boxes=config.boxes, loss=config.loss, pipeline="authors", **ssd_keywords({"loss": config.loss})
    )
    return load_authors_weights(model, weights, source), config


def load_authors_weights(model: SSD, weights: dict[str, torch.Tensor], source: str) -> SSD:
    """``model`` with ``weights`` in the authors' layout, or one sentence naming what does not fit."""
    state_dict = from_authors_layout(weights, model)
    expected = model.state_dict()
    mismatched = sorted(set(state_dict) ^ set(expected))
    wrong = [k for k, v in state_dict.items() if k in expected and v.shape != expected[k].shape]
    if mismatched or wrong:
        raise CheckpointError(
            f"{source} is in the authors' SSDLite layout but does not fit its detector, SSDLite on "
            f"{model.backbone_name} (e.g. {(mismatched or wrong)[0]})."
        )
    model.load_state_dict(state_dict)
    return model
