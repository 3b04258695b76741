"""Models: the sandglass block, the MobileNeXt family (registered with timm), state-dict I/O."""

from . import baselines, efficient  # noqa: F401  (register the EfficientNet-based models and baselines)
from .checkpoint import (
    check_state_dict,
    keep_model_classifier,
    load_checkpoint,
    read_checkpoint,
    read_state_dict,
    save_safetensors,
    to_model_layout,
)
from .complexity import count_madds, count_params, summarize_model
from .factory import create_model, list_models
from .mobilenext import MOBILENEXT_STAGES, PAPER_FIGURES, MobileNeXt
from .official import official_to_ours, ours_to_official
from .official_model import OfficialMobileNeXt
from .sandglass import SandglassBlock, identity_channels, sandglass_reduced_channels

__all__ = [
    "MOBILENEXT_STAGES",
    "PAPER_FIGURES",
    "MobileNeXt",
    "OfficialMobileNeXt",
    "SandglassBlock",
    "check_state_dict",
    "count_madds",
    "count_params",
    "create_model",
    "identity_channels",
    "keep_model_classifier",
    "list_models",
    "load_checkpoint",
    "official_to_ours",
    "ours_to_official",
    "read_checkpoint",
    "read_state_dict",
    "sandglass_reduced_channels",
    "save_safetensors",
    "summarize_model",
    "to_model_layout",
]
